//! NodePort and LoadBalancer Services on the embedded runtime, as
//! kube-proxy serves them: real `weir up`, real pods, curl.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::{Cluster, curl, examples};

/// The pod that answered (`Host: POD, Version: V` is my-app's answer).
fn answered_by(body: &str) -> String {
    body.split(',').next().unwrap_or_default().trim().to_owned()
}

/// Each of `n` requests on a connection of its own: who answered, counted.
fn answers(url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        *seen.entry(answered_by(&curl(url))).or_default() += 1;
    }
    seen
}

/// One strategy of the seed repository staged as its README applies it,
/// one file at a time: a dir holding its image map and `app.yaml`.
struct Staged {
    dir: tempfile::TempDir,
    strategy: PathBuf,
}

impl Staged {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let strategy = examples().join("../strategies").join(name);
        let images = "weir-images.conf";
        std::fs::copy(strategy.join(images), dir.path().join(images)).unwrap();
        Self { dir, strategy }
    }

    /// `file` of the strategy becomes `app.yaml` and is applied.
    fn apply(&self, cluster: &Cluster, file: &str) {
        std::fs::copy(self.strategy.join(file), self.dir.path().join("app.yaml")).unwrap();
        cluster.apply_ok(self.dir.path());
    }
}

/// `weir rollout status DEPLOYMENT --timeout T`; asserts it rolled out;
/// what it printed.
fn rolled_out(cluster: &Cluster, deployment: &str, timeout: &str) -> String {
    let out = cluster.weir(&["rollout", "status", deployment, "--timeout", timeout]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `weir service my-app --url`.
fn service_url(cluster: &Cluster) -> String {
    String::from_utf8_lossy(&cluster.weir(&["service", "my-app", "--url"]).stdout)
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nodeport_service_balances_connections_follows_its_selector_and_keeps_affinity() {
    let cluster = Cluster::up(&[]);
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "app-v1.yaml",
        "app-v2.yaml",
        "hpa.yaml",
        "istio.yaml",
        "weir-images.conf",
    ] {
        std::fs::copy(examples().join(f), dir.path().join(f)).unwrap();
    }
    cluster.apply_ok(dir.path());
    cluster.both_versions_ready().await;

    // The URL, as `minikube service --url` prints it, and the node port in
    // `get svc`'s PORT(S), as kubectl shows it.
    let out = cluster.weir(&["service", "my-app", "--url"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let node_port = url.rsplit(':').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0."), "{url}");
    let out = cluster.weir(&["get", "svc"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.contains(&format!("80:{node_port}/TCP")), "{table}");
    assert!(table.contains("NodePort"), "{table}");
    // Its cluster IP, served on this machine too (as from inside a cluster).
    let cluster_ip = cluster.json("services")[0]["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        cluster_ip.starts_with("127.0.") && table.contains(&cluster_ip),
        "{table}"
    );
    assert!(curl(&format!("http://{cluster_ip}:80/")).contains("Version: v"));

    // L4 round robin over the selector's ready pods (both versions): one
    // connection per curl, so exactly half each.
    let seen = answers(&url, 20);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|&n| n == 10), "{seen:?}");

    // A keep-alive connection stays on the pod it reached.
    let out = Command::new("curl")
        .args(["-s", "-m", "5", &url, &url, &url, &url])
        .output()
        .unwrap();
    let bodies = String::from_utf8_lossy(&out.stdout).into_owned();
    let pods: Vec<String> = bodies.lines().map(answered_by).collect();
    assert_eq!(pods.len(), 4, "{bodies}");
    assert!(pods.iter().all(|p| *p == pods[0]), "{pods:?}");

    // Blue/green: a selector change switches every new connection at once.
    let service = dir.path().join("app-v1.yaml");
    cluster.edit_and_apply(
        &service,
        "  selector:\n    app: my-app\n---",
        "  selector:\n    app: my-app\n    version: v2.0.0\n---",
    );
    let v2_pod = cluster.pod("my-app-v2").0;
    let seen = answers(&url, 10);
    assert_eq!(
        seen,
        BTreeMap::from([(format!("Host: {v2_pod}"), 10)]),
        "all to v2 at once"
    );

    // sessionAffinity: ClientIP — one client, one pod.
    cluster.edit_and_apply(
        &service,
        "  selector:\n    app: my-app\n    version: v2.0.0\n---",
        "  selector:\n    app: my-app\n  sessionAffinity: ClientIP\n---",
    );
    let seen = answers(&url, 10);
    assert_eq!(seen.len(), 1, "{seen:?}");

    // The node address and port are the same after the runtime restarts.
    let mut cluster = cluster;
    cluster.kill9();
    cluster.start();
    let out = cluster.weir(&["service", "my-app", "--url"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), url);
    cluster
        .wait_for("the Service answers again", Duration::from_secs(30), |_| {
            !answered_by(&curl(&url)).is_empty()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_recreate_strategy_rolls_out_and_rollout_status_waits_as_kubectl() {
    let cluster = Cluster::up(&[]);
    let staged = Staged::new("recreate");
    staged.apply(&cluster, "app-v1.yaml");
    let stdout = rolled_out(&cluster, "deployment/my-app", "60s");
    assert!(
        stdout.ends_with("deployment \"my-app\" successfully rolled out\n"),
        "{stdout}"
    );
    let url = service_url(&cluster);
    assert!(curl(&url).contains("Version: v1.0.0"));

    // Version 2 over the same Deployment (the README's `kubectl apply -f
    // app-v2.yaml`): Recreate stops every v1 pod before any v2 starts, and
    // the readiness probe (period 5 s) makes the rollout outlast a 1 s wait.
    staged.apply(&cluster, "app-v2.yaml");
    let out = cluster.weir(&["rollout", "status", "deploy/my-app", "--timeout", "1s"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: timed out waiting for the condition"
    );
    let stdout = rolled_out(&cluster, "deployment/my-app", "90s");
    assert!(
        stdout.contains("Waiting for deployment \"my-app\" rollout to finish"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("deployment \"my-app\" successfully rolled out\n"),
        "{stdout}"
    );
    // Rolled out: every connection reaches v2.
    for _ in 0..6 {
        assert!(curl(&url).contains("Version: v2.0.0"));
    }

    let out = cluster.weir(&["rollout", "status", "deployment/nope"]);
    assert_eq!(out.status.code(), Some(2));

    // kubectl scale: down to one pod, which keeps serving.
    let out = cluster.weir(&["scale", "deployment", "my-app", "--replicas", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "deployment.apps/my-app scaled\n"
    );
    cluster
        .wait_for("one pod left", Duration::from_secs(30), |c| {
            c.json("pods").len() == 1
        })
        .await;
    assert!(curl(&url).contains("Version: v2.0.0"));
    let out = cluster.weir(&["scale", "svc/my-app", "--replicas", "1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn blue_green_switches_every_new_connection_with_weir_patch() {
    // The seed repository's blue/green (single service), as its README runs
    // it: v1 behind the NodePort Service, v2 beside it, the selector patched.
    let cluster = Cluster::up(&[]);
    let strategy = examples().join("../strategies/blue-green/single-service");
    let images = strategy.join("weir-images.conf");
    let apply = |file: &str| {
        let out = cluster.weir(&[
            "apply",
            "-f",
            strategy.join(file).to_str().unwrap(),
            "-f",
            images.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    apply("app-v1.yaml");
    rolled_out(&cluster, "deployment/my-app-v1", "60s");
    let url = service_url(&cluster);
    apply("app-v2.yaml");
    rolled_out(&cluster, "deployment/my-app-v2", "60s");
    // Green is up, blue still takes every connection.
    for _ in 0..6 {
        assert!(curl(&url).contains("Version: v1.0.0"));
    }
    let switch = r#"{"spec":{"selector":{"version":"v2.0.0"}}}"#;
    let out = cluster.weir(&["patch", "service", "my-app", "-p", switch]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "service/my-app patched\n"
    );
    // Zero mixed responses after the switch.
    for _ in 0..10 {
        assert!(curl(&url).contains("Version: v2.0.0"));
    }
    let out = cluster.weir(&["patch", "svc/my-app", "--type", "merge", "-p", switch]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "service/my-app patched (no change)\n"
    );
    let out = cluster.weir(&["patch", "svc/my-app", "--type", "json", "-p", switch]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cluster.weir(&["patch", "svc/my-app", "--type", "apply", "-p", switch]);
    assert_eq!(out.status.code(), Some(2));

    // The README's look and cleanup: `get all -l`, `delete all -l`.
    let out = cluster.weir(&["get", "all", "-l", "app=my-app"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    for row in [
        "pod/my-app-v1-",
        "pod/my-app-v2-",
        "service/my-app ",
        "deployment.apps/my-app-v1 ",
        "deployment.apps/my-app-v2 ",
    ] {
        assert!(listed.contains(row), "{row} in {listed}");
    }
    assert_eq!(
        listed.matches("\n\nNAME").count(),
        2,
        "three sections: {listed}"
    );
    let out = cluster.weir(&["delete", "all", "-l", "app=my-app"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deleted = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        deleted,
        "service/my-app deleted\ndeployment.apps/my-app-v1 deleted\ndeployment.apps/my-app-v2 deleted\n"
    );
    cluster
        .wait_for("the pods are gone", Duration::from_secs(30), |c| {
            c.json("pods").is_empty()
        })
        .await;
    let out = cluster.weir(&["get", "all", "-l", "app=my-app"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "No resources found in default namespace."
    );
    let out = cluster.weir(&["delete", "pods", "-l", "app=my-app"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cluster.weir(&["delete", "all"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ramped_update_through_the_service_fails_no_request() {
    // The seed repository's ramped strategy, as its README watches it: a new
    // connection per request (`while sleep 0.1; do curl ...; done`) through
    // the NodePort Service while v2 replaces v1 one pod at a time
    // (maxSurge 1, maxUnavailable 0). Endpoints follow readiness and a pod
    // leaves them before it is stopped, so no request fails.
    let cluster = Cluster::up(&[]);
    let staged = Staged::new("ramped");
    staged.apply(&cluster, "app-v1.yaml");
    rolled_out(&cluster, "deployment/my-app", "300s");
    let url = service_url(&cluster);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = {
        let (stop, url) = (stop.clone(), url.clone());
        std::thread::spawn(move || {
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            // Bounded: at most 5,000 requests, and until told to stop.
            for _ in 0..5000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let body = curl(&url);
                let version = body
                    .split("Version: ")
                    .nth(1)
                    .map_or("failed".to_owned(), |v| v.trim().to_owned());
                *seen.entry(version).or_default() += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    staged.apply(&cluster, "app-v2.yaml");
    let out = cluster.weir(&[
        "rollout",
        "status",
        "deployment/my-app",
        "--timeout",
        "300s",
    ]);
    // Stopped before asserting, so a failed rollout does not leave the
    // requests running.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watching.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(seen.get("failed"), None, "no request failed: {seen:?}");
    assert!(seen.get("v1.0.0").is_some_and(|n| *n > 0), "{seen:?}");
    assert!(
        seen.get("v2.0.0").is_some_and(|n| *n > 0),
        "both versions answered during the update: {seen:?}"
    );
    for _ in 0..5 {
        assert!(curl(&url).contains("Version: v2.0.0"));
    }
}

/// `weir top --once -o json` over `interval` while `curl` loops on `url`
/// (bounded): the snapshot.
fn top_under_traffic(cluster: &Cluster, url: &str) -> serde_json::Value {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, url) = (stop.clone(), url.to_owned());
        std::thread::spawn(move || {
            for _ in 0..2000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                curl(&url);
            }
        })
    };
    let out = cluster.weir(&["top", "--once", "-o", "json", "--interval", "2s"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The request rate `top` shows for a version (0 when it lists none).
fn rps(top: &serde_json::Value, version: &str) -> f64 {
    top["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["version"] == version)
        .and_then(|v| v["rps"].as_f64())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn top_shows_each_versions_rate_from_the_pods_behind_a_service() {
    // Through a Service the gateway sees connections, not requests: `top`
    // reads the pods' own http_requests_total, as the repository's Grafana
    // dashboard does, and follows the blue/green switch.
    let cluster = Cluster::up(&[]);
    let staged = Staged::new("blue-green/single-service");
    staged.apply(&cluster, "app-v1.yaml");
    rolled_out(&cluster, "deployment/my-app-v1", "60s");
    staged.apply(&cluster, "app-v2.yaml");
    rolled_out(&cluster, "deployment/my-app-v2", "60s");
    let url = service_url(&cluster);
    let top = top_under_traffic(&cluster, &url);
    assert_eq!(top["source"], "pods", "{top}");
    assert!(rps(&top, "v1.0.0") > 1.0, "{top}");
    assert_eq!(rps(&top, "v2.0.0"), 0.0, "{top}");
    let switch = r#"{"spec":{"selector":{"version":"v2.0.0"}}}"#;
    assert!(
        cluster
            .weir(&["patch", "service", "my-app", "-p", switch])
            .status
            .success()
    );
    let top = top_under_traffic(&cluster, &url);
    assert_eq!(top["source"], "pods", "{top}");
    assert!(rps(&top, "v2.0.0") > 1.0, "{top}");
    assert_eq!(rps(&top, "v1.0.0"), 0.0, "{top}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_pause_resume_and_undo_a_deployment_as_kubectl_does() {
    // The ramped README's controls, on the recreate strategy's Deployment
    // (each change rolls out in seconds).
    let cluster = Cluster::up(&[]);
    let staged = Staged::new("recreate");
    staged.apply(&cluster, "app-v1.yaml");
    rolled_out(&cluster, "deployment/my-app", "60s");
    let url = service_url(&cluster);
    assert!(curl(&url).contains("Version: v1.0.0"));
    let said = |args: &[&str]| {
        let out = cluster.weir(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = said(&["rollout", "undo", "deployment/my-app"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.trim(),
        "error: no rollout history found for deployment \"my-app\""
    );
    assert_eq!(
        said(&["rollout", "pause", "deployment/my-app"]).1,
        "deployment.apps/my-app paused\n"
    );
    let (code, _, err) = said(&["rollout", "pause", "deploy/my-app"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("already paused"), "{err}");
    // A new template while paused: nothing rolls.
    let v2 = r#"{"spec":{"template":{"spec":{"containers":[{"name":"my-app","env":[{"name":"VERSION","value":"v2.0.0"}]}]}}}}"#;
    assert_eq!(
        said(&["patch", "deployment", "my-app", "-p", v2]).1,
        "deployment.apps/my-app patched\n"
    );
    let (code, out, _) = said(&["rollout", "status", "deployment/my-app", "--timeout", "3s"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("0 out of 3 new replicas have been updated"),
        "{out}"
    );
    for _ in 0..5 {
        assert!(curl(&url).contains("Version: v1.0.0"));
    }
    assert_eq!(
        said(&["rollout", "resume", "deployment/my-app"]).1,
        "deployment.apps/my-app resumed\n"
    );
    rolled_out(&cluster, "deployment/my-app", "60s");
    assert!(curl(&url).contains("Version: v2.0.0"));
    // Undo goes back one template; undo again comes back, as kubectl's.
    assert_eq!(
        said(&["rollout", "undo", "deployment/my-app"]).1,
        "deployment.apps/my-app rolled back\n"
    );
    rolled_out(&cluster, "deployment/my-app", "60s");
    assert!(curl(&url).contains("Version: v1.0.0"));
    said(&["rollout", "undo", "deployment/my-app"]);
    rolled_out(&cluster, "deployment/my-app", "60s");
    assert!(curl(&url).contains("Version: v2.0.0"));
    assert_eq!(said(&["rollout", "undo", "my-app"]).0, Some(2));
    assert_eq!(said(&["rollout", "undo", "deployment/nope"]).0, Some(2));
}
