//! The cluster backend against a real kube-apiserver (Kubernetes' own,
//! built from its Go modules by `.ci/test-tools`; `kube-harness` starts it
//! per test on loopback, with Istio's CRDs of the release each test
//! names): the seed's objects applied, re-applied, read, patched and
//! deleted as a cluster stores, converts and validates them.
//!
//! Over 600 lines: one test per behaviour of the real server, kept in one
//! file so the helpers that start a control plane and weir's backend on it
//! stay private to them.

use std::path::PathBuf;
use std::time::Duration;

use kube_harness::{ControlPlane, IstioRelease, Options};
use weir_api::backend::{ApplyOutcome, Backend};
use weir_api::load::{load_paths, load_str};
use weir_api::patch::PatchType;
use weir_api::resource::{Kind, ObjectRef};
use weir_kube::{ApplyOptions, ClusterTarget, ConfirmOptions, KubeBackend};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/canary-istio")
}

/// A control plane with `istio`'s CRDs and namespace `ns`, and weir's
/// backend on it as its admin.
async fn cluster(
    istio: Option<IstioRelease>,
    ns: &str,
) -> (ControlPlane, KubeBackend, tempfile::TempDir) {
    let plane = ControlPlane::start(Options {
        controller_manager: false,
        istio,
    })
    .await;
    plane.namespace(ns).await;
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_on(&plane, &dir, ns, ApplyOptions::default()).await;
    (plane, backend, dir)
}

/// weir's backend on `plane` as its admin, in namespace `ns`.
async fn backend_on(
    plane: &ControlPlane,
    dir: &tempfile::TempDir,
    ns: &str,
    apply: ApplyOptions,
) -> KubeBackend {
    let target = ClusterTarget {
        kubeconfig: Some(plane.kubeconfig(dir.path(), ns)),
        context: None,
    };
    let timeout = Duration::from_secs(10);
    let conn = weir_kube::connect(&target, timeout)
        .await
        .expect("kubeconfig loads");
    KubeBackend::new(conn, timeout, apply, ConfirmOptions::default())
}

/// The VirtualServices of `ns` as a client other than weir sees them.
async fn virtual_services(plane: &ControlPlane, ns: &str) -> kube::Api<kube::api::DynamicObject> {
    let resource = weir_kube::kinds::read_resource(Kind::VirtualService);
    kube::Api::namespaced_with(plane.client().await, ns, &resource)
}

/// The JSON patch `weir route my-app v1=0 v2=100` sends, computed from
/// `read`.
fn route_to_v2(read: &kube::api::DynamicObject) -> json_patch::Patch {
    weir_kube::route::weight_patch(
        read,
        &weir_api::backend::RuleSelector::Default,
        &[("v1".to_owned(), 0), ("v2".to_owned(), 100)],
    )
    .unwrap()
    .0
}

fn object(kind: Kind, ns: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: ns.into(),
        name: name.into(),
    }
}

const HPA_V2: &str = "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: my-app-v2
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: my-app-v2
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 50
";

#[tokio::test]
async fn the_seed_applies_re_applies_unchanged_reads_and_deletes_on_both_istio_generations() {
    for release in [IstioRelease::V1_22, IstioRelease::V1_30] {
        let (_plane, backend, _dir) = cluster(Some(release), "seed").await;
        let seed = load_paths(&[examples()]).unwrap();
        let first = backend.apply(&seed).await.expect("the seed applies");
        assert!(
            first.iter().all(|(_, o)| *o == ApplyOutcome::Created),
            "{release:?}: {first:?}"
        );
        let again = backend.apply(&seed).await.expect("the seed re-applies");
        assert!(
            again.iter().all(|(_, o)| *o == ApplyOutcome::Unchanged),
            "{release:?}: a re-apply of what is stored: {again:?}"
        );
        let vs = backend
            .get(&object(Kind::VirtualService, "seed", "my-app"))
            .await
            .unwrap()
            .expect("the VirtualService");
        assert_eq!(vs.object["apiVersion"], "networking.istio.io/v1");
        let weights: Vec<i64> = vs.object["spec"]["http"][0]["route"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["weight"].as_i64().unwrap())
            .collect();
        assert_eq!(weights, [90, 10], "{release:?}");
        assert_eq!(
            backend
                .list(Kind::DestinationRule, "seed")
                .await
                .unwrap()
                .len(),
            1
        );
        let refs: Vec<ObjectRef> = first.iter().map(|(r, _)| r.clone()).collect();
        let deleted = backend.delete(&refs).await.unwrap();
        assert!(deleted.iter().all(|(_, d)| *d), "{release:?}: {deleted:?}");
        assert!(
            backend
                .list(Kind::VirtualService, "seed")
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn an_hpa_applied_at_autoscaling_v2_re_applies_unchanged() {
    let (_plane, backend, _dir) = cluster(None, "hpa").await;
    let manifests = load_str(std::path::Path::new("hpa.yaml"), HPA_V2).unwrap();
    let first = backend.apply(&manifests).await.unwrap();
    assert_eq!(first[0].1, ApplyOutcome::Created);
    let again = backend.apply(&manifests).await.unwrap();
    assert_eq!(again[0].1, ApplyOutcome::Unchanged, "{again:?}");
}

#[tokio::test]
async fn patch_on_an_istio_kind_is_a_merge_patch_by_default() {
    let (_plane, backend, _dir) = cluster(Some(IstioRelease::V1_30), "patch").await;
    backend
        .apply(&load_paths(&[examples()]).unwrap())
        .await
        .unwrap();
    let vs = object(Kind::VirtualService, "patch", "my-app");
    let patch = serde_json::json!({"metadata": {"labels": {"patched": "yes"}}});
    // What kubectl's default would send: the API server has no strategic
    // merge for a custom resource.
    assert!(
        backend
            .patch(&vs, PatchType::Strategic, &patch)
            .await
            .is_err()
    );
    let outcome = backend
        .patch(&vs, PatchType::default_for(Kind::VirtualService), &patch)
        .await
        .expect("a patch of a VirtualService with the default type");
    assert_eq!(outcome, ApplyOutcome::Configured);
    let stored = backend.get(&vs).await.unwrap().unwrap();
    assert_eq!(stored.object["metadata"]["labels"]["patched"], "yes");
    // A Service keeps kubectl's default, a strategic merge.
    assert_eq!(PatchType::default_for(Kind::Service), PatchType::Strategic);
}

#[tokio::test]
async fn doctor_reports_on_a_cluster_without_istio() {
    let (_plane, backend, _dir) = cluster(None, "bare").await;
    let checks = weir_kube::doctor::run(&backend, "bare")
        .await
        .expect("a report, not an abort, on a cluster without Istio's CRDs");
    let istio = checks.iter().find(|c| c.name == "Istio CRDs").unwrap();
    assert!(!istio.ok);
    assert!(
        istio
            .fix
            .as_deref()
            .unwrap()
            .contains("install Istio ≥ 1.22"),
        "{istio:?}"
    );
    let gateway = checks.iter().find(|c| c.name == "ingress gateway").unwrap();
    assert!(!gateway.ok, "{gateway:?}");
    assert!(
        checks.iter().all(|c| !c.name.starts_with("subset ")),
        "{checks:?}"
    );
}

#[tokio::test]
async fn the_gateway_is_found_by_its_label_in_any_namespace_or_named() {
    let (plane, backend, dir) = cluster(None, "apps").await;
    let _node = plane.node().await;
    // Helm's gateway chart, installed as its docs say: release
    // istio-ingressgateway in namespace istio-ingress.
    plane
        .install_gateway_service("istio-ingress", "istio-ingressgateway")
        .await;
    let found = backend
        .ingress_addresses()
        .await
        .expect("the gateway, found by its label");
    let node_port = found
        .iter()
        .find(|a| a.via == "NodePort")
        .expect("a NodePort address");
    assert!(
        node_port
            .url
            .starts_with(&format!("http://{}:3", kube_harness::NODE_IP)),
        "{found:?}"
    );
    assert_eq!(
        backend.ingress_name().await.unwrap().to_string(),
        "istio-ingress/istio-ingressgateway"
    );

    // A second gateway: weir does not guess.
    plane.install_gateway_service("edge", "public").await;
    let err = backend.ingress_addresses().await.unwrap_err();
    assert!(
        err.to_string().contains("--gateway NAMESPACE/NAME"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("edge/public, istio-ingress/istio-ingressgateway"),
        "{err}"
    );

    // Named with --gateway.
    let named = backend_on(&plane, &dir, "apps", ApplyOptions::default())
        .await
        .with_gateway(Some("edge/public".parse().unwrap()));
    assert_eq!(
        named.ingress_name().await.unwrap().to_string(),
        "edge/public"
    );
}

#[tokio::test]
async fn a_weight_change_made_between_weirs_read_and_its_patch_is_refused_not_lost() {
    use kube::api::{Patch, PatchParams};
    let (plane, backend, _dir) = cluster(Some(IstioRelease::V1_30), "race").await;
    backend
        .apply(&load_paths(&[examples()]).unwrap())
        .await
        .unwrap();
    let vss = virtual_services(&plane, "race").await;
    // weir reads 90/10 and prepares 0/100 ...
    let patch = route_to_v2(&vss.get("my-app").await.unwrap());
    // ... while someone else sets 50/50.
    let theirs = serde_json::json!({"spec": {"http": [{"route": [
        {"destination": {"host": "my-app", "subset": "v1"}, "weight": 50},
        {"destination": {"host": "my-app", "subset": "v2"}, "weight": 50},
    ]}]}});
    vss.patch("my-app", &PatchParams::default(), &Patch::Merge(&theirs))
        .await
        .unwrap();
    let refused = vss
        .patch("my-app", &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .expect_err("weir's patch, written against 90/10, is refused");
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.starts_with(weir_kube::PATCH_NOT_APPLICABLE),
                "{status:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let stored = vss.get("my-app").await.unwrap();
    assert_eq!(
        stored.data["spec"]["http"][0]["route"][0]["weight"], 50,
        "their change stands"
    );
}

#[tokio::test]
async fn doctor_says_when_the_gateways_node_port_cannot_be_reached_and_what_to_do() {
    let (plane, backend, _dir) = cluster(Some(IstioRelease::V1_30), "dd").await;
    let _node = plane.node().await;
    // The node's address is loopback here; nothing listens at the
    // NodePort, as nothing answers at a kind node's address from a host
    // under Docker Desktop.
    plane
        .install_gateway_service("istio-system", "istio-ingressgateway")
        .await;
    let checks = weir_kube::doctor::run(&backend, "dd").await.unwrap();
    let gateway = checks.iter().find(|c| c.name == "ingress gateway").unwrap();
    assert!(!gateway.ok, "{gateway:?}");
    assert!(
        gateway.detail.contains(&format!(
            "nothing accepts connections at http://{}:3",
            kube_harness::NODE_IP
        )),
        "{gateway:?}"
    );
    assert!(
        gateway.detail.contains("http://127.255."),
        "the cluster IP is loopback here: {gateway:?}"
    );
    let fix = gateway.fix.as_deref().unwrap();
    assert!(fix.contains("Docker Desktop"), "{fix}");
    assert!(
        fix.contains("kubectl -n istio-system port-forward svc/istio-ingressgateway 8080:80"),
        "{fix}"
    );
}

/// An update of `deployment`'s scale subresource by `manager`, as the HPA
/// controller or `kubectl scale` make one.
async fn scale_as(plane: &ControlPlane, ns: &str, deployment: &str, manager: &str, replicas: i32) {
    use kube::api::{Api, Patch, PatchParams};
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(plane.client().await, ns);
    let params = PatchParams {
        field_manager: Some(manager.to_owned()),
        ..PatchParams::default()
    };
    deployments
        .patch_scale(
            deployment,
            &params,
            &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
}

async fn replicas(plane: &ControlPlane, ns: &str, deployment: &str) -> i32 {
    kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(plane.client().await, ns)
        .get(deployment)
        .await
        .unwrap()
        .spec
        .replicas
        .unwrap()
}

/// An HPA's scale-out, then a re-apply, against the real API server's
/// field managers.
#[tokio::test]
async fn an_apply_after_an_hpa_scale_out_keeps_or_takes_replicas_as_kubectl_would() {
    let (plane, backend, dir) = cluster(Some(IstioRelease::V1_30), "scale").await;
    let root = examples().join("../..");
    // deploy/kubernetes leaves replicas to the HPA: nothing conflicts, and
    // the HPA's count stays.
    let cluster_manifests = load_paths(&[root.join("deploy/kubernetes")]).unwrap();
    backend
        .apply(&cluster_manifests)
        .await
        .expect("first apply");
    scale_as(&plane, "scale", "my-app-v1", "kube-controller-manager", 3).await;
    backend
        .apply(&cluster_manifests)
        .await
        .expect("re-apply after the scale-out");
    assert_eq!(replicas(&plane, "scale", "my-app-v1").await, 3);

    // The seed sets replicas: 1 beside its HPA: the file wins.
    let seed = load_paths(&[examples()]).unwrap();
    backend.apply(&seed).await.expect("apply the seed");
    scale_as(&plane, "scale", "my-app-v1", "kube-controller-manager", 4).await;
    backend
        .apply(&seed)
        .await
        .expect("re-apply after the scale-out");
    assert_eq!(replicas(&plane, "scale", "my-app-v1").await, 1);

    // Without an HPA in the manifests, someone else's scale is a conflict
    // that needs --force-conflicts, as with kubectl.
    let alone = load_paths(&[examples().join("app-v1.yaml")]).unwrap();
    scale_as(&plane, "scale", "my-app-v1", "kubectl-scale", 2).await;
    let err = backend.apply(&alone).await.unwrap_err();
    assert!(
        matches!(err, weir_api::backend::BackendError::Conflict { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("conflict with \"kubectl-scale\""),
        "{err}"
    );
    let forcing = backend_on(
        &plane,
        &dir,
        "scale",
        ApplyOptions {
            force_conflicts: true,
            ..ApplyOptions::default()
        },
    )
    .await;
    forcing
        .apply(&alone)
        .await
        .expect("--force-conflicts takes the field");
    assert_eq!(replicas(&plane, "scale", "my-app-v1").await, 1);
}

/// `weir route`'s patch (an update by "weir", another owner of
/// `spec.http` than weir's applies) makes the next apply conflict on the
/// real server; the file wins.
#[tokio::test]
async fn an_apply_after_weir_route_takes_the_files_weights() {
    use kube::api::{DynamicObject, Patch, PatchParams};
    let (plane, backend, _dir) = cluster(Some(IstioRelease::V1_22), "routed").await;
    let seed = load_paths(&[examples()]).unwrap();
    backend.apply(&seed).await.expect("first apply");
    let vss = virtual_services(&plane, "routed").await;
    let patch = route_to_v2(&vss.get("my-app").await.unwrap());
    let as_route = PatchParams {
        field_manager: Some(weir_kube::FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    vss.patch("my-app", &as_route, &Patch::Json::<()>(patch))
        .await
        .expect("weir route's patch");
    let weights = |vs: &DynamicObject| -> Vec<i64> {
        vs.data["spec"]["http"][0]["route"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["weight"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(weights(&vss.get("my-app").await.unwrap()), [0, 100]);
    let outcomes = backend.apply(&seed).await.expect("the re-apply succeeds");
    let vs = outcomes
        .iter()
        .find(|(o, _)| o.kind == Kind::VirtualService)
        .unwrap();
    assert_eq!(vs.1, ApplyOutcome::Configured);
    assert_eq!(weights(&vss.get("my-app").await.unwrap()), [90, 10]);
}

/// A namespace that does not exist, an Istio that no longer serves the
/// seed's `v1alpha3`, and no Istio at all: each named for what it is.
#[tokio::test]
async fn a_missing_namespace_an_api_not_served_and_istio_not_installed_each_say_so() {
    let (plane, backend, dir) = cluster(Some(IstioRelease::V1_30), "here").await;
    let seed = load_paths(&[examples()]).unwrap();
    let err = backend
        .clone()
        .in_namespace("canary".into())
        .apply(&seed)
        .await
        .unwrap_err();
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

    // An Istio whose CRDs no longer serve v1alpha3 (the seed's version).
    for crd in ["gateways", "virtualservices", "destinationrules"] {
        let path = format!(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}.networking.istio.io"
        );
        let mut versions = plane.object(&path).await.unwrap()["spec"]["versions"].clone();
        for version in versions.as_array_mut().unwrap() {
            if version["name"] == "v1alpha3" {
                version["served"] = false.into();
            }
        }
        plane
            .merge_patch(&path, &serde_json::json!({"spec": {"versions": versions}}))
            .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let err = loop {
        match backend.apply(&seed).await {
            Err(err) if err.to_string().contains("not v1alpha3") => break err,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "v1alpha3 still served: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(err.exit_code(), 1, "{err:?}");
    assert!(
        err.to_string()
            .contains("gateway.networking.istio.io/http-gateway: the Kubernetes API at"),
        "{err}"
    );
    assert!(
        err.to_string().contains(
            "serves gateways of the API group networking.istio.io at v1, v1beta1, not v1alpha3"
        ),
        "{err}"
    );
    drop((plane, dir));

    // No Istio at all: its CRDs are missing, not the object.
    let (_plane, backend, _dir) = cluster(None, "bare").await;
    let err = backend.apply(&seed).await.unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err:?}");
    assert!(
        err.to_string()
            .contains("does not serve the API group networking.istio.io"),
        "{err}"
    );
    let err = backend
        .get(&object(Kind::VirtualService, "bare", "my-app"))
        .await
        .unwrap_err();
    assert!(
        !matches!(err, weir_api::backend::BackendError::NotFound(_)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("Istio's CRDs are not installed"),
        "{err}"
    );
}

/// `kubectl get -o yaml > file`, later `weir apply -f file`: the saved
/// object carries the server's fields (a resourceVersion gone stale since,
/// managedFields, uid, status), which a real server would refuse in an
/// apply; weir sends the user's part only.
#[tokio::test]
async fn a_manifest_saved_from_the_server_applies_after_the_object_changed() {
    let (plane, backend, _dir) = cluster(None, "saved").await;
    let service = load_paths(&[examples().join("app-v1.yaml")]).unwrap();
    backend.apply(&service).await.unwrap();
    let saved = plane
        .object("/api/v1/namespaces/saved/services/my-app")
        .await
        .unwrap();
    assert!(
        saved["metadata"]["managedFields"].is_array()
            && saved["metadata"]["resourceVersion"].is_string()
    );
    plane
        .merge_patch(
            "/api/v1/namespaces/saved/services/my-app",
            &serde_json::json!({"metadata": {"labels": {"changed": "since"}}}),
        )
        .await;
    let text = serde_json::to_string_pretty(&saved).unwrap();
    let manifests = load_str(std::path::Path::new("saved.yaml"), &text).unwrap();
    let outcomes = backend
        .apply(&manifests)
        .await
        .expect("applies with the server's fields dropped");
    assert_eq!(outcomes[0].1, ApplyOutcome::Unchanged, "{outcomes:?}");
}

#[tokio::test]
async fn weir_scale_patches_the_scale_subresource_and_a_re_apply_keeps_the_count() {
    let (plane, backend, _dir) = cluster(Some(IstioRelease::V1_30), "scaled").await;
    let root = examples().join("../..");
    let manifests = load_paths(&[root.join("deploy/kubernetes")]).unwrap();
    backend.apply(&manifests).await.expect("apply");
    let v1 = object(Kind::Deployment, "scaled", "my-app-v1");
    backend.scale(&v1, 5).await.expect("scale");
    assert_eq!(replicas(&plane, "scaled", "my-app-v1").await, 5);
    // The manifests leave replicas alone, so applying them again keeps 5.
    backend.apply(&manifests).await.expect("re-apply");
    assert_eq!(replicas(&plane, "scaled", "my-app-v1").await, 5);
    let err = backend
        .scale(&object(Kind::Deployment, "scaled", "nope"), 2)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err:?}");
}

/// Admission refuses the VirtualService (a ValidatingAdmissionPolicy, the
/// API server's own, as a webhook would): weir's dry run of everything
/// meets the refusal first, so nothing is stored, and the message names
/// the file and line of the refused object (exit 2).
#[tokio::test]
async fn an_object_admission_refuses_changes_nothing_and_names_its_file_and_line() {
    let (plane, backend, dir) = cluster(Some(IstioRelease::V1_30), "refused").await;
    plane
        .apply_yaml(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: no-virtual-services}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [networking.istio.io], apiVersions: ["*"], operations: [CREATE, UPDATE], resources: [virtualservices]}
  validations:
  - {expression: "false", message: "routing changes are frozen"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-virtual-services}
spec: {policyName: no-virtual-services, validationActions: [Deny]}
"#,
        )
        .await;
    let seed = load_paths(&[examples()]).unwrap();
    // The policy takes effect once the API server has loaded it.
    plane.namespace("probe").await;
    let probe = backend_on(&plane, &dir, "probe", ApplyOptions::default()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while probe.apply(&seed).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let err = backend.apply(&seed).await.unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("istio.yaml:15: virtualservice.networking.istio.io/my-app:"),
        "{message}"
    );
    assert!(message.contains("routing changes are frozen"), "{message}");
    assert!(
        plane
            .object("/api/v1/namespaces/refused/services/my-app")
            .await
            .is_none(),
        "nothing was stored"
    );
}

/// kubectl's three patch types on a Service, as the real server applies
/// them.
#[tokio::test]
async fn weir_patch_applies_kubectls_patch_types_and_a_no_op_is_unchanged() {
    let (plane, backend, _dir) = cluster(None, "patched").await;
    backend
        .apply(&load_paths(&[examples().join("app-v1.yaml")]).unwrap())
        .await
        .unwrap();
    let svc = object(Kind::Service, "patched", "my-app");
    let path = "/api/v1/namespaces/patched/services/my-app";
    let selector = |object: serde_json::Value| object["spec"]["selector"].clone();
    let to_v2 = serde_json::json!({"spec": {"selector": {"version": "v2.0.0"}}});
    let outcome = backend
        .patch(&svc, PatchType::Strategic, &to_v2)
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Configured);
    assert_eq!(
        selector(plane.object(path).await.unwrap()),
        serde_json::json!({"app": "my-app", "version": "v2.0.0"})
    );
    // The same again changes nothing: the server keeps its resourceVersion.
    let again = backend.patch(&svc, PatchType::Merge, &to_v2).await.unwrap();
    assert_eq!(again, ApplyOutcome::Unchanged);
    let ops = serde_json::json!([{"op": "remove", "path": "/spec/selector/version"}]);
    backend.patch(&svc, PatchType::Json, &ops).await.unwrap();
    assert_eq!(
        selector(plane.object(path).await.unwrap()),
        serde_json::json!({"app": "my-app"})
    );
}

/// `weir get -w` on the real server: the list, then each change as it
/// happens, deletions included.
#[tokio::test]
async fn watch_lists_then_follows_changes_and_deletions() {
    use futures::StreamExt;
    use weir_api::backend::WatchEvent;
    let (_plane, backend, _dir) = cluster(Some(IstioRelease::V1_30), "watched").await;
    let seed = load_paths(&[examples().join("istio.yaml")]).unwrap();
    backend.apply(&seed).await.unwrap();
    let mut events = backend
        .watch(Kind::VirtualService, "watched")
        .await
        .unwrap();
    let mut next = async || {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("an event within 30 s")
            .expect("the watch goes on")
            .expect("no error");
        match event {
            WatchEvent::Applied(o) => format!("applied {}", o.name()),
            WatchEvent::Deleted(o) => format!("deleted {}", o.name()),
        }
    };
    assert_eq!(next().await, "applied my-app");
    let vs = object(Kind::VirtualService, "watched", "my-app");
    backend
        .patch(
            &vs,
            PatchType::Merge,
            &serde_json::json!({"metadata": {"labels": {"seen": "yes"}}}),
        )
        .await
        .unwrap();
    assert_eq!(next().await, "applied my-app");
    backend.delete(std::slice::from_ref(&vs)).await.unwrap();
    assert_eq!(next().await, "deleted my-app");
}
