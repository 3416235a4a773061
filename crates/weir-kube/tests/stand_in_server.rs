//! What a real API server does that the test machines' kube-apiserver
//! cannot be made to do on demand, with `mock-apiserver` standing in:
//! Istio's validating webhook (istiod cannot run here) refusing a route
//! change with its 400 and a CRD schema's 422 with causes; a server before
//! Kubernetes 1.31, which bumped a custom resource's resourceVersion on a
//! no-op apply (weir supports 1.30; the harness builds one release); and a
//! watch that drops, then resumes from a version that has expired (410),
//! then goes silent without closing. The mock's model of each follows the
//! Kubernetes sources and is described where it is built; where it cannot
//! tell (the exact wording of a real server's messages), the tests check
//! meaning (exit code, which object, what to do), not text.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use mock_apiserver::{MockApiServer, Reply};
use serde_json::{Value, json};
use weir_api::backend::{ApplyOutcome, Backend, BackendError, RuleSelector};
use weir_api::load::load_paths;
use weir_api::resource::{Kind, ObjectRef};
use weir_kube::{ApplyOptions, ClusterTarget, ConfirmOptions, KubeBackend};

const VS: &str = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/my-app";

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
    mock.install_istio_crds();
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
async fn unchanged_is_judged_by_what_the_user_owns_not_the_resource_version() {
    let mock = MockApiServer::start().await;
    mock.install_istio_crds();
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
