//! What a real API server does that the first mock did not, and weir's
//! answer to each: errors as the server means them (a failed `test`, a
//! webhook's refusal, a missing namespace, an API it does not serve, a 503
//! from an aggregated API), a pod of several containers, and a
//! resourceVersion bumped by a no-op apply. (The field managers' conflicts
//! — an apply after `weir route`, after an HPA scale-out — and a manifest
//! saved from the server are tested against the real kube-apiserver, in
//! `kube_apiserver.rs`.)
//!
//! The API server here is `mock-apiserver`, whose model of each behaviour
//! follows the Kubernetes sources and is described where it is built.
//! Where the mock cannot tell (the exact wording of a real server's
//! messages), the tests check meaning (exit code, which object, what to
//! do), not text they would have to guess.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use mock_apiserver::{MockApiServer, Reply};
use serde_json::{Value, json};
use weir_api::backend::{ApplyOutcome, Backend, BackendError, LogOptions, RuleSelector};
use weir_api::load::load_paths;
use weir_api::patch::PatchType;
use weir_api::resource::{Kind, ObjectRef};
use weir_kube::{ApplyOptions, ClusterTarget, ConfirmOptions, KubeBackend};

const VS: &str = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/my-app";
const V1: &str = "/apis/apps/v1/namespaces/default/deployments/my-app-v1";
const METRICS: &str = "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn backend_with(
    mock: &MockApiServer,
    dir: &tempfile::TempDir,
    apply: ApplyOptions,
) -> KubeBackend {
    let target = ClusterTarget {
        kubeconfig: Some(mock.kubeconfig(dir.path(), "default")),
        context: None,
    };
    let timeout = Duration::from_secs(5);
    let conn = weir_kube::connect(&target, timeout)
        .await
        .expect("kubeconfig loads");
    KubeBackend::new(conn, timeout, apply, ConfirmOptions::default())
}

async fn backend(mock: &MockApiServer, dir: &tempfile::TempDir) -> KubeBackend {
    backend_with(mock, dir, ApplyOptions::default()).await
}

fn vs_ref() -> ObjectRef {
    ObjectRef {
        kind: Kind::VirtualService,
        namespace: "default".into(),
        name: "my-app".into(),
    }
}

fn weights(stored: &Value) -> Vec<i64> {
    stored["spec"]["http"][0]["route"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["weight"].as_i64())
        .collect()
}

#[tokio::test]
async fn route_refusals_mean_what_the_api_server_means() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&mock, &dir).await;
    let seed = load_paths(&[root().join("examples/canary-istio")]).unwrap();
    backend.apply(&seed).await.unwrap();
    let to_v2 = [("v1".to_owned(), 0), ("v2".to_owned(), 100)];

    // Istio's validating webhook refuses with 400: the input, exit 2, its words.
    let denied = "admission webhook \"validation.istio.io\" denied the request: configuration is invalid: total destination weight 90 != 100";
    mock.on(
        "PATCH",
        VS,
        Reply::status(400, "BadRequest", denied),
        Some(1),
    );
    let err = backend
        .set_route_weights(&vs_ref(), &RuleSelector::Default, &to_v2)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)), "{err:?}");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains(denied), "{err}");

    // The CRD's schema refuses with 422 and causes: the input too.
    mock.on("PATCH", VS, Reply::Json(422, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422,
        "message": "VirtualService.networking.istio.io \"my-app\" is invalid: spec.http[0].route[0].weight: Invalid value: 1000",
        "details": {"name": "my-app", "kind": "VirtualService", "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: 1000", "field": "spec.http[0].route[0].weight"}]}})), Some(1));
    let err = backend
        .set_route_weights(&vs_ref(), &RuleSelector::Default, &to_v2)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err:?}");
    assert!(
        err.to_string().contains("spec.http[0].route[0].weight"),
        "{err}"
    );
    assert_eq!(
        weights(&mock.object(VS).unwrap()),
        [90, 10],
        "nothing changed"
    );
}

#[tokio::test]
async fn a_missing_namespace_and_an_api_not_served_each_say_so() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let seed = load_paths(&[root().join("examples/canary-istio")]).unwrap();
    let in_canary = backend(&mock, &dir).await.in_namespace("canary".into());
    let err = in_canary.apply(&seed).await.unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err:?}");
    assert!(
        err.to_string()
            .contains("namespace \"canary\" does not exist"),
        "{err}"
    );
    assert!(
        err.to_string().contains("kubectl create namespace canary"),
        "{err}"
    );
    assert!(!err.to_string().contains("not found"), "{err}");

    let backend = backend(&mock, &dir).await;
    // An Istio that no longer serves v1alpha3 (the seed's version).
    mock.unserve("/apis/networking.istio.io/v1alpha3/");
    let err = backend.apply(&seed).await.unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err:?}");
    assert!(
        err.to_string()
            .contains("serves the API group networking.istio.io at v1, v1beta1, not v1alpha3"),
        "{err}"
    );
    // No Istio at all: its CRDs are missing, not the object.
    mock.unserve("/apis/networking.istio.io/v1/");
    mock.unserve("/apis/networking.istio.io/v1beta1/");
    let err = backend.get(&vs_ref()).await.unwrap_err();
    assert!(!matches!(err, BackendError::NotFound(_)), "{err:?}");
    assert!(
        err.to_string().contains(
            "does not serve the API group networking.istio.io: Istio's CRDs are not installed"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn metrics_not_ready_answers_at_once_and_doctor_shows_the_fix() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&mock, &dir).await;
    mock.on(
        "GET",
        METRICS,
        Reply::status(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request (get pods.metrics.k8s.io)",
        ),
        None,
    );
    let err = backend.pod_cpu("default").await.unwrap_err();
    assert!(err.to_string().contains("installed but not ready"), "{err}");
    // Asked once: kube's client retries 503 by default, which stalled every
    // `top` refresh until the request timeout.
    let asked = mock.requests().iter().filter(|r| r.path == METRICS).count();
    assert_eq!(asked, 1);

    let checks = weir_kube::doctor::run(&backend, "default")
        .await
        .expect("doctor reports");
    let metrics = checks
        .iter()
        .find(|c| c.name == "metrics-server")
        .expect("a metrics check");
    assert!(!metrics.ok);
    assert!(metrics.detail.contains("not ready"), "{metrics:?}");
    assert!(
        metrics
            .fix
            .as_deref()
            .unwrap_or_default()
            .contains("rollout status deployment/metrics-server"),
        "{metrics:?}"
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

#[tokio::test]
async fn unchanged_is_judged_by_what_the_user_owns_not_the_resource_version() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&mock, &dir).await;
    // Before Kubernetes 1.31, a no-op apply of a custom resource bumped its
    // resourceVersion.
    mock.bump_unchanged_custom_resources();
    let seed = load_paths(&[root().join("examples/canary-istio")]).unwrap();
    backend.apply(&seed).await.unwrap();
    let again = backend.apply(&seed).await.unwrap();
    assert!(
        again.iter().all(|(_, o)| *o == ApplyOutcome::Unchanged),
        "{again:?}"
    );
}

fn pod_list(version: &str, pods: &[(&str, &str)]) -> Reply {
    let items: Vec<Value> = pods
        .iter()
        .map(|(name, rv)| json!({"metadata": {"name": name, "resourceVersion": rv}}))
        .collect();
    Reply::Json(
        200,
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": version}, "items": items}),
    )
}

fn pod_event(kind: &str, name: &str, rv: &str) -> Value {
    json!({"type": kind, "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "resourceVersion": rv}}})
}

#[tokio::test]
async fn get_w_survives_a_dropped_watch_a_410_and_an_idle_connection() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = "/api/v1/namespaces/default/pods";
    let expired = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "too old resource version: 13 (20)", "reason": "Expired", "code": 410}});
    // weir's listing and the watcher's own list.
    mock.on(
        "GET",
        pods,
        pod_list("12", &[("a", "10"), ("b", "11")]),
        Some(2),
    );
    // The first watch delivers one event, then its connection drops.
    mock.on(
        "GET",
        pods,
        Reply::EventsThenEnd(vec![pod_event("ADDED", "c", "13")]),
        Some(1),
    );
    // Watching again from 13: that version has expired.
    mock.on("GET", pods, Reply::Events(vec![expired]), Some(1));
    // The relist: b was deleted and d created while the watch was away.
    mock.on(
        "GET",
        pods,
        pod_list("15", &[("a", "10"), ("c", "13"), ("d", "14")]),
        Some(1),
    );
    // The next watch goes silent without closing (a dropped connection the
    // client cannot see): the watcher's idle timeout (watch timeout + 5 s)
    // ends it and it watches again from 15.
    mock.on("GET", pods, Reply::Events(Vec::new()), Some(1));
    mock.on(
        "GET",
        pods,
        Reply::Events(vec![
            pod_event("ADDED", "e", "16"),
            pod_event("DELETED", "a", "18"),
        ]),
        None,
    );

    let backend = backend(&mock, &dir).await.with_watch_timeout(1);
    let mut stream = backend.watch(Kind::Pod, "default").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 7 {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap_or_else(|_| panic!("the watch goes on after {seen:?}"))
            .expect("open")
            .expect("no error reaches the user");
        seen.push(match event {
            weir_api::backend::WatchEvent::Applied(o) => format!("applied {}", o.name()),
            weir_api::backend::WatchEvent::Deleted(o) => format!("deleted {}", o.name()),
        });
    }
    assert_eq!(
        seen,
        [
            "applied a",
            "applied b",
            "applied c",
            "applied d",
            "deleted b",
            "applied e",
            "deleted a"
        ]
    );
    let watches: Vec<Option<String>> = mock
        .requests()
        .iter()
        .filter(|r| r.param("watch") == Some("true"))
        .map(|r| r.param("resourceVersion").map(str::to_owned))
        .collect();
    assert_eq!(
        watches[..4],
        [
            Some("12".into()),
            Some("13".into()),
            Some("15".into()),
            Some("15".into())
        ]
    );
}

#[tokio::test]
async fn weir_scale_patches_the_scale_subresource_and_a_re_apply_keeps_the_count() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&mock, &dir).await;
    let cluster = load_paths(&[root().join("deploy/kubernetes")]).unwrap();
    backend.apply(&cluster).await.expect("apply");
    let v1 = ObjectRef {
        kind: Kind::Deployment,
        namespace: "default".into(),
        name: "my-app-v1".into(),
    };
    backend.scale(&v1, 5).await.expect("scale");
    assert_eq!(mock.object(V1).unwrap()["spec"]["replicas"], 5);
    let sent = mock
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(sent.path, format!("{V1}/scale"));
    assert_eq!(sent.content_type, "application/merge-patch+json");
    assert_eq!(sent.param("fieldManager"), Some("weir"));
    assert_eq!(sent.body, json!({"spec": {"replicas": 5}}));
    // The manifests leave replicas alone, so applying them again keeps 5.
    backend.apply(&cluster).await.expect("re-apply");
    assert_eq!(mock.object(V1).unwrap()["spec"]["replicas"], 5);
    let missing = ObjectRef {
        name: "nope".into(),
        ..v1
    };
    let err = backend.scale(&missing, 2).await.unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
}

#[tokio::test]
async fn weir_patch_sends_kubectls_patch_types_as_weir() {
    let mock = MockApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&mock, &dir).await;
    let seed = load_paths(&[root().join("examples/canary-istio")]).unwrap();
    backend.apply(&seed).await.expect("apply");
    let svc = ObjectRef {
        kind: Kind::Service,
        namespace: "default".into(),
        name: "my-app".into(),
    };
    let path = "/api/v1/namespaces/default/services/my-app";
    let to_v2 = json!({"spec": {"selector": {"version": "v2.0.0"}}});
    let outcome = backend
        .patch(&svc, PatchType::Strategic, &to_v2)
        .await
        .expect("patch");
    assert_eq!(outcome, ApplyOutcome::Configured);
    let sent = mock
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(sent.path, path);
    assert_eq!(sent.content_type, "application/strategic-merge-patch+json");
    assert_eq!(sent.param("fieldManager"), Some("weir"));
    assert_eq!(
        mock.object(path).unwrap()["spec"]["selector"],
        json!({"app": "my-app", "version": "v2.0.0"})
    );
    // The same again changes nothing.
    let again = backend
        .patch(&svc, PatchType::Merge, &to_v2)
        .await
        .expect("patch");
    assert_eq!(again, ApplyOutcome::Unchanged);
    let sent = mock
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(sent.content_type, "application/merge-patch+json");
    let ops = json!([{"op": "remove", "path": "/spec/selector/version"}]);
    backend
        .patch(&svc, PatchType::Json, &ops)
        .await
        .expect("json patch");
    assert_eq!(
        mock.object(path).unwrap()["spec"]["selector"],
        json!({"app": "my-app"})
    );
}
