//! The harness itself, against the real programs: the API server comes up
//! at the pinned release with RBAC on, Istio's CRDs are served at the
//! version each release stores, a Deployment becomes Ready pods through
//! the controller manager and the node stand-in, a service account's token
//! is refused what its roles do not grant, and stopping leaves no process.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube_harness::{ControlPlane, IstioRelease, Options};
use serde_json::json;

#[tokio::test]
async fn a_deployment_becomes_ready_pods_and_rbac_is_enforced() {
    let plane = ControlPlane::start(Options {
        controller_manager: true,
        istio: None,
    })
    .await;
    let version = plane.version().await;
    let pinned = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/control-plane/go.mod"),
    )
    .unwrap();
    assert!(
        pinned.contains(&format!("k8s.io/kubernetes {version}")),
        "the API server says {version}, not the release go.mod pins"
    );
    plane.namespace("harness").await;
    let _node = plane.node().await;
    let client = plane.client().await;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example/web:1"}]},
            },
        },
    }))
    .unwrap();
    let deployments = Api::<Deployment>::namespaced(client.clone(), "harness");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = deployments.get("web").await.unwrap();
        let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "2 ready replicas: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods = Api::<Pod>::namespaced(client, "harness")
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 2);
    for pod in &pods.items {
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.pod_ip.as_deref().unwrap().starts_with("10.244."));
    }

    // A service account with no role is refused (RBAC is on).
    let token = plane.token_for("harness", "nobody").await;
    let dir = tempfile::tempdir().unwrap();
    let path = plane.kubeconfig_with_token(dir.path(), "harness", "nobody", Some(&token));
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let nobody = kube::Client::try_from(config).unwrap();
    match Api::<Deployment>::namespaced(nobody, "harness")
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("a token without roles listed deployments: {other:?}"),
    }

    let pids = plane.pids();
    assert_eq!(pids.len(), 3);
    drop(plane);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} outlived the harness"
        );
    }
}

#[tokio::test]
async fn istio_crds_are_served_and_stored_as_each_release_does() {
    for release in [IstioRelease::V1_22, IstioRelease::V1_30] {
        let plane = ControlPlane::start(Options {
            controller_manager: false,
            istio: Some(release),
        })
        .await;
        let client = plane.client().await;
        let crds = Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(client);
        let vs = crds
            .get("virtualservices.networking.istio.io")
            .await
            .unwrap();
        let stored: Vec<&str> = vs
            .spec
            .versions
            .iter()
            .filter(|v| v.storage)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(stored, [release.stored_version()], "{release:?}");
        assert!(vs.spec.versions.iter().any(|v| v.name == "v1" && v.served));
    }
}

#[test]
fn kinds_are_named_as_the_api_names_their_resources() {
    for (kind, resource) in [
        ("Service", "services"),
        ("ClusterRole", "clusterroles"),
        ("RoleBinding", "rolebindings"),
        ("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
        ("Ingress", "ingresses"),
        ("Namespace", "namespaces"),
    ] {
        assert_eq!(kube_harness::plural(kind), resource);
    }
}
