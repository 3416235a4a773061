//! One HTTP GET to a port on a pod's loopback through the API server's
//! port-forward (a WebSocket to `pods/NAME/portforward`), as `istioctl
//! proxy-config` reaches an Envoy's admin API, which listens on the pod's
//! loopback only.

use http_body_util::{BodyExt, Limited};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::Value;

use crate::backend::KubeBackend;

/// The largest admin answer read (a thousand services' routes are a few MiB).
const MAX_ANSWER_BYTES: usize = 64 << 20;

impl KubeBackend {
    /// `GET path` on `port` of pod `namespace/name`, as JSON. The error is a
    /// sentence for the user: why the pod's port could not be read.
    pub async fn pod_port_json(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        path: &str,
    ) -> Result<Value, String> {
        tokio::time::timeout(
            self.timeout,
            self.pod_port_json_untimed(namespace, name, port, path),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer from port {port} of pod {namespace}/{name} within {:?}",
                self.timeout
            ))
        })
    }

    async fn pod_port_json_untimed(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        path: &str,
    ) -> Result<Value, String> {
        let pods: Api<Pod> = Api::namespaced(self.conn.client.clone(), namespace);
        let mut forwarder = pods
            .portforward(name, &[port])
            .await
            .map_err(|e| format!("port-forward to pod {namespace}/{name}: {e}"))?;
        let stream = forwarder
            .take_stream(port)
            .ok_or_else(|| format!("port-forward to pod {namespace}/{name} gave no stream"))?;
        let refused = forwarder.take_error(port);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("port {port} of pod {namespace}/{name}: {e}"))?;
        let driver = tokio::spawn(connection);
        let request = http::Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let answer = tokio::select! {
            answer = sender.send_request(request) => answer.map_err(|e| format!("GET {path} on port {port} of pod {namespace}/{name}: {e}")),
            Some(message) = async { match refused { Some(r) => r.await, None => None } } => {
                Err(format!("port {port} of pod {namespace}/{name}: {message}"))
            }
        };
        let answer = answer?;
        let status = answer.status();
        let body = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("GET {path} on pod {namespace}/{name}: {e}"))?
            .to_bytes();
        driver.abort();
        forwarder.abort();
        if !status.is_success() {
            return Err(format!(
                "GET {path} on port {port} of pod {namespace}/{name} answered {status}"
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| format!("GET {path} on pod {namespace}/{name}: not JSON: {e}"))
    }
}
