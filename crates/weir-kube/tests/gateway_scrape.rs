//! Reading the ingress gateway's metrics for `weir top` when its replicas
//! are not all well: pending, without an IP, draining, or on a dead node.
//! The pod proxy is a stand-in here (`mock-apiserver`): the real
//! kube-apiserver refuses to proxy to loopback addresses, and no pod
//! network exists on the test machines.

use std::time::Duration;

use mock_apiserver::{MockApiServer, Reply};
use serde_json::{Value, json};
use weir_api::backend::Backend;
use weir_kube::{ApplyOptions, ClusterTarget, ConfirmOptions, KubeBackend};

fn gateway_pod(name: &str, phase: &str, ip: Option<&str>, draining: bool) -> Value {
    let mut pod = json!({
        "metadata": {"name": name, "namespace": "istio-system",
                     "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}},
        "status": {"phase": phase},
    });
    if let Some(ip) = ip {
        pod["status"]["podIP"] = ip.into();
    }
    if draining {
        pod["metadata"]["deletionTimestamp"] = "2026-12-07T10:00:00Z".into();
    }
    pod
}

#[tokio::test]
async fn gateway_metrics_skip_replicas_not_serving_and_do_not_wait_on_a_dead_node() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let target = ClusterTarget {
        kubeconfig: Some(mock.kubeconfig(dir.path(), "default")),
        context: None,
    };
    let timeout = Duration::from_secs(5);
    let conn = weir_kube::connect(&target, timeout).await.unwrap();
    let backend = KubeBackend::new(
        conn,
        timeout,
        ApplyOptions::default(),
        ConfirmOptions::default(),
    );
    mock.put("/api/v1/namespaces/istio-system/services/istio-ingressgateway", json!({
        "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system",
                     "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}},
        "spec": {"selector": {"app": "istio-ingressgateway", "istio": "ingressgateway"}, "ports": [{"name": "http2", "port": 80}]}
    }));
    let proxy = |pod: &str| {
        format!("/api/v1/namespaces/istio-system/pods/{pod}:15020/proxy/stats/prometheus")
    };
    for (name, phase, ip, draining) in [
        ("gw-ok", "Running", Some("10.244.0.2"), false),
        ("gw-pending", "Pending", None, false),
        ("gw-no-ip", "Running", None, false),
        ("gw-draining", "Running", Some("10.244.0.3"), true),
        ("gw-dead-node", "Running", Some("10.244.0.4"), false),
    ] {
        mock.put(
            &format!("/api/v1/namespaces/istio-system/pods/{name}"),
            gateway_pod(name, phase, ip, draining),
        );
        // Every replica but the healthy one would fail or hang if asked.
        let reply = match name {
            "gw-ok" => Reply::Text(
                200,
                "istio_requests_total{response_code=\"200\"} 5\n".into(),
            ),
            "gw-dead-node" => Reply::Hang,
            _ => Reply::status(400, "BadRequest", "address not allowed"),
        };
        mock.on("GET", &proxy(name), reply, None);
    }
    let started = tokio::time::Instant::now();
    let text = backend
        .gateway_metrics()
        .await
        .expect("the healthy replica's metrics");
    assert!(
        text.contains("istio_requests_total{response_code=\"200\"} 5"),
        "{text}"
    );
    assert!(
        started.elapsed() < weir_kube::ingress::REPLICA_SCRAPE + Duration::from_secs(2),
        "a replica on a dead node stalled the scrape for {:?}",
        started.elapsed()
    );
    let asked: Vec<String> = mock
        .lines()
        .into_iter()
        .filter(|l| l.contains("/proxy/"))
        .collect();
    assert_eq!(
        asked,
        [
            format!("GET {}", proxy("gw-dead-node")),
            format!("GET {}", proxy("gw-ok"))
        ]
    );
}
