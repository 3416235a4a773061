//! What the real kube-apiserver cannot show on the test machines, because
//! it needs a pod that runs or an Istio data plane: no kubelet runs here (no
//! container runtime), so there are no pod logs; the real server refuses to
//! proxy or port-forward to the loopback addresses the node stand-in gives
//! pods, so neither the ingress gateway's Envoy configuration (read through
//! port-forward) nor a pod's metrics (read through the pod proxy) can be
//! reached; and metrics.k8s.io needs a metrics-server scraping kubelets.
//! For these the API server is `mock-apiserver` on a loopback port, which
//! answers those paths as the Kubernetes sources describe and records
//! every request; kube's real client talks to it over real HTTP. Everything
//! else the backend does is tested against the real server
//! (`conversation.rs`, `kube_apiserver.rs`).

use std::time::Duration;

use futures::StreamExt;
use mock_apiserver::{MockApiServer, Reply};
use serde_json::{Value, json};
use weir_api::backend::{Backend, LogOptions, RuleSelector};
use weir_api::resource::{Kind, ObjectRef};
use weir_kube::{ApplyOptions, ClusterTarget, ConfirmOptions, KubeBackend};

const VS: &str = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/my-app";

async fn backend_with(
    mock: &MockApiServer,
    dir: &tempfile::TempDir,
    timeout: Duration,
    apply: ApplyOptions,
    confirm: ConfirmOptions,
) -> KubeBackend {
    let target = ClusterTarget {
        kubeconfig: Some(mock.kubeconfig(dir.path(), "default")),
        context: None,
    };
    let conn = weir_kube::connect(&target, timeout)
        .await
        .expect("kubeconfig loads");
    KubeBackend::new(conn, timeout, apply, confirm)
}

async fn backend(mock: &MockApiServer, dir: &tempfile::TempDir) -> KubeBackend {
    backend_with(
        mock,
        dir,
        Duration::from_secs(5),
        ApplyOptions::default(),
        ConfirmOptions::default(),
    )
    .await
}

fn object(kind: Kind, name: &str) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: "default".into(),
        name: name.into(),
    }
}

fn seed_vs(status: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "my-app", "namespace": "default", "generation": 1},
        "spec": {"hosts": ["*"], "gateways": ["http-gateway"], "http": [{"route": [
            {"destination": {"host": "my-app", "subset": "v1"}, "weight": 90},
            {"destination": {"host": "my-app", "subset": "v2"}, "weight": 10}
        ]}]},
        "status": status
    })
}

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
async fn route_patches_only_the_weights_and_waits_for_every_gateway_replica() {
    let mock = MockApiServer::start().await;
    mock.install_istio_crds();
    let dir = tempfile::tempdir().unwrap();
    mock.put(VS, seed_vs(json!({})));
    let gateway = mock.istio_gateway(&["gw-a", "gw-b"]).await;
    // gw-b's Envoy gets the new routes three reads late.
    gateway[1].lag(3);
    let backend = backend(&mock, &dir).await;
    let weights = [("v1".to_owned(), 0), ("v2".to_owned(), 100)];
    let change = backend
        .set_route_weights(
            &object(Kind::VirtualService, "my-app"),
            &RuleSelector::Default,
            &weights,
        )
        .await
        .expect("route");
    assert_eq!(
        change.confirmed_by,
        "read from the ingress gateway's Envoy configuration: 2 of 2 replicas (gw-a, gw-b) route rule 0 with the new weights"
    );
    assert_eq!(change.before, vec![("v1".into(), 90), ("v2".into(), 10)]);
    assert_eq!(change.after, vec![("v1".into(), 0), ("v2".into(), 100)]);
    let forward = |pod: &str| format!("GET /api/v1/namespaces/istio-system/pods/{pod}/portforward");
    assert_eq!(
        mock.lines(),
        vec![
            format!("GET {VS}"),
            format!("PATCH {VS}"),
            "GET /api/v1/services".to_owned(),
            "GET /api/v1/namespaces/istio-system/pods".to_owned(),
            forward("gw-a"),
            forward("gw-b"),
            forward("gw-b"),
            forward("gw-b"),
            forward("gw-b"),
        ]
    );
    let pods = &mock.requests()[3];
    assert_eq!(
        pods.param("labelSelector"),
        Some("app=istio-ingressgateway,istio=ingressgateway")
    );
    assert_eq!(mock.requests()[4].param("ports"), Some("15000"));
    let patch = &mock.requests()[1];
    assert_eq!(patch.content_type, "application/json-patch+json");
    assert_eq!(patch.param("fieldManager"), Some("weir"));
    assert_eq!(
        patch.body,
        json!([
            {"op": "test", "path": "/spec/http/0/route/0/destination/subset", "value": "v1"},
            {"op": "test", "path": "/spec/http/0/route/0/weight", "value": 90},
            {"op": "add", "path": "/spec/http/0/route/0/weight", "value": 0},
            {"op": "test", "path": "/spec/http/0/route/1/destination/subset", "value": "v2"},
            {"op": "test", "path": "/spec/http/0/route/1/weight", "value": 10},
            {"op": "add", "path": "/spec/http/0/route/1/weight", "value": 100}
        ])
    );
    let stored = mock.object(VS).unwrap();
    assert_eq!(
        stored["spec"]["gateways"],
        json!(["http-gateway"]),
        "the rest of the spec is untouched"
    );
}

#[tokio::test]
async fn logs_gateway_metrics_and_pod_cpu() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&mock, &dir).await;
    mock.put(
        "/api/v1/namespaces/default/pods/my-app-v1-a",
        json!({"metadata": {"name": "my-app-v1-a"}, "spec": {"containers": [{"name": "my-app"}]}}),
    );
    mock.on(
        "GET",
        "/api/v1/namespaces/default/pods/my-app-v1-a/log",
        Reply::Text(200, "first\nsecond\n".into()),
        None,
    );
    let mut logs = backend
        .logs(
            &object(Kind::Pod, "my-app-v1-a"),
            &weir_api::backend::LogOptions {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logs.next().await.unwrap().unwrap(), "first\n");
    assert_eq!(logs.next().await.unwrap().unwrap(), "second\n");
    let log = mock
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/log"))
        .unwrap();
    assert_eq!(log.param("follow"), Some("true"));
    assert_eq!(log.param("container"), Some("my-app"));

    let err = backend.pod_cpu("default").await.unwrap_err();
    assert!(err.to_string().contains("install metrics-server"), "{err}");
    mock.on("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", Reply::Json(200, json!({"items": [
        {"metadata": {"name": "my-app-v1-a"}, "containers": [{"name": "my-app", "usage": {"cpu": "12500000n"}}]}
    ]})), None);
    assert_eq!(backend.pod_cpu("default").await.unwrap()["my-app-v1-a"], 13);

    let err = backend.gateway_metrics().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no Service labelled istio=ingressgateway in any namespace"),
        "{err}"
    );
    mock.put("/api/v1/namespaces/istio-system/services/istio-ingressgateway", json!({
        "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system",
                     "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}},
        "spec": {"selector": {"app": "istio-ingressgateway", "istio": "ingressgateway"}, "clusterIP": "10.96.1.1", "ports": [{"name": "http2", "port": 80}]}
    }));
    mock.put(
        "/api/v1/namespaces/istio-system/pods/istio-ingressgateway-x",
        gateway_pod(
            "istio-ingressgateway-x",
            "Running",
            Some("10.244.0.9"),
            false,
        ),
    );
    mock.on(
        "GET",
        "/api/v1/namespaces/istio-system/pods/istio-ingressgateway-x:15020/proxy/stats/prometheus",
        Reply::Text(
            200,
            "istio_requests_total{destination_version=\"v1\",response_code=\"200\"} 7\n".into(),
        ),
        None,
    );
    let text = backend.gateway_metrics().await.unwrap();
    assert!(
        text.contains("istio_requests_total{destination_version=\"v1\",response_code=\"200\"} 7"),
        "{text}"
    );
    let pods_query = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/namespaces/istio-system/pods")
        .unwrap();
    assert_eq!(
        pods_query.param("labelSelector"),
        Some("app=istio-ingressgateway,istio=ingressgateway")
    );
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

#[tokio::test]
async fn logs_of_an_injected_pod_choose_the_container_as_kubectl_does() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&mock, &dir).await;
    let pod = "/api/v1/namespaces/default/pods/my-app-v1-a";
    mock.put(pod, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-app-v1-a"},
        "spec": {"initContainers": [{"name": "istio-init"}], "containers": [{"name": "istio-proxy"}, {"name": "my-app"}]}}));
    for (container, text) in [
        ("istio-init", "init\n"),
        ("istio-proxy", "envoy\n"),
        ("my-app", "app\n"),
    ] {
        mock.set_log(pod, container, text);
    }
    let pod_ref = ObjectRef {
        kind: Kind::Pod,
        namespace: "default".into(),
        name: "my-app-v1-a".into(),
    };
    let read = |options: LogOptions| {
        let backend = backend.clone();
        let pod_ref = pod_ref.clone();
        async move {
            let stream = backend.logs(&pod_ref, &options).await?;
            let lines: Vec<_> = stream.collect().await;
            lines.into_iter().collect::<Result<String, _>>()
        }
    };
    assert_eq!(read(LogOptions::default()).await.unwrap(), "app\n");
    let proxy = LogOptions {
        container: Some("istio-proxy".into()),
        ..LogOptions::default()
    };
    assert_eq!(read(proxy).await.unwrap(), "envoy\n");
    let all = LogOptions {
        all_containers: true,
        ..LogOptions::default()
    };
    assert_eq!(read(all).await.unwrap(), "init\nenvoy\napp\n");
    let wrong = LogOptions {
        container: Some("app".into()),
        ..LogOptions::default()
    };
    let err = read(wrong).await.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string()
            .contains("container app is not valid for pod my-app-v1-a"),
        "{err}"
    );
    let log_requests: Vec<Option<String>> = mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/log"))
        .map(|r| r.param("container").map(str::to_owned))
        .collect();
    assert!(
        log_requests.iter().all(Option::is_some),
        "every log request names its container: {log_requests:?}"
    );
}
