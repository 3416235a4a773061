//! Pod CPU from the resource metrics API (`metrics.k8s.io`, served by
//! metrics-server): what the cluster's HPAs see, and what `weir top` shows.

use std::collections::BTreeMap;

use serde_json::Value;
use weir_api::backend::BackendError;
use weir_api::quantity::cpu_millis;

use crate::backend::KubeBackend;
use crate::errors::{self, Failure};

/// Millicores per pod, summed over its containers, from a `PodMetricsList`.
pub fn pod_cpu_from(list: &Value) -> BTreeMap<String, i64> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pod| {
            let name = pod["metadata"]["name"].as_str()?.to_owned();
            let millis = pod["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| cpu_millis(c["usage"]["cpu"].as_str()?).ok())
                .sum();
            Some((name, millis))
        })
        .collect()
}

/// Why pod CPU cannot be read from the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsUnavailable {
    /// `metrics.k8s.io` is not served: metrics-server is not installed.
    NotServed,
    /// It is registered but its server does not answer yet (503).
    NotReady(String),
}

impl MetricsUnavailable {
    /// What is wrong, for messages.
    pub fn message(&self) -> String {
        match self {
            MetricsUnavailable::NotServed => "the resource metrics API (metrics.k8s.io) is not served: install metrics-server (minikube: `minikube addons enable metrics-server`); HPAs need it too".to_owned(),
            MetricsUnavailable::NotReady(answer) => format!(
                "the resource metrics API (metrics.k8s.io) is installed but not ready: the API server answered 503 ({answer}); HPAs cannot scale until it is"
            ),
        }
    }

    /// The command that fixes it.
    pub fn fix(&self) -> &'static str {
        match self {
            MetricsUnavailable::NotServed => {
                "minikube addons enable metrics-server (kind: kubectl apply -f https://github.com/kubernetes-sigs/metrics-server/releases/latest/download/components.yaml, with --kubelet-insecure-tls)"
            }
            MetricsUnavailable::NotReady(_) => {
                "kubectl -n kube-system rollout status deployment/metrics-server, then kubectl -n kube-system logs deployment/metrics-server (on kind it needs --kubelet-insecure-tls)"
            }
        }
    }
}

impl KubeBackend {
    /// Millicores per pod of a namespace, or why the cluster cannot say.
    pub async fn metrics_pod_cpu(
        &self,
        namespace: &str,
    ) -> Result<Result<BTreeMap<String, i64>, MetricsUnavailable>, BackendError> {
        let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods");
        let request = http::Request::get(&path)
            .body(Vec::new())
            .map_err(|e| BackendError::Failed(format!("GET {path}: {e}")))?;
        let answer = self
            .within_timeout(
                &format!("GET {path}"),
                self.conn.client.request::<Value>(request),
            )
            .await?;
        match answer {
            Ok(list) => Ok(Ok(pod_cpu_from(&list))),
            Err(kube::Error::Api(status)) => match errors::classify(&status) {
                Failure::ObjectNotFound | Failure::PathNotServed => {
                    Ok(Err(MetricsUnavailable::NotServed))
                }
                Failure::NotReady => Ok(Err(MetricsUnavailable::NotReady(status.message))),
                _ => Err(self.call(None).status_error(&status)),
            },
            Err(e) => Err(self.call(None).error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sums_containers_in_millicores() {
        let list = json!({"items": [
            {"metadata": {"name": "my-app-v1-abc"}, "containers": [
                {"name": "app", "usage": {"cpu": "250m", "memory": "10Mi"}},
                {"name": "istio-proxy", "usage": {"cpu": "1500000n", "memory": "40Mi"}}
            ]},
            {"metadata": {"name": "my-app-v2-def"}, "containers": [{"name": "app", "usage": {"cpu": "1"}}]}
        ]});
        let cpu = pod_cpu_from(&list);
        assert_eq!(cpu["my-app-v1-abc"], 252);
        assert_eq!(cpu["my-app-v2-def"], 1000);
    }
}
