//! The `weir` binary against a real kube-apiserver (Kubernetes' own, built
//! by `.ci/test-tools`; `kube-harness` starts it on loopback with Istio's
//! CRDs, the controller manager and a node stand-in, since no kubelet can
//! run here): the walkthrough's apply, `get`, `rollout status` of a
//! Deployment, `verify --replicas`, a re-apply, `patch` and `delete`, as a
//! user with a kubeconfig would run them; and `weir rollout` on a cluster,
//! which refuses Rollouts clearly rather than driving the local runtime.

mod support;

use std::process::Output;
use std::time::Duration;

use kube_harness::{ControlPlane, IstioRelease, Options};
use support::examples;

struct Cluster {
    plane: ControlPlane,
    kubeconfig: String,
    _node: kube_harness::NodeStandIn,
    _dir: tempfile::TempDir,
}

async fn cluster(ns: &str) -> Cluster {
    let plane = ControlPlane::start(Options {
        controller_manager: true,
        istio: Some(IstioRelease::V1_30),
    })
    .await;
    plane.namespace(ns).await;
    let node = plane.node().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = plane.kubeconfig(dir.path(), ns).display().to_string();
    Cluster {
        plane,
        kubeconfig,
        _node: node,
        _dir: dir,
    }
}

impl Cluster {
    async fn weir(&self, args: &[&str]) -> Output {
        self.weir_env(args, &[("WEIR_KUBECONFIG", &self.kubeconfig)])
            .await
    }

    /// `weir args` as the admin, which must succeed; its standard output.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.weir(args).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "weir {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    async fn weir_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        support::weir_against_cluster(args, env, Duration::from_secs(90)).await
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_walkthrough_applies_rolls_out_verifies_and_re_applies_unchanged() {
    let c = cluster("walk").await;
    let examples = examples().display().to_string();
    let out = c.weir(&["apply", "-f", &examples]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let applied = text(&out.stdout);
    assert!(
        applied.contains("virtualservice.networking.istio.io/my-app created"),
        "{applied}"
    );

    for deployment in ["my-app-v1", "my-app-v2"] {
        let out = c
            .weir(&[
                "rollout",
                "status",
                &format!("deployment/{deployment}"),
                "-n",
                "walk",
                "--timeout",
                "60s",
            ])
            .await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("successfully rolled out"),
            "{}",
            text(&out.stdout)
        );
    }
    // Scaled out, the ReplicaSet's new pods become ready through the node
    // stand-in, and `verify --replicas` sees them.
    c.ok(&["scale", "deployment", "my-app-v2", "--replicas", "3"])
        .await;
    c.ok(&["verify", "--replicas", "my-app-v2>=3", "--within", "60s"])
        .await;
    c.ok(&["scale", "deployment", "my-app-v2", "--replicas", "1"])
        .await;
    c.ok(&[
        "rollout",
        "status",
        "deployment/my-app-v2",
        "--timeout",
        "60s",
    ])
    .await;

    let out = c.weir(&["get", "pods"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pods = text(&out.stdout);
    assert_eq!(
        pods.lines().filter(|l| l.contains("Running")).count(),
        2,
        "{pods}"
    );

    let out = c.weir(&["apply", "-f", &examples]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let again = text(&out.stdout);
    assert!(
        again.lines().all(|l| l.ends_with("unchanged")),
        "a re-apply of the walkthrough: {again}"
    );

    c.ok(&[
        "patch",
        "virtualservice",
        "my-app",
        "-p",
        r#"{"metadata":{"labels":{"team":"web"}}}"#,
    ])
    .await;

    c.ok(&["delete", "-f", &examples]).await;
    drop(c.plane);
}

#[tokio::test(flavor = "multi_thread")]
async fn weir_rollout_on_a_cluster_refuses_rollouts_clearly() {
    let c = cluster("ro").await;
    for env in [
        vec![("WEIR_KUBECONFIG", c.kubeconfig.as_str())],
        vec![
            ("KUBECONFIG", c.kubeconfig.as_str()),
            ("WEIR_CONTEXT", "weir-test"),
        ],
    ] {
        for verb in [
            &["rollout", "status", "my-app"][..],
            &["rollout", "promote", "my-app"],
        ] {
            let out = c.weir_env(verb, &env).await;
            assert_eq!(
                out.status.code(),
                Some(1),
                "{verb:?} {env:?}: {}",
                text(&out.stderr)
            );
            let err = text(&out.stderr);
            assert!(
                err.contains("Rollouts run on the embedded runtime"),
                "{verb:?}: {err}"
            );
            assert!(
                err.contains(c.plane.url()),
                "{verb:?}: names the cluster: {err}"
            );
        }
    }
}

/// `deploy/rbac/weir-user.yaml` bound to service account `app/NAME`, its
/// gateway role in `istio-system`; returns a kubeconfig with its token.
async fn user_bound_to(
    c: &Cluster,
    account: &str,
    user_role: &str,
    dir: &std::path::Path,
) -> String {
    c.plane
        .apply_yaml(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {account}-user, namespace: app}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {user_role}}}
subjects: [{{kind: ServiceAccount, name: {account}, namespace: app}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {account}-discovery}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: weir-discovery}}
subjects: [{{kind: ServiceAccount, name: {account}, namespace: app}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {account}-gateway, namespace: istio-system}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: weir-gateway}}
subjects: [{{kind: ServiceAccount, name: {account}, namespace: app}}]
"
        ))
        .await;
    let token = c.plane.token_for("app", account).await;
    c.plane
        .kubeconfig_with_token(dir, "app", account, Some(&token))
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_rbac_is_enough_for_every_command_and_a_missing_verb_is_named() {
    let c = cluster("app").await;
    let rbac = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rbac/weir-user.yaml"),
    )
    .unwrap();
    c.plane.apply_yaml(&rbac).await;
    c.plane
        .install_gateway_service("istio-system", "istio-ingressgateway")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = user_bound_to(&c, "weir", "weir-user", dir.path()).await;
    let user_env = [("WEIR_KUBECONFIG", kubeconfig.as_str())];
    let examples = examples().display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["apply", "-f", &examples],
        vec![
            "rollout",
            "status",
            "deployment/my-app-v1",
            "--timeout",
            "60s",
        ],
        vec!["get", "deployments"],
        vec!["get", "pods"],
        vec!["get", "services"],
        vec!["get", "hpa"],
        vec!["get", "virtualservices"],
        vec!["get", "destinationrules"],
        vec!["get", "gateways"],
        vec!["describe", "deployment", "my-app-v1"],
        vec!["scale", "deployment", "my-app-v2", "--replicas", "2"],
        vec!["verify", "--replicas", "my-app-v2>=2", "--within", "60s"],
        vec![
            "patch",
            "virtualservice",
            "my-app",
            "-p",
            r#"{"metadata":{"labels":{"team":"web"}}}"#,
        ],
        vec!["apply", "-f", &examples],
    ];
    for args in commands {
        let out = c.weir_env(&args, &user_env).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} as a user with the shipped roles: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    // doctor finds things missing here (metrics-server, injection), but
    // nothing it may not read.
    let out = c.weir_env(&["doctor"], &user_env).await;
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!report.to_lowercase().contains("forbidden"), "{report}");
    assert!(
        report.contains("istio-system/istio-ingressgateway"),
        "{report}"
    );

    // The same role without `patch` on deployments/scale: weir scale says
    // which verb on which resource it lacks.
    let without: String = rbac
        .split("\n---\n")
        .next()
        .unwrap()
        .replace("name: weir-user\n", "name: weir-user-no-scale\n")
        .replace(
            "resources: [\"deployments/scale\"]\n  verbs: [\"get\", \"patch\"]",
            "resources: [\"deployments/scale\"]\n  verbs: [\"get\"]",
        );
    assert!(
        without.contains("verbs: [\"get\"]"),
        "the role was edited: {without}"
    );
    c.plane.apply_yaml(&without).await;
    let limited = user_bound_to(&c, "limited", "weir-user-no-scale", dir.path()).await;
    let out = c
        .weir_env(
            &["scale", "deployment", "my-app-v2", "--replicas", "3"],
            &[("WEIR_KUBECONFIG", &limited)],
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot patch resource \"deployments/scale\""),
        "{err}"
    );

    let out = c.weir_env(&["delete", "-f", &examples], &user_env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

// The same bodies as the mock-apiserver tests they replace, against the
// real API server.

#[tokio::test(flavor = "multi_thread")]
async fn apply_the_seed_then_delete_it() {
    let c = cluster("default").await;
    let dir = examples().display().to_string();
    let out = c.weir(&["apply", "-f", &dir]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 8, "{stdout}");
    assert!(
        text(&out.stderr).contains("--rewrite-scale-target-api"),
        "the seed's extensions/v1beta1 gets the warning"
    );
    let hpa = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/my-app-v2";
    let stored = c.plane.object(hpa).await.unwrap();
    assert_eq!(
        stored["spec"]["scaleTargetRef"]["apiVersion"],
        "extensions/v1beta1"
    );

    let out = c
        .weir(&["apply", "-f", &dir, "--rewrite-scale-target-api"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("horizontalpodautoscaler.autoscaling/my-app-v2 configured"),
        "{stdout}"
    );
    assert!(stdout.contains("service/my-app unchanged"), "{stdout}");
    let stored = c.plane.object(hpa).await.unwrap();
    assert_eq!(stored["spec"]["scaleTargetRef"]["apiVersion"], "apps/v1");

    let deleted = c.ok(&["delete", "-f", &dir]).await;
    assert_eq!(
        deleted.lines().filter(|l| l.ends_with("deleted")).count(),
        8,
        "{deleted}"
    );
    assert!(c.plane.object(hpa).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_extensions_v1beta1_ingress_goes_to_a_cluster_as_v1() {
    // No supported cluster serves extensions/v1beta1 (removed in 1.22): the
    // Ingress is sent as the networking.k8s.io/v1 it was read into.
    let c = cluster("default").await;
    let file = examples().join("../strategies/canary/nginx-ingress/ingress-v2-canary.yaml");
    let out = c.weir(&["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ingress.networking.k8s.io/my-app-canary created\n"
    );
    assert!(
        text(&out.stderr).contains("extensions/v1beta1 Ingress was removed in Kubernetes 1.22"),
        "{}",
        text(&out.stderr)
    );
    let stored = c
        .plane
        .object("/apis/networking.k8s.io/v1/namespaces/default/ingresses/my-app-canary")
        .await
        .expect("stored at networking.k8s.io/v1");
    let path = &stored["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(path["pathType"], "ImplementationSpecific");
    assert_eq!(path["backend"]["service"]["name"], "my-app-v2");
    assert_eq!(path["backend"]["service"]["port"]["number"], 80);
    assert_eq!(
        stored["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
        "10"
    );
    let out = c.weir(&["get", "ingress"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(
        listed.starts_with("NAME            CLASS    HOSTS"),
        "{listed}"
    );
    assert!(
        listed.contains("my-app-canary   <none>   my-app.com"),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_into_another_namespace_with_n() {
    let c = cluster("default").await;
    let file = examples().join("istio.yaml").display().to_string();
    // A namespace that does not exist: the API server refuses to create in
    // it, and weir says so (exit 2) instead of "not found".
    let out = c.weir(&["apply", "-f", &file, "-n", "canary"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("namespace \"canary\" does not exist"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("kubectl create namespace canary"),
        "{}",
        text(&out.stderr)
    );
    c.plane.namespace("canary").await;
    c.ok(&["apply", "-f", &file, "-n", "canary"]).await;
    assert!(
        c.plane
            .object("/apis/networking.istio.io/v1/namespaces/canary/virtualservices/my-app")
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn get_hpa_of_an_autoscaling_v2_hpa_has_the_local_columns() {
    let c = cluster("default").await;
    let hpa = examples()
        .join("../../deploy/kubernetes/hpa.yaml")
        .display()
        .to_string();
    c.ok(&["apply", "-f", &hpa]).await;
    // What the HPA controller would report (it needs metrics-server, which
    // cannot run here), written at autoscaling/v2 as the controller does.
    let status = serde_json::json!({"status": {
        "currentReplicas": 2, "desiredReplicas": 2,
        "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 61, "averageValue": "61m"}}}],
    }});
    c.plane
        .merge_patch(
            "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/my-app-v2/status",
            &status,
        )
        .await;
    let out = c.weir(&["get", "hpa"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let header: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]
    );
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("my-app-v2"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..7],
        [
            "my-app-v2",
            "Deployment/my-app-v2",
            "cpu:",
            "61%/50%",
            "1",
            "10",
            "2"
        ],
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_is_not_told_what_only_the_embedded_runtime_needs() {
    let c = cluster("default").await;
    // The walkthrough's manifests without weir-images.conf: locally, their
    // image has no program to run.
    let dir = tempfile::tempdir().unwrap();
    for file in ["app-v1.yaml", "app-v2.yaml", "hpa.yaml", "istio.yaml"] {
        std::fs::copy(examples().join(file), dir.path().join(file)).unwrap();
    }
    let path = dir.path().display().to_string();
    let local = c.weir_env(&["validate", "-f", &path], &[]).await;
    assert!(
        text(&local.stderr).contains("no local program for image"),
        "{}",
        text(&local.stderr)
    );

    let out = c.weir(&["apply", "-f", &path]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("no local program"), "{stderr}");
    assert!(!stderr.contains("embedded runtime ignores"), "{stderr}");
    assert!(stderr.contains("--rewrite-scale-target-api"), "{stderr}");
}
