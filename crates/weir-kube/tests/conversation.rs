//! The conversation between weir's Kubernetes backend and a real
//! kube-apiserver, as the server itself records it in its audit log
//! (`kube-harness` keeps one for the user weir authenticates as): which
//! requests, in which order, with which query — and what weir
//! makes of a conflict, a refusal, a server that hangs and one that is
//! gone.

use std::path::PathBuf;
use std::time::Duration;

use kube_harness::{ControlPlane, IstioRelease, Options};
use weir_api::backend::{ApplyOutcome, Backend, BackendError, RuleSelector};
use weir_api::load::load_paths;
use weir_api::resource::{Kind, ObjectRef};
use weir_kube::{ApplyOptions, ClusterTarget, ConfirmOptions, KubeBackend};

const NS: &str = "talk";

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/canary-istio")
}

/// A control plane with Istio 1.30's CRDs and namespace [`NS`].
async fn cluster() -> (ControlPlane, tempfile::TempDir) {
    let plane = ControlPlane::start(Options {
        controller_manager: false,
        istio: Some(IstioRelease::V1_30),
    })
    .await;
    plane.namespace(NS).await;
    (plane, tempfile::tempdir().unwrap())
}

/// weir's backend with `kubeconfig`, in [`NS`].
async fn backend_with(kubeconfig: PathBuf, timeout: Duration, apply: ApplyOptions) -> KubeBackend {
    let target = ClusterTarget {
        kubeconfig: Some(kubeconfig),
        context: None,
    };
    let conn = weir_kube::connect(&target, timeout)
        .await
        .expect("kubeconfig loads");
    KubeBackend::new(conn, timeout, apply, ConfirmOptions::default())
}

/// weir's backend as the recorded admin.
async fn recorded(plane: &ControlPlane, dir: &tempfile::TempDir) -> KubeBackend {
    backend_with(
        plane.recorded_kubeconfig(dir.path(), NS),
        Duration::from_secs(10),
        ApplyOptions::default(),
    )
    .await
}

fn object(kind: Kind, name: &str) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: NS.into(),
        name: name.into(),
    }
}

/// The API path of each seed object, at the version its manifest names.
fn seed_paths() -> [String; 8] {
    [
        "/api/v1/namespaces/NS/services/my-app",
        "/apis/apps/v1/namespaces/NS/deployments/my-app-v1",
        "/apis/apps/v1/namespaces/NS/deployments/my-app-v2",
        "/apis/autoscaling/v1/namespaces/NS/horizontalpodautoscalers/my-app-v1",
        "/apis/autoscaling/v1/namespaces/NS/horizontalpodautoscalers/my-app-v2",
        "/apis/networking.istio.io/v1alpha3/namespaces/NS/gateways/http-gateway",
        "/apis/networking.istio.io/v1alpha3/namespaces/NS/virtualservices/my-app",
        "/apis/networking.istio.io/v1alpha3/namespaces/NS/destinationrules/my-app",
    ]
    .map(|p| p.replace("NS", NS))
}

#[tokio::test]
async fn apply_dry_runs_everything_then_applies_server_side_as_weir() {
    let (plane, dir) = cluster().await;
    let backend = recorded(&plane, &dir).await;
    let manifests = load_paths(&[examples()]).unwrap();
    let outcomes = backend.apply(&manifests).await.expect("apply");
    assert_eq!(outcomes.len(), 8);
    assert!(
        outcomes.iter().all(|(_, o)| *o == ApplyOutcome::Created),
        "{outcomes:?}"
    );

    // Each object read at the version it is applied at, then dry-run;
    // then every object applied.
    let paths = seed_paths();
    let mut wanted = Vec::new();
    for path in &paths {
        wanted.push(format!("get {path}"));
        wanted.push(format!("patch {path}"));
    }
    for path in &paths {
        wanted.push(format!("patch {path}"));
    }
    let requests = plane.recorded();
    assert_eq!(
        requests.iter().map(|r| r.line()).collect::<Vec<_>>(),
        wanted
    );
    for (i, r) in requests.iter().filter(|r| r.verb == "patch").enumerate() {
        assert_eq!(r.param("fieldManager"), Some("weir"), "{r:?}");
        assert_eq!(r.param("fieldValidation"), Some("Strict"), "{r:?}");
        assert_eq!(
            r.param("dryRun"),
            if i < 8 { Some("All") } else { None },
            "{r:?}"
        );
        assert_eq!(r.param("force"), None, "{r:?}");
    }
    // What was applied is the document as written (the VirtualService's
    // weights, the HPA's scale target exactly as in the seed), applied
    // server-side by weir: the server's managedFields say so. (The audit
    // log does not keep an apply's YAML body.)
    for path in &paths {
        let stored = plane.object(path).await.unwrap();
        let managers = stored["metadata"]["managedFields"].as_array().unwrap();
        assert!(
            managers
                .iter()
                .any(|m| m["manager"] == "weir" && m["operation"] == "Apply"),
            "{path}: {managers:?}"
        );
    }
    let vs = plane.object(&paths[6]).await.unwrap();
    assert_eq!(vs["spec"]["http"][0]["route"][0]["weight"], 90);
    let hpa = plane.object(&paths[3]).await.unwrap();
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["apiVersion"],
        "extensions/v1beta1"
    );

    // Applying again changes nothing: the same outcome, the same stored
    // versions.
    let versions = |objects: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        objects
            .iter()
            .map(|o| o["metadata"]["resourceVersion"].clone())
            .collect()
    };
    let mut before = Vec::new();
    for path in &paths {
        before.push(plane.object(path).await.unwrap());
    }
    let again = backend.apply(&manifests).await.unwrap();
    assert!(
        again.iter().all(|(_, o)| *o == ApplyOutcome::Unchanged),
        "{again:?}"
    );
    let mut after = Vec::new();
    for path in &paths {
        after.push(plane.object(path).await.unwrap());
    }
    assert_eq!(versions(after), versions(before));
}

#[tokio::test]
async fn apply_can_rewrite_the_seeds_removed_scale_target_and_force_conflicts() {
    let (plane, dir) = cluster().await;
    let options = ApplyOptions {
        force_conflicts: true,
        rewrite_scale_target: true,
    };
    let backend = backend_with(
        plane.recorded_kubeconfig(dir.path(), NS),
        Duration::from_secs(10),
        options,
    )
    .await;
    let manifests = load_paths(&[examples().join("hpa.yaml")]).unwrap();
    backend.apply(&manifests).await.unwrap();
    let stored = plane.object(&seed_paths()[3]).await.unwrap();
    assert_eq!(stored["spec"]["scaleTargetRef"]["apiVersion"], "apps/v1");
    let patches: Vec<_> = plane
        .recorded()
        .into_iter()
        .filter(|r| r.verb == "patch")
        .collect();
    assert_eq!(patches.len(), 4, "{patches:?}");
    assert!(
        patches.iter().all(|r| r.param("force") == Some("true")),
        "{patches:?}"
    );
}

#[tokio::test]
async fn conflict_forbidden_and_timeout_have_their_exit_codes() {
    let (plane, dir) = cluster().await;
    let manifests = load_paths(&[examples().join("app-v1.yaml")]).unwrap();
    // Another manager owns the Service's selector with another value.
    plane
        .apply_yaml(&format!(
            "apiVersion: v1
kind: Service
metadata: {{name: my-app, namespace: {NS}}}
spec:
  selector: {{app: someone-else}}
  ports: [{{name: http, port: 80}}]
"
        ))
        .await;
    let err = recorded(&plane, &dir)
        .await
        .apply(&manifests)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Conflict { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 1);
    let message = err.to_string();
    assert!(
        message.contains("conflict on service/my-app: Apply failed with"),
        "{message}"
    );
    assert!(message.contains("kube-harness"), "{message}");

    // A user with no role may read nothing.
    let token = plane.token_for(NS, "nobody").await;
    let nobody = backend_with(
        plane.kubeconfig_with_token(dir.path(), NS, "nobody", Some(&token)),
        Duration::from_secs(10),
        ApplyOptions::default(),
    )
    .await;
    let err = nobody.apply(&manifests).await.unwrap_err();
    assert!(matches!(err, BackendError::Forbidden(_)), "{err:?}");
    assert_eq!(err.exit_code(), 1);
    let message = err.to_string();
    assert!(
        message.contains("service/my-app")
            && message.contains("system:serviceaccount:talk:nobody")
            && message.contains("cannot get resource \"services\""),
        "{message}"
    );

    // An API server that stops answering on a connection it served.
    let short = backend_with(
        plane.recorded_kubeconfig(dir.path(), NS),
        Duration::from_secs(2),
        ApplyOptions::default(),
    )
    .await;
    let v1 = object(Kind::Deployment, "my-app-v1");
    assert!(short.get(&v1).await.unwrap().is_none());
    let paused = plane.pause_api_server();
    let err = short.get(&v1).await.unwrap_err();
    drop(paused);
    assert!(matches!(err, BackendError::Timeout(..)), "{err:?}");
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string().contains("get deployment.apps/my-app-v1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_context_is_bad_input_and_asks_nothing() {
    let (plane, dir) = cluster().await;
    let target = ClusterTarget {
        kubeconfig: Some(plane.recorded_kubeconfig(dir.path(), NS)),
        context: Some("prod".into()),
    };
    let err = weir_kube::connect(&target, Duration::from_secs(1))
        .await
        .err()
        .unwrap();
    assert_eq!(err.exit_code(), 2);
    assert_eq!(
        err.to_string(),
        "context \"prod\" is not in the kubeconfig (it has: recorded)"
    );
    assert!(plane.recorded().is_empty());
}

/// metrics.k8s.io registered (an APIService) while its server is not
/// ready: the aggregator answers 503, weir says so at once — asked once,
/// where kube's client would retry a 503 until the request timeout and
/// stall every `top` refresh — and doctor names the fix.
#[tokio::test]
async fn metrics_not_ready_answers_at_once_and_doctor_shows_the_fix() {
    let (plane, dir) = cluster().await;
    plane
        .apply_yaml(
            "apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: metrics-server, namespace: kube-system, port: 443}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
",
        )
        .await;
    let backend = recorded(&plane, &dir).await;
    let metrics = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods");
    // The aggregator serves the group once it has loaded the APIService.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let err = loop {
        let err = backend.pod_cpu(NS).await.unwrap_err();
        if err.to_string().contains("installed but not ready") {
            break err;
        }
        assert!(tokio::time::Instant::now() < deadline, "{err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(err.exit_code(), 1, "{err:?}");
    let asked = |plane: &ControlPlane| {
        plane
            .recorded()
            .iter()
            .filter(|r| r.path == metrics)
            .count()
    };
    let before = asked(&plane);
    backend.pod_cpu(NS).await.unwrap_err();
    assert_eq!(asked(&plane) - before, 1, "a 503 is asked once");

    let checks = weir_kube::doctor::run(&backend, NS)
        .await
        .expect("doctor reports");
    let check = checks
        .iter()
        .find(|c| c.name == "metrics-server")
        .expect("a metrics check");
    assert!(!check.ok);
    assert!(check.detail.contains("not ready"), "{check:?}");
    assert!(
        check
            .fix
            .as_deref()
            .unwrap_or_default()
            .contains("rollout status deployment/metrics-server"),
        "{check:?}"
    );
}

#[tokio::test]
async fn an_api_server_that_is_gone_is_unreachable() {
    let (plane, dir) = cluster().await;
    let backend = recorded(&plane, &dir).await;
    let url = plane.url().to_owned();
    drop(plane);
    let err = backend.list(Kind::Pod, NS).await.unwrap_err();
    assert_eq!(err.exit_code(), 3, "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot reach the Kubernetes API at {url}")),
        "{err}"
    );
}

#[tokio::test]
async fn delete_get_list_read_the_preferred_versions() {
    let (plane, dir) = cluster().await;
    let backend = recorded(&plane, &dir).await;
    backend
        .apply(&load_paths(&[examples().join("hpa.yaml")]).unwrap())
        .await
        .unwrap();
    let start = plane.recorded().len();
    let hpa = backend
        .get(&object(Kind::HorizontalPodAutoscaler, "my-app-v2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hpa.object["apiVersion"], "autoscaling/v1");
    assert_eq!(hpa.object["kind"], "HorizontalPodAutoscaler");
    assert_eq!(hpa.object["spec"]["targetCPUUtilizationPercentage"], 50);
    assert!(
        backend
            .get(&object(Kind::HorizontalPodAutoscaler, "nope"))
            .await
            .unwrap()
            .is_none()
    );
    let listed = backend
        .list(Kind::HorizontalPodAutoscaler, NS)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
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
    let hpas = format!("/apis/autoscaling/v1/namespaces/{NS}/horizontalpodautoscalers");
    let requests = plane.recorded()[start..].to_vec();
    assert_eq!(
        requests.iter().map(|r| r.line()).collect::<Vec<_>>(),
        vec![
            format!("get {hpas}/my-app-v2"),
            format!("get {hpas}/nope"),
            format!("list {hpas}"),
            format!("delete {hpas}/my-app-v2"),
            format!("delete /apis/networking.istio.io/v1/namespaces/{NS}/gateways/http-gateway"),
        ]
    );
    assert!(plane.object(&format!("{hpas}/my-app-v2")).await.is_none());
}

#[tokio::test]
async fn route_refuses_a_missing_service_or_destination_and_changes_nothing() {
    let (plane, dir) = cluster().await;
    let backend = recorded(&plane, &dir).await;
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

    backend
        .apply(&load_paths(&[examples().join("istio.yaml")]).unwrap())
        .await
        .unwrap();
    let path = format!("/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/my-app");
    let before = plane.object(&path).await.unwrap();
    let start = plane.recorded().len();
    let err = backend
        .set_route_weights(&vs, &RuleSelector::Default, &[("v3".to_owned(), 1)])
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert_eq!(
        err.to_string(),
        "virtualservice.networking.istio.io/my-app: http[0] has no destination \"v3\" (it has v1, v2)"
    );
    assert_eq!(
        plane.recorded()[start..]
            .iter()
            .map(|r| r.line())
            .collect::<Vec<_>>(),
        vec![format!("get {path}")],
        "refused before any write"
    );
    let after = plane.object(&path).await.unwrap();
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn a_watch_resumes_from_its_lists_resource_version() {
    use futures::StreamExt;
    let (plane, dir) = cluster().await;
    let backend = recorded(&plane, &dir).await;
    backend
        .apply(&load_paths(&[examples().join("app-v1.yaml")]).unwrap())
        .await
        .unwrap();
    let start = plane.recorded().len();
    let mut stream = backend.watch(Kind::Service, NS).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event")
        .expect("open")
        .expect("ok");
    assert!(
        matches!(first, weir_api::backend::WatchEvent::Applied(ref o) if o.name() == "my-app"),
        "{first:?}"
    );
    // The watch is opened once the list is in and the stream is read on.
    let following = tokio::spawn(async move { while stream.next().await.is_some() {} });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let watch = loop {
        let requests = plane.recorded()[start..].to_vec();
        if let Some(watch) = requests.iter().find(|r| r.verb == "watch") {
            let list = requests
                .iter()
                .find(|r| r.verb == "list")
                .expect("a list first")
                .clone();
            break (list, watch.clone());
        }
        assert!(tokio::time::Instant::now() < deadline, "{requests:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    following.abort();
    let (list, watch) = watch;
    assert_eq!(list.path, format!("/api/v1/namespaces/{NS}/services"));
    assert_eq!(watch.path, list.path);
    assert_eq!(watch.param("timeoutSeconds"), Some("290"));
    let version: u64 = watch
        .param("resourceVersion")
        .and_then(|v| v.parse().ok())
        .expect("a resourceVersion to resume from");
    let service = plane
        .object(&format!("/api/v1/namespaces/{NS}/services/my-app"))
        .await
        .unwrap();
    let listed: u64 = service["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        version >= listed,
        "the watch starts after what the list showed: {watch:?}"
    );
}
