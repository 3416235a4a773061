//! Which cluster `weir` talks to (`--kubeconfig`/`--context` over
//! `WEIR_KUBECONFIG`, nothing meaning the local runtime), and the exit
//! codes of its failures there (a refusal, a server that hangs, one that
//! is gone, an object that does not exist), against a real kube-apiserver
//! that records each request in its audit log (`kube-harness`).

mod support;

use std::process::Output;
use std::time::Duration;

use kube_harness::{ControlPlane, IstioRelease, Options};

async fn plane() -> (ControlPlane, tempfile::TempDir) {
    let plane = ControlPlane::start(Options {
        controller_manager: false,
        istio: Some(IstioRelease::V1_30),
    })
    .await;
    plane.namespace("default").await;
    (plane, tempfile::tempdir().unwrap())
}

async fn weir(args: &[&str], env: &[(&str, &str)]) -> Output {
    support::weir_against_cluster(args, env, Duration::from_secs(60)).await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A kubeconfig whose server is gone: nothing listens at its port.
fn gone(dir: &std::path::Path) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let path = dir.join("gone.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:{port}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: u\ncurrent-context: gone\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_beat_the_environment_and_nothing_means_the_local_runtime() {
    let (plane, dir) = plane().await;
    let chosen = plane
        .recorded_kubeconfig(dir.path(), "default")
        .display()
        .to_string();
    // Were it used, the environment's cluster would fail with exit 3.
    let ignored = gone(dir.path());
    let vss = "/apis/networking.istio.io/v1/namespaces/default/virtualservices";
    let lists = |plane: &ControlPlane| {
        plane
            .recorded()
            .iter()
            .filter(|r| r.path == vss && r.verb == "list")
            .count()
    };

    let out = weir(
        &["get", "vs", "--kubeconfig", &chosen],
        &[("WEIR_KUBECONFIG", &ignored)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(lists(&plane), 1);

    let out = weir(&["get", "vs"], &[("WEIR_KUBECONFIG", &chosen)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        lists(&plane),
        2,
        "the environment variable chooses the cluster"
    );

    let out = weir(
        &["get", "vs", "--kubeconfig", &chosen, "--context", "staging"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "context \"staging\" is not in the kubeconfig (it has: recorded)"
    );
    assert_eq!(lists(&plane), 2, "nothing asked");

    let out = weir(&["get", "vs"], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "without a cluster the local runtime is asked: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("is `weir up` running"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_have_the_documented_exit_codes() {
    let (plane, dir) = plane().await;
    let admin = plane
        .kubeconfig(dir.path(), "default")
        .display()
        .to_string();

    // A user the server knows and RBAC grants nothing.
    let token = plane.token_for("default", "dev").await;
    let dev = plane
        .kubeconfig_with_token(dir.path(), "default", "dev", Some(&token))
        .display()
        .to_string();
    let out = weir(&["get", "pods", "--kubeconfig", &dev], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "forbidden: the Kubernetes API at {}/ (context \"dev\"): pods is forbidden: User \"system:serviceaccount:default:dev\" cannot list resource \"pods\"",
            plane.url()
        )),
        "{stderr}"
    );

    let out = weir(&["describe", "vs", "nope", "--kubeconfig", &admin], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // A server that accepts connections and completes no handshake (a
    // request on a connection already open times out instead, exit 1:
    // weir-kube's conversation tests).
    let paused = plane.pause_api_server();
    let out = weir(
        &[
            "get",
            "deploy",
            "--request-timeout",
            "500ms",
            "--kubeconfig",
            &admin,
        ],
        &[],
    )
    .await;
    drop(paused);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with(&format!(
            "cannot reach the Kubernetes API at {}/",
            plane.url()
        )),
        "{}",
        text(&out.stderr)
    );

    let out = weir(&["get", "pods", "--kubeconfig", &gone(dir.path())], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("cannot reach the Kubernetes API at https://127.0.0.1:"),
        "{}",
        text(&out.stderr)
    );
}
