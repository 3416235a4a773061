//! `weir route`, `verify` and `load` on a real kube-apiserver (with Istio
//! 1.30's CRDs): they find the ingress gateway from its Service (labelled
//! `istio=ingressgateway`, a LoadBalancer whose address the test writes to
//! its status, as a cloud's controller would) and confirm a route change
//! by sampling through it. The gateway itself is a stand-in — a real
//! `my-app` process, or a small server routing by host and header as the
//! VirtualService would — since no Istio data plane can run here; with no
//! gateway pods to port-forward to, `route` samples, as on a cluster where
//! Envoy cannot be read.

mod support;

use std::process::Output;
use std::time::Duration;

use kube_harness::{ControlPlane, IstioRelease, Options};
use serde_json::{Value, json};
use support::{examples, my_app};

const NS: &str = "shop";

/// A control plane with Istio's CRDs, the seed's Istio objects in [`NS`],
/// and the ingress gateway's Service answering at `127.0.0.1:port`.
struct Setup {
    plane: ControlPlane,
    kubeconfig: String,
    _dir: tempfile::TempDir,
}

async fn setup(port: u16) -> Setup {
    let plane = ControlPlane::start(Options {
        controller_manager: false,
        istio: Some(IstioRelease::V1_30),
    })
    .await;
    plane.namespace(NS).await;
    plane.namespace("istio-system").await;
    plane
        .apply_yaml(&format!(
            "apiVersion: v1
kind: Service
metadata:
  name: istio-ingressgateway
  namespace: istio-system
  labels: {{app: istio-ingressgateway, istio: ingressgateway}}
spec:
  type: LoadBalancer
  selector: {{app: istio-ingressgateway, istio: ingressgateway}}
  ports:
  - {{name: status-port, port: 15021}}
  - {{name: http2, port: {port}}}
"
        ))
        .await;
    plane
        .merge_patch(
            "/api/v1/namespaces/istio-system/services/istio-ingressgateway/status",
            &json!({"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}}),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = plane.kubeconfig(dir.path(), NS).display().to_string();
    let s = Setup {
        plane,
        kubeconfig,
        _dir: dir,
    };
    let istio = examples().join("istio.yaml");
    let out = s.weir(&["apply", "-f", istio.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    s
}

impl Setup {
    async fn weir(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--kubeconfig", &self.kubeconfig]);
        support::weir_against_cluster(&all, &[], Duration::from_secs(60)).await
    }

    /// The VirtualService's weights as stored.
    async fn weights(&self) -> Vec<Value> {
        let vs = self
            .plane
            .object(&format!(
                "/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/my-app"
            ))
            .await
            .unwrap();
        vs["spec"]["http"][0]["route"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["weight"].clone())
            .collect()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A stand-in ingress gateway that routes as a VirtualService for host
/// `shop.example.com` with a rule on `x-tester: yes` would: v2 answers such
/// requests, v1 every other. Keep-alive HTTP/1.1, as weir-load speaks it.
async fn host_routing_gateway() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
                        pending.drain(..end + 4);
                        let matched = head.contains("\r\nhost: shop.example.com")
                            && head.contains("\r\nx-tester: yes");
                        let body = if matched {
                            "Host: gw, Version: v2.0.0\n"
                        } else {
                            "Host: gw, Version: v1.0.0\n"
                        };
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if conn.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn route_confirmation_samples_with_the_host_and_headers_given() {
    let port = host_routing_gateway().await;
    let s = setup(port).await;
    // Without them the samples reach only v1: never confirmed.
    let out = s
        .weir(&[
            "route",
            "my-app",
            "v1=0",
            "v2=100",
            "--confirm-timeout",
            "3s",
        ])
        .await;
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = s
        .weir(&[
            "route",
            "my-app",
            "v1=0",
            "v2=100",
            "--host",
            "shop.example.com",
            "-H",
            "x-tester: yes",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("served: sampled through the ingress gateway"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn route_confirms_by_sampling_through_the_ingress_gateway() {
    let app = my_app("v2.0.0").await;
    let s = setup(app.port).await;
    let out = s.weir(&["route", "my-app", "v1=0", "v2=100"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("virtualservice.networking.istio.io/my-app http[0]: v1 90→0, v2 10→100"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("served: sampled through the ingress gateway at http://127.0.0.1:{}: 2 samples of 200 requests in a row matched", app.port)),
        "{stdout}"
    );
    assert_eq!(s.weights().await, vec![json!(0), json!(100)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn route_says_so_when_the_data_plane_does_not_follow() {
    let app = my_app("v2.0.0").await;
    let s = setup(app.port).await;
    // The gateway (a v2 app) keeps serving only v2, never the 50/50 asked for.
    let out = s
        .weir(&[
            "route",
            "my-app",
            "v1=50",
            "v2=50",
            "--confirm-timeout",
            "1s",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("timed out after 1s: virtualservice.networking.istio.io/my-app was changed, but the ingress gateway at http://127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("(last sample: v2.0.0=200)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_and_load_find_the_gateway_from_the_ingress_service() {
    let app = my_app("v2.0.0").await;
    let s = setup(app.port).await;
    let out = s
        .weir(&["verify", "--expect", "v1=0,v2=100", "-n", "300"])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("PASS"), "{}", text(&out.stdout));
    let out = s
        .weir(&["load", "-n", "150", "-c", "2", "-o", "json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["requests"], 150);
    assert_eq!(report["versions"]["v2.0.0"], 150);
}
