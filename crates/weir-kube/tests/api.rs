//! The conversation between weir's Kubernetes backend and the API server:
//! exact requests (paths, verbs, bodies, field manager) and the behaviour on
//! 404, 409, 403, 422 and timeouts. The API server here is `mock-apiserver`
//! on a loopback port, which records every request and can be told to hang
//! or fail (the real kube-apiserver, in `kube_apiserver.rs`, shows what a
//! cluster does with the same calls; it cannot record them or port-forward
//! and proxy to pods here); kube's real client talks to it over real HTTP.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use mock_apiserver::{MockApiServer, Reply};
use serde_json::{Value, json};
use weir_api::backend::{ApplyOutcome, Backend, BackendError, RuleSelector, WatchEvent};
use weir_api::load::load_paths;
use weir_api::resource::{Kind, ObjectRef};
use weir_kube::{ApplyOptions, ClusterTarget, ConfirmOptions, KubeBackend};

const VS: &str = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/my-app";

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/canary-istio")
}

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

/// The API path of each seed object, at the version its manifest names.
const SEED_PATHS: [&str; 8] = [
    "/api/v1/namespaces/default/services/my-app",
    "/apis/apps/v1/namespaces/default/deployments/my-app-v1",
    "/apis/apps/v1/namespaces/default/deployments/my-app-v2",
    "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/my-app-v1",
    "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/my-app-v2",
    "/apis/networking.istio.io/v1alpha3/namespaces/default/gateways/http-gateway",
    "/apis/networking.istio.io/v1alpha3/namespaces/default/virtualservices/my-app",
    "/apis/networking.istio.io/v1alpha3/namespaces/default/destinationrules/my-app",
];

/// The path weir reads each seed object at (its preferred version).
fn read_path(apply_path: &str) -> String {
    apply_path.replace("/v1alpha3/", "/v1/")
}

#[tokio::test]
async fn apply_dry_runs_everything_then_applies_server_side_as_weir() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&mock, &dir).await;
    let manifests = load_paths(&[examples()]).unwrap();
    let outcomes = backend.apply(&manifests).await.expect("apply");
    assert_eq!(outcomes.len(), 8);
    assert!(
        outcomes.iter().all(|(_, o)| *o == ApplyOutcome::Created),
        "{outcomes:?}"
    );

    let mut wanted = Vec::new();
    // What is stored is read at the version it is applied at.
    for path in SEED_PATHS {
        wanted.push(format!("GET {path}"));
        wanted.push(format!("PATCH {path}"));
    }
    for path in SEED_PATHS {
        wanted.push(format!("PATCH {path}"));
    }
    assert_eq!(mock.lines(), wanted);
    let requests = mock.requests();
    for (i, r) in requests.iter().filter(|r| r.method == "PATCH").enumerate() {
        assert_eq!(r.content_type, "application/apply-patch+yaml");
        assert_eq!(r.param("fieldManager"), Some("weir"));
        assert_eq!(r.param("fieldValidation"), Some("Strict"));
        assert_eq!(
            r.param("dryRun"),
            if i < 8 { Some("All") } else { None },
            "{r:?}"
        );
        assert_eq!(r.param("force"), None);
        assert_eq!(r.authorization, "Bearer test-token");
        assert_eq!(r.body["metadata"]["namespace"], "default");
    }
    // The body is the document as written: the VirtualService's weights and
    // the HPA's scale target exactly as in the seed.
    let vs = requests.iter().rfind(|r| r.path == SEED_PATHS[6]).unwrap();
    assert_eq!(vs.body["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(vs.body["spec"]["http"][0]["route"][0]["weight"], 90);
    let hpa = requests.iter().rfind(|r| r.path == SEED_PATHS[3]).unwrap();
    assert_eq!(
        hpa.body["spec"]["scaleTargetRef"]["apiVersion"],
        "extensions/v1beta1"
    );

    // Applying again changes nothing.
    let again = backend.apply(&manifests).await.unwrap();
    assert!(
        again.iter().all(|(_, o)| *o == ApplyOutcome::Unchanged),
        "{again:?}"
    );
}

#[tokio::test]
async fn apply_can_rewrite_the_seeds_removed_scale_target_and_force_conflicts() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = ApplyOptions {
        force_conflicts: true,
        rewrite_scale_target: true,
    };
    let backend = backend_with(
        &mock,
        &dir,
        Duration::from_secs(5),
        options,
        ConfirmOptions::default(),
    )
    .await;
    let manifests = load_paths(&[examples().join("hpa.yaml")]).unwrap();
    backend.apply(&manifests).await.unwrap();
    let stored = mock.object(SEED_PATHS[3]).unwrap();
    assert_eq!(stored["spec"]["scaleTargetRef"]["apiVersion"], "apps/v1");
    assert!(
        mock.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .all(|r| r.param("force") == Some("true"))
    );
}

#[tokio::test]
async fn conflict_forbidden_and_timeout_have_their_exit_codes() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = examples().join("app-v1.yaml");
    let manifests = load_paths(&[service]).unwrap();

    mock.on("PATCH", SEED_PATHS[0], Reply::status(409, "Conflict", "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .spec.selector"), Some(1));
    let err = backend(&mock, &dir)
        .await
        .apply(&manifests)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Conflict { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string()
            .contains("conflict on service/my-app: Apply failed with 1 conflict"),
        "{err}"
    );

    mock.on(
        "GET",
        &read_path(SEED_PATHS[0]),
        Reply::status(
            403,
            "Forbidden",
            "services \"my-app\" is forbidden: User \"dev\" cannot get resource \"services\"",
        ),
        Some(1),
    );
    let err = backend(&mock, &dir)
        .await
        .apply(&manifests)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string()
            .starts_with("forbidden: service/my-app: services \"my-app\" is forbidden"),
        "{err}"
    );

    mock.on(
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/my-app-v1",
        Reply::Hang,
        None,
    );
    let short = backend_with(
        &mock,
        &dir,
        Duration::from_millis(300),
        ApplyOptions::default(),
        ConfirmOptions::default(),
    )
    .await;
    let err = short
        .get(&object(Kind::Deployment, "my-app-v1"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Timeout(..)), "{err:?}");
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string().contains("get deployment.apps/my-app-v1"),
        "{err}"
    );
}

#[tokio::test]
async fn an_api_server_that_is_gone_is_unreachable() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&mock, &dir).await;
    drop(mock);
    let err = backend.list(Kind::Pod, "default").await.unwrap_err();
    assert_eq!(err.exit_code(), 3, "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot reach the Kubernetes API at http://127.0.0.1:"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_context_is_bad_input() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let target = ClusterTarget {
        kubeconfig: Some(mock.kubeconfig(dir.path(), "default")),
        context: Some("prod".into()),
    };
    let err = weir_kube::connect(&target, Duration::from_secs(1))
        .await
        .err()
        .unwrap();
    assert_eq!(err.exit_code(), 2);
    assert_eq!(
        err.to_string(),
        "context \"prod\" is not in the kubeconfig (it has: mock)"
    );
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn delete_get_list_read_the_preferred_versions() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&mock, &dir).await;
    mock.put(
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/my-app-v2",
        json!({"metadata": {"name": "my-app-v2"}, "spec": {"targetCPUUtilizationPercentage": 80}, "status": {"currentCPUUtilizationPercentage": 12}}),
    );
    let hpa = backend
        .get(&object(Kind::HorizontalPodAutoscaler, "my-app-v2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hpa.object["status"]["currentCPUUtilizationPercentage"], 12);
    assert_eq!(hpa.object["apiVersion"], "autoscaling/v1");
    assert_eq!(hpa.object["kind"], "HorizontalPodAutoscaler");
    assert!(
        backend
            .get(&object(Kind::HorizontalPodAutoscaler, "nope"))
            .await
            .unwrap()
            .is_none()
    );
    let listed = backend
        .list(Kind::HorizontalPodAutoscaler, "default")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let deleted = backend
        .delete(&[
            object(Kind::HorizontalPodAutoscaler, "my-app-v2"),
            object(Kind::Gateway, "http-gateway"),
        ])
        .await
        .unwrap();
    assert_eq!(
        deleted.iter().map(|(_, d)| *d).collect::<Vec<_>>(),
        vec![true, false]
    );
    assert_eq!(
        mock.lines(),
        vec![
            "GET /apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/my-app-v2",
            "GET /apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/nope",
            "GET /apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
            "DELETE /apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/my-app-v2",
            "DELETE /apis/networking.istio.io/v1/namespaces/default/gateways/http-gateway",
        ]
    );
    let delete = &mock.requests()[3];
    assert_eq!(delete.body["propagationPolicy"], "Background");
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

#[tokio::test]
async fn route_patches_only_the_weights_and_waits_for_every_gateway_replica() {
    let mock = MockApiServer::start().await;
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
async fn route_refusals_and_a_concurrent_change() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&mock, &dir).await;
    let vs = object(Kind::VirtualService, "my-app");
    let weights = [("v1".to_owned(), 0), ("v2".to_owned(), 100)];

    let err = backend
        .set_route_weights(&vs, &RuleSelector::Default, &weights)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::NotFound(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "virtualservice.networking.istio.io/my-app not found"
    );

    mock.put(VS, seed_vs(json!({})));
    let err = backend
        .set_route_weights(&vs, &RuleSelector::Default, &[("v3".to_owned(), 1)])
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert_eq!(
        err.to_string(),
        "virtualservice.networking.istio.io/my-app: http[0] has no destination \"v3\" (it has v1, v2)"
    );

    // Someone reorders the destinations between weir's read and its patch:
    // the patch's test fails and nothing moves.
    let reordered = {
        let mut v = seed_vs(json!({}));
        let route = v["spec"]["http"][0]["route"].as_array_mut().unwrap();
        route.reverse();
        v
    };
    mock.on("GET", VS, Reply::Json(200, seed_vs(json!({}))), Some(1));
    mock.put(VS, reordered.clone());
    let err = backend
        .set_route_weights(&vs, &RuleSelector::Default, &weights)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Conflict { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 1);
    assert_eq!(mock.object(VS).unwrap()["spec"], reordered["spec"]);
}

#[tokio::test]
async fn watch_lists_then_follows() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = "/api/v1/namespaces/default/pods";
    mock.put(
        &format!("{pods}/my-app-v1-a"),
        json!({"metadata": {"name": "my-app-v1-a"}, "status": {"phase": "Running"}}),
    );
    // weir's listing, then the watcher's own list, then its watch.
    mock.on("GET", pods, Reply::Json(200, json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "500"}, "items": [{"metadata": {"name": "my-app-v1-a", "resourceVersion": "499"}}]})), Some(2));
    mock.on("GET", pods, Reply::Events(vec![
        json!({"type": "ADDED", "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-app-v2-b", "resourceVersion": "501"}}}),
        json!({"type": "DELETED", "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-app-v1-a", "resourceVersion": "502"}}}),
    ]), Some(1));
    let backend = backend(&mock, &dir).await;
    let mut stream = backend.watch(Kind::Pod, "default").await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an event")
            .expect("open")
            .expect("ok");
        seen.push(match event {
            WatchEvent::Applied(o) => format!("applied {}", o.name()),
            WatchEvent::Deleted(o) => format!("deleted {}", o.name()),
        });
    }
    assert_eq!(
        seen,
        vec![
            "applied my-app-v1-a",
            "applied my-app-v2-b",
            "deleted my-app-v1-a"
        ]
    );
    let watch = &mock.requests()[2];
    assert_eq!(watch.param("watch"), Some("true"));
    assert_eq!(watch.param("resourceVersion"), Some("500"));
    assert_eq!(watch.param("timeoutSeconds"), Some("290"));
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
