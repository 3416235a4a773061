//! The `weir` binary against a real kube-apiserver (Kubernetes' own, built
//! by `.ci/test-tools`; `kube-harness` starts it on loopback with Istio's
//! CRDs, the controller manager and a node stand-in, since no kubelet can
//! run here): the walkthrough's apply, `get`, `rollout status` of a
//! Deployment, `verify --replicas`, a re-apply, `patch` and `delete`, as a
//! user with a kubeconfig would run them; and `weir rollout` on a cluster,
//! which refuses Rollouts clearly rather than driving the local runtime.

mod support;

use std::process::{Output, Stdio};
use std::time::Duration;

use kube_harness::{ControlPlane, IstioRelease, Options};
use support::{examples, weir_bin};

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

    async fn weir_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = tokio::process::Command::new(weir_bin());
        command
            .args(args)
            .env_remove("WEIR_KUBECONFIG")
            .env_remove("WEIR_CONTEXT")
            .env("WEIR_STATE_DIR", "/nonexistent/weir-state")
            .stdin(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        tokio::time::timeout(Duration::from_secs(90), command.output())
            .await
            .expect("weir finished within 90 s")
            .expect("weir ran")
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
    let out = c
        .weir(&["scale", "deployment", "my-app-v2", "--replicas", "3"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = c
        .weir(&["verify", "--replicas", "my-app-v2>=3", "--within", "60s"])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = c
        .weir(&["scale", "deployment", "my-app-v2", "--replicas", "1"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = c
        .weir(&[
            "rollout",
            "status",
            "deployment/my-app-v2",
            "--timeout",
            "60s",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

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

    let out = c
        .weir(&[
            "patch",
            "virtualservice",
            "my-app",
            "-p",
            r#"{"metadata":{"labels":{"team":"web"}}}"#,
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = c.weir(&["delete", "-f", &examples]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
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
