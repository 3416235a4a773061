//! Pod CPU from the resource metrics API (`metrics.k8s.io`, served by
//! metrics-server): what the cluster's HPAs see, and what `weir top` shows.

use std::collections::BTreeMap;

use serde_json::Value;
use weir_api::backend::BackendError;
use weir_api::quantity::cpu_millis;

use crate::backend::KubeBackend;

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

impl KubeBackend {
    /// Millicores per pod of a namespace.
    pub async fn metrics_pod_cpu(
        &self,
        namespace: &str,
    ) -> Result<BTreeMap<String, i64>, BackendError> {
        let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods");
        match self.get_json_opt(&path).await? {
            Some(list) => Ok(pod_cpu_from(&list)),
            None => Err(BackendError::Failed(
                "the resource metrics API (metrics.k8s.io) is not served: install metrics-server (minikube: `minikube addons enable metrics-server`); HPAs need it too".into(),
            )),
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
