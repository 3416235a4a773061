//! Release after release, as a user runs it: a real `weir up`, the
//! Rollout owning the Deployment my-app (`examples/canary-istio-release`),
//! new releases started only with `weir set env` / `weir set image`, real
//! pods and requests from real sockets the whole time.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{Cluster, examples, load_until};

/// The release example, judged every second on success rate alone (the
/// latency goals need more requests than a test should wait for), its
/// former stable kept 3 s, at most 3 replicas; applied, and returns once
/// the first revision is stable with its 2 pods ready.
async fn release_example(cluster: &Cluster) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let source = examples().join("../canary-istio-release");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("interval: 5s", "interval: 1s")
            .replace("scaleDownDelay: 30s", "scaleDownDelay: 3s")
            .replace("maxReplicas: 10", "maxReplicas: 3")
            .replace("    latency: {percentile: 99, maxMs: 500}\n", "")
            .replace("  traffic: {rate: 50}\n", "");
        std::fs::write(dir.path().join(&name), text).unwrap();
    }
    cluster.apply_ok(dir.path());
    cluster
        .wait_for(
            "the first revision stable and ready",
            Duration::from_secs(60),
            |c| {
                let stable = status(c, "stableRevision");
                !stable.is_empty() && c.ready(&format!("my-app-{stable}")) >= 2
            },
        )
        .await;
    let stable = status(cluster, "stableRevision");
    (dir, stable)
}

/// A field of the Rollout's status, as text ("" when absent).
fn status(cluster: &Cluster, field: &str) -> String {
    let out = cluster.weir(&[
        "get",
        "rollout",
        "my-app",
        "-o",
        &format!("jsonpath={{.status.{field}}}"),
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn weir_ok(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.weir(args);
    assert!(
        out.status.success(),
        "weir {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The revision Deployments running now, `(name, replicas)`.
fn revisions(cluster: &Cluster) -> Vec<(String, i64)> {
    cluster
        .json("deployments")
        .iter()
        .filter(|d| d["metadata"]["annotations"]["weir.dev/workload"] == "my-app")
        .map(|d| {
            (
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                d["spec"]["replicas"].as_i64().unwrap_or(1),
            )
        })
        .collect()
}

/// The revision each DestinationRule subset selects.
fn selected(cluster: &Cluster) -> (String, String) {
    let dr = &cluster.json("destinationrules")[0];
    let label = |i: usize| {
        dr["spec"]["subsets"][i]["labels"]["weir.dev/revision"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    (label(0), label(1))
}

/// Waits (bounded) until a revision other than `old` is the stable, the
/// Rollout never rolled back on the way; that revision.
async fn promoted(cluster: &Cluster, old: &str, within: Duration) -> String {
    cluster
        .wait_for("the canary promoted", within, |c| {
            let phase = status(c, "phase");
            assert!(
                phase != "RolledBack" && phase != "Aborted",
                "{}",
                String::from_utf8_lossy(&c.weir(&["rollout", "status", "my-app"]).stdout)
            );
            let stable = status(c, "stableRevision");
            phase == "Succeeded" && !stable.is_empty() && stable != old
        })
        .await;
    status(cluster, "stableRevision")
}

#[tokio::test(flavor = "multi_thread")]
async fn release_after_release_with_kubectl_edits_only_under_load() {
    let cluster = Cluster::up(&[]);
    let (_dir, v1) = release_example(&cluster).await;
    assert_eq!(selected(&cluster), (v1.clone(), v1.clone()));
    assert_eq!(
        cluster.ready("my-app"),
        0,
        "the workload runs no pods itself"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (addr, flag) = (cluster.addr(), stop.clone());
        std::thread::spawn(move || load_until(addr, &flag, 400_000))
    };

    // v2: good, promoted; the former stable goes after scaleDownDelay.
    weir_ok(
        &cluster,
        &["set", "env", "deployment/my-app", "VERSION=v2.0.0"],
    );
    cluster
        .wait_for("the canary revision", Duration::from_secs(30), |c| {
            !status(c, "canaryRevision").is_empty()
        })
        .await;
    let shown = weir_ok(&cluster, &["rollout", "status", "my-app"]);
    assert!(
        shown.contains(&format!("Revisions: stable {v1} ")) && shown.contains("canary "),
        "{shown}"
    );
    let v2 = promoted(&cluster, &v1, Duration::from_secs(120)).await;
    assert_eq!(selected(&cluster), (v2.clone(), v2.clone()));
    cluster
        .wait_for("v1's revision scaled down", Duration::from_secs(30), |c| {
            revisions(c).iter().all(|(name, _)| !name.ends_with(&v1))
        })
        .await;
    let body = support_get(&cluster);
    assert!(body.contains("v2.0.0"), "{body}");

    // v3: answers half its requests 500: rolled back, scaled to zero, v2
    // keeps serving.
    weir_ok(
        &cluster,
        &[
            "set",
            "env",
            "deployment/my-app",
            "VERSION=v3.0.0",
            "ERROR_PERCENT=50",
        ],
    );
    cluster
        .wait_for("the bad canary rolled back", Duration::from_secs(60), |c| {
            status(c, "phase") == "RolledBack"
        })
        .await;
    let v3 = status(&cluster, "canaryRevision");
    assert!(!v3.is_empty() && v3 != v2);
    assert_eq!(status(&cluster, "stableRevision"), v2);
    cluster
        .wait_for("v3 scaled to zero", Duration::from_secs(10), |c| {
            revisions(c)
                .iter()
                .any(|(name, replicas)| name.ends_with(&v3) && *replicas == 0)
        })
        .await;
    assert_eq!(status(&cluster, "canaryWeight"), "0");

    // v4 in two edits: the image first (a canary starts), then the
    // version: the newest revision replaces it from step 0.
    weir_ok(
        &cluster,
        &[
            "set",
            "image",
            "deployment/my-app",
            "my-app=containersol/k8s-deployment-strategies:v4",
        ],
    );
    cluster
        .wait_for("the image's canary", Duration::from_secs(30), |c| {
            let canary = status(c, "canaryRevision");
            !canary.is_empty() && canary != v3
        })
        .await;
    let image_only = status(&cluster, "canaryRevision");
    weir_ok(
        &cluster,
        &[
            "set",
            "env",
            "deployment/my-app",
            "VERSION=v4.0.0",
            "ERROR_PERCENT=0",
        ],
    );
    let v4 = promoted(&cluster, &v2, Duration::from_secs(120)).await;
    assert_ne!(v4, image_only);
    let history = weir_ok(&cluster, &["rollout", "status", "my-app"]);
    assert!(
        history.contains(&format!("new revision {v4} replaces canary {image_only}")),
        "{history}"
    );
    let body = support_get(&cluster);
    assert!(body.contains("v4.0.0"), "{body}");

    stop.store(true, Ordering::SeqCst);
    let outcome = load.join().unwrap();
    assert!(outcome.ok > 500, "{outcome:?}");
    assert_eq!((outcome.refused, outcome.other), (0, 0), "{outcome:?}");
    let failed: Vec<_> = outcome
        .answered
        .iter()
        .filter(|((code, _), _)| code != "200")
        .collect();
    assert!(
        failed.iter().all(|((_, version), _)| version == "v3.0.0"),
        "only the bad canary's share failed: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_template_back_to_the_stables_aborts_the_canary_at_once() {
    let cluster = Cluster::up(&[]);
    let (_dir, v1) = release_example(&cluster).await;
    weir_ok(
        &cluster,
        &["set", "env", "deployment/my-app", "VERSION=v2.0.0"],
    );
    cluster
        .wait_for("the canary to take traffic", Duration::from_secs(60), |c| {
            status(c, "canaryWeight") == "10"
        })
        .await;
    let v2 = status(&cluster, "canaryRevision");
    weir_ok(
        &cluster,
        &["set", "env", "deployment/my-app", "VERSION=v1.0.0"],
    );
    cluster
        .wait_for("the rollout aborted", Duration::from_secs(30), |c| {
            status(c, "phase") == "Aborted"
        })
        .await;
    assert_eq!(status(&cluster, "canaryWeight"), "0");
    assert_eq!(status(&cluster, "stableRevision"), v1);
    assert!(status(&cluster, "message").contains("stable revision"));
    assert_eq!(selected(&cluster), (v1.clone(), v1.clone()));
    assert!(
        revisions(&cluster)
            .iter()
            .all(|(name, _)| !name.ends_with(&v2)),
        "{:?}",
        revisions(&cluster)
    );
    // A command with no canary to act on says so and exits 1.
    let out = cluster.weir(&["rollout", "promote", "my-app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no canary"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One `GET /` through the gateway; its body.
fn support_get(cluster: &Cluster) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", &cluster.url()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_release_demo_passes_every_check() {
    let out = std::process::Command::new(support::weir_bin())
        .args(["demo", "release"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "v2.0.0 is promoted to stable",
        "v3 is rolled back on its own; v2 stays the stable",
        "no failed request outside the bad canary's share",
        "v4.0.0 is promoted to stable",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(check) && l.contains(" pass ")),
            "{check}: {text}"
        );
    }
    assert!(
        text.contains("success-rate Pass") && text.contains("success-rate Fail"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_rollout_hands_its_workload_back_without_a_failed_request() {
    let cluster = Cluster::up(&[]);
    let (dir, v1) = release_example(&cluster).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (addr, flag) = (cluster.addr(), stop.clone());
        std::thread::spawn(move || load_until(addr, &flag, 400_000))
    };
    weir_ok(
        &cluster,
        &[
            "delete",
            "-f",
            dir.path().join("rollout.yaml").to_str().unwrap(),
        ],
    );
    cluster
        .wait_for("the revisions gone", Duration::from_secs(60), |c| {
            revisions(c).is_empty()
        })
        .await;
    assert!(
        cluster.ready("my-app") >= 2,
        "the Deployment runs its own pods"
    );
    assert_eq!(selected(&cluster), (String::new(), String::new()));
    stop.store(true, Ordering::SeqCst);
    let outcome = load.join().unwrap();
    assert!(outcome.ok > 100, "{outcome:?}");
    assert_eq!(
        (outcome.refused, outcome.other, outcome.statuses.len()),
        (0, 0, 0),
        "every request answered 200 while revision {v1} handed over: {outcome:?}"
    );
}
