//! Ingresses on the embedded runtime's ingress controller, with
//! ingress-nginx's canary annotations: the seed repository's nginx-ingress
//! canary and multi-service blue/green on their unmodified manifests, real
//! `weir up`, real pods, curl.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Cluster, examples};

fn strategy(name: &str) -> PathBuf {
    examples().join("../strategies").join(name)
}

/// `weir apply -f FILE... -f weir-images.conf` from a strategy's dir;
/// asserts success.
fn apply(cluster: &Cluster, dir: &Path, files: &[&str]) {
    let mut args = vec!["apply".to_owned()];
    for f in files.iter().chain(&["weir-images.conf"]) {
        args.extend(["-f".to_owned(), dir.join(f).display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cluster.weir(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rolled_out(cluster: &Cluster, deployment: &str) {
    ok(cluster.weir(&["rollout", "status", deployment, "--timeout", "60s"]));
}

/// The ingress controller's URL, from the Ingress's status as `weir get`
/// shows it.
fn ingress_url(cluster: &Cluster, ingress: &str) -> String {
    let field = |path: &str| {
        ok(cluster.weir(&[
            "get",
            "ingress",
            ingress,
            "-o",
            &format!("jsonpath={{.status.loadBalancer.ingress[0].{path}}}"),
        ]))
    };
    format!("http://{}:{}/", field("ip"), field("ports[0].port"))
}

/// The version that answered a request for `host` with extra headers.
fn version(url: &str, host: &str, headers: &[&str]) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "5", "-H", &format!("Host: {host}")]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let body = String::from_utf8_lossy(&cmd.arg(url).output().unwrap().stdout).into_owned();
    body.rsplit("Version: ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nginx_canary_splits_exactly_and_header_beats_weight() {
    let cluster = Cluster::up(&[]);
    let dir = strategy("canary/nginx-ingress");
    apply(&cluster, &dir, &["app-v1.yaml", "ingress-v1.yaml"]);
    rolled_out(&cluster, "deployment/my-app-v1");
    let listed = ok(cluster.weir(&["get", "ingress"]));
    assert!(
        listed.starts_with("NAME     CLASS    HOSTS        ADDRESS"),
        "{listed}"
    );
    assert!(
        listed.contains("my-app   <none>   my-app.com   127."),
        "{listed}"
    );
    let url = ingress_url(&cluster, "my-app");
    assert_eq!(version(&url, "my-app.com", &[]), "v1.0.0");
    // No rule for another host: ingress-nginx's default backend answers 404.
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: other.com",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");

    apply(&cluster, &dir, &["app-v2.yaml"]);
    rolled_out(&cluster, "deployment/my-app-v2");
    apply(&cluster, &dir, &["ingress-v2-canary.yaml"]);
    // canary-weight 10: exactly one request in every ten, not one on average.
    let seen: Vec<String> = (0..100).map(|_| version(&url, "my-app.com", &[])).collect();
    for window in seen.windows(10) {
        let v2 = window.iter().filter(|v| *v == "v2.0.0").count();
        assert_eq!(v2, 1, "{seen:?}");
    }
    assert!(seen.iter().all(|v| v == "v1.0.0" || v == "v2.0.0"));

    // Header, then cookie, then weight: add canary-by-header and -cookie.
    let annotate = r#"{"metadata":{"annotations":{"nginx.ingress.kubernetes.io/canary-by-header":"X-Canary","nginx.ingress.kubernetes.io/canary-by-cookie":"canary"}}}"#;
    ok(cluster.weir(&[
        "patch",
        "ingress",
        "my-app-canary",
        "--type",
        "merge",
        "-p",
        annotate,
    ]));
    for _ in 0..10 {
        assert_eq!(version(&url, "my-app.com", &["X-Canary: always"]), "v2.0.0");
        assert_eq!(version(&url, "my-app.com", &["X-Canary: never"]), "v1.0.0");
        assert_eq!(
            version(
                &url,
                "my-app.com",
                &["X-Canary: never", "Cookie: canary=always"]
            ),
            "v1.0.0"
        );
        assert_eq!(
            version(&url, "my-app.com", &["Cookie: canary=always"]),
            "v2.0.0"
        );
        assert_eq!(
            version(
                &url,
                "my-app.com",
                &["X-Canary: maybe", "Cookie: canary=never"]
            ),
            "v1.0.0"
        );
    }

    // Done: the canary Ingress goes, the main one points at v2.
    ok(cluster.weir(&[
        "delete",
        "-f",
        dir.join("ingress-v2-canary.yaml").to_str().unwrap(),
    ]));
    for _ in 0..10 {
        assert_eq!(version(&url, "my-app.com", &[]), "v1.0.0");
    }
    apply(&cluster, &dir, &["ingress-v2.yaml"]);
    for _ in 0..10 {
        assert_eq!(version(&url, "my-app.com", &[]), "v2.0.0");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn multiple_services_switch_together_on_one_ingress() {
    let cluster = Cluster::up(&[]);
    let dir = strategy("blue-green/multiple-services");
    apply(
        &cluster,
        &dir,
        &["app-a-v1.yaml", "app-b-v1.yaml", "ingress-v1.yaml"],
    );
    rolled_out(&cluster, "deployment/my-app-a-v1");
    rolled_out(&cluster, "deployment/my-app-b-v1");
    let url = ingress_url(&cluster, "my-app");
    let listed = ok(cluster.weir(&["get", "ing"]));
    assert!(listed.contains("a.domain.com,b.domain.com"), "{listed}");
    for host in ["a.domain.com", "b.domain.com"] {
        assert_eq!(version(&url, host, &[]), "v1.0.0");
    }
    apply(&cluster, &dir, &["app-a-v2.yaml", "app-b-v2.yaml"]);
    rolled_out(&cluster, "deployment/my-app-a-v2");
    rolled_out(&cluster, "deployment/my-app-b-v2");
    for host in ["a.domain.com", "b.domain.com"] {
        assert_eq!(version(&url, host, &[]), "v1.0.0");
    }
    apply(&cluster, &dir, &["ingress-v2.yaml"]);
    // Both services switched at once: no request after the apply sees v1.
    for _ in 0..10 {
        for host in ["a.domain.com", "b.domain.com"] {
            assert_eq!(version(&url, host, &[]), "v2.0.0");
        }
    }
    // And back, as the README's rollback.
    apply(&cluster, &dir, &["ingress-v1.yaml"]);
    for host in ["a.domain.com", "b.domain.com"] {
        assert_eq!(version(&url, host, &[]), "v1.0.0");
    }
}
