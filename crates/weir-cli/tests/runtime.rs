//! The embedded runtime as a user drives it: the real `weir up` process,
//! the real `weir` commands, real `my-app` pods, and curl.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_on_a_fresh_state_dir_answers_v1_nine_times_in_ten() {
    let cluster = Cluster::up(&[]);
    let out = cluster.apply(&examples());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("deployment.apps/my-app-v1 created"),
        "{stdout}"
    );
    cluster
        .wait_for("both deployments ready", Duration::from_secs(20), |c| {
            c.ready("my-app-v1") == 1 && c.ready("my-app-v2") == 1
        })
        .await;
    let answers: Vec<String> = (0..10).map(|_| curl(&cluster.url())).collect();
    let v1 = answers
        .iter()
        .filter(|a| a.starts_with("Host: my-app-v1-") && a.ends_with("Version: v1.0.0\n"))
        .count();
    let v2 = answers
        .iter()
        .filter(|a| a.starts_with("Host: my-app-v2-") && a.ends_with("Version: v2.0.0\n"))
        .count();
    assert_eq!((v1, v2), (9, 1), "{answers:#?}");

    // kubectl's columns.
    let pods = String::from_utf8(cluster.weir(&["get", "pods"]).stdout).unwrap();
    assert!(pods.starts_with("NAME"), "{pods}");
    assert!(
        pods.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["NAME", "READY", "STATUS", "RESTARTS", "AGE"])
    );
    assert_eq!(
        pods.lines()
            .filter(|l| l.contains("1/1") && l.contains("Running"))
            .count(),
        2,
        "{pods}"
    );
    let hpa = String::from_utf8(cluster.weir(&["get", "hpa"]).stdout).unwrap();
    assert!(
        hpa.lines().next().unwrap().split_whitespace().eq([
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]),
        "{hpa}"
    );
    assert!(
        hpa.contains("Deployment/my-app-v1") && hpa.contains("/50%"),
        "{hpa}"
    );

    // The walkthrough's change of split, and its cleanup.
    let out = cluster.weir(&["route", "my-app", "v1=0", "v2=100"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!((0..10).all(|_| curl(&cluster.url()).contains("Version: v2.0.0")));
    let out = cluster.weir(&["delete", "-f", examples().to_str().unwrap()]);
    assert!(out.status.success());
    cluster
        .wait_for("pods gone", Duration::from_secs(40), |c| {
            c.json("pods").is_empty()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_killed_under_load_comes_back_to_the_same_pods_and_loses_only_what_nobody_listened_for()
 {
    let mut cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    cluster.weir(&["route", "my-app", "v1=50", "v2=50"]);
    let old = cluster.pod_pids();
    assert_eq!(old.len(), 2);
    assert_eq!(pods_of(cluster.dir.path()).len(), 2);
    let meta = |c: &Cluster| -> Vec<(String, String, i64)> {
        [c.json("deployments"), c.json("virtualservices")]
            .concat()
            .iter()
            .map(|d| {
                (
                    d["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    d["metadata"]["uid"].as_str().unwrap().to_owned(),
                    d["metadata"]["generation"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let meta_before = meta(&cluster);
    assert_eq!(
        meta_before.iter().map(|m| m.2).collect::<Vec<_>>(),
        [1, 1, 2],
        "two Deployments as created, the VirtualService's route changed once"
    );
    let pods_before = cluster.json("pods");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = cluster.addr();
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || load_until(addr, &stop, 200_000))
    };
    // Under load: kill -9, then a new `weir up` on the same state dir.
    std::thread::sleep(Duration::from_millis(500));
    cluster.kill9();
    assert!(
        old.iter().all(|p| alive(*p)),
        "the pods outlive their runtime"
    );
    cluster.start();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let outcome = load.join().unwrap();
    assert!(outcome.ok > 100, "{outcome:?}");
    assert!(
        outcome.refused > 0,
        "some requests found nothing listening: {outcome:?}"
    );
    assert!(
        outcome.statuses.is_empty(),
        "no request answered with an error: {outcome:?}"
    );
    // Cut, not refused: the request in flight when the runtime died, and
    // one whose connection the kernel completed on the dying listener
    // before it was torn down (the client is sequential, so no more).
    assert!(
        outcome.other <= 2,
        "only requests that met the dying gateway are cut: {outcome:?}"
    );

    assert_eq!(cluster.pod_pids(), old, "the same processes");
    let pods_after = cluster.json("pods");
    for (a, b) in pods_before.iter().zip(&pods_after) {
        for field in [
            "/metadata/name",
            "/status/podIP",
            "/metadata/creationTimestamp",
        ] {
            assert_eq!(a.pointer(field), b.pointer(field), "{field}");
        }
        assert_eq!(b["status"]["containerStatuses"][0]["restartCount"], 0);
    }
    assert_eq!(
        meta(&cluster),
        meta_before,
        "objects keep creationTimestamp, uid and generation"
    );
    let mut running = pods_of(cluster.dir.path());
    running.sort();
    let mut expected = old.clone();
    expected.sort();
    assert_eq!(running, expected, "exactly the adopted pods are running");
    // The route change survived too: 50/50 is exact over every 2 requests.
    let answers: Vec<String> = (0..4).map(|_| curl(&cluster.url())).collect();
    assert_eq!(
        answers.iter().filter(|a| a.contains("v2.0.0")).count(),
        2,
        "{answers:#?}"
    );
    // `weir down` stops them: no orphan outlives both.
    assert!(cluster.weir(&["down"]).status.success());
    assert!(old.iter().all(|p| !alive(*p)), "weir down stops the pods");
    assert!(pods_of(cluster.dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_runtime_gone_longer_than_the_orphan_grace_stop() {
    let mut cluster = Cluster::up(&["--orphan-grace", "2s"]);
    cluster.walkthrough_ready().await;
    let pods = cluster.pod_pids();
    cluster.kill9();
    let killed = Instant::now();
    while pods.iter().any(|p| alive(*p)) {
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "orphaned pods still run after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped_after = killed.elapsed();
    assert!(
        stopped_after >= Duration::from_millis(1900),
        "stopped before the grace ran out: {stopped_after:?}"
    );
    // And what they ran (my-app) is gone with them.
    let log_dir = cluster.dir.path().join("logs");
    let logs: Vec<String> = std::fs::read_dir(&log_dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("no runtime for the orphan grace")),
        "{logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_apply_changes_nothing_and_what_was_serving_keeps_serving() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let dir = tempfile::tempdir().unwrap();
    let istio = std::fs::read_to_string(examples().join("istio.yaml")).unwrap();
    std::fs::write(
        dir.path().join("istio.yaml"),
        istio
            .replace("weight: 90", "weight: 0")
            .replace("weight: 10", "weight: -5"),
    )
    .unwrap();
    let out = cluster.apply(dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("istio.yaml:38:7: error:") && stderr.contains("weight -5 < 0"),
        "{stderr}"
    );

    // An image with no local program: rejected by the runtime, naming file, line and field.
    let app = std::fs::read_to_string(examples().join("app-v2.yaml")).unwrap();
    std::fs::write(
        dir.path().join("istio.yaml"),
        app.replace(
            "containersol/k8s-deployment-strategies",
            "example/unknown:1",
        ),
    )
    .unwrap();
    let out = cluster.apply(dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("istio.yaml:24:9: error: deployment.apps/my-app-v2: spec.template.spec.containers[0].image: no local program for image \"example/unknown:1\""), "{stderr}");

    let answers: Vec<String> = (0..10).map(|_| curl(&cluster.url())).collect();
    assert_eq!(
        answers.iter().filter(|a| a.contains("v1.0.0")).count(),
        9,
        "{answers:#?}"
    );
    assert_eq!(cluster.json("deployments").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_runtime_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(weir_bin())
        .args(["get", "pods", "--state-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the weir runtime"));
}

fn probe_manifest(dir: &Path) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: probed
spec:
  ports:
  - name: http
    port: 80
    targetPort: http
  selector:
    app: probed
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: probed
spec:
  selector:
    matchLabels: {{app: probed}}
  template:
    metadata:
      labels: {{app: probed}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: containersol/k8s-deployment-strategies
        ports:
        - {{name: http, containerPort: 8080}}
        env:
        - {{name: VERSION, value: probed}}
        readinessProbe:
          exec:
            command: [test, -f, {dir}/ready]
          periodSeconds: 1
          failureThreshold: 1
        livenessProbe:
          exec:
            command: [test, -f, {dir}/alive]
          periodSeconds: 1
          failureThreshold: 2
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: probed
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route:
    - destination:
        host: probed
"#,
        dir = dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_gates_traffic_and_liveness_restarts() {
    let cluster = Cluster::up(&["--restart-backoff", "100ms"]);
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("alive"), "").unwrap();
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(
        manifests.path().join("probed.yaml"),
        probe_manifest(files.path()),
    )
    .unwrap();
    std::fs::copy(
        examples().join("weir-images.conf"),
        manifests.path().join("weir-images.conf"),
    )
    .unwrap();
    let out = cluster.apply(manifests.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Not ready until the readiness file exists: no endpoint, 503.
    cluster
        .wait_for("the pod to run", Duration::from_secs(10), |c| {
            c.pod_pids().len() == 1
        })
        .await;
    assert_eq!(curl_status(&cluster.url()), "503");
    std::fs::write(files.path().join("ready"), "").unwrap();
    cluster
        .wait_for("ready", Duration::from_secs(10), |c| c.ready("probed") == 1)
        .await;
    assert_eq!(curl_status(&cluster.url()), "200");
    std::fs::remove_file(files.path().join("ready")).unwrap();
    cluster
        .wait_for("unready", Duration::from_secs(10), |c| {
            c.ready("probed") == 0
        })
        .await;
    assert_eq!(curl_status(&cluster.url()), "503");
    std::fs::write(files.path().join("ready"), "").unwrap();
    cluster
        .wait_for("ready again", Duration::from_secs(10), |c| {
            c.ready("probed") == 1
        })
        .await;
    assert_eq!(curl_status(&cluster.url()), "200");

    // Liveness failing: the container is restarted.
    let restarts = |c: &Cluster| {
        c.json("pods")
            .first()
            .and_then(|p| p["status"]["containerStatuses"][0]["restartCount"].as_i64())
            .unwrap_or(0)
    };
    assert_eq!(
        restarts(&cluster),
        0,
        "{}",
        String::from_utf8_lossy(&cluster.weir(&["get", "pods", "-o", "yaml"]).stdout)
    );
    let before = cluster.pod_pids();
    std::fs::remove_file(files.path().join("alive")).unwrap();
    cluster
        .wait_for("a restart", Duration::from_secs(15), |c| restarts(c) >= 1)
        .await;
    std::fs::write(files.path().join("alive"), "").unwrap();
    cluster
        .wait_for("running again", Duration::from_secs(15), |c| {
            c.ready("probed") == 1
        })
        .await;
    assert_ne!(cluster.pod_pids(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_shows_crash_loop_back_off_and_restarts() {
    let cluster = Cluster::up(&["--restart-backoff", "100ms"]);
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(
        manifests.path().join("crash.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: crash\nspec:\n  selector:\n    matchLabels: {app: crash}\n  template:\n    metadata:\n      labels: {app: crash}\n    spec:\n      containers:\n      - name: crash\n        image: busybox\n        command: [sh, -c, \"echo starting; exit 3\"]\n",
    )
    .unwrap();
    let out = cluster.apply(manifests.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster
        .wait_for(
            "CrashLoopBackOff with restarts",
            Duration::from_secs(15),
            |c| {
                let table = String::from_utf8(c.weir(&["get", "pods"]).stdout).unwrap();
                table.lines().skip(1).any(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.get(2) == Some(&"CrashLoopBackOff")
                        && cols.get(3).and_then(|r| r.parse::<u32>().ok()).unwrap_or(0) >= 2
                })
            },
        )
        .await;
    let pod = cluster.json("pods")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let logs = cluster.weir(&["logs", &pod]);
    assert!(
        String::from_utf8_lossy(&logs.stdout)
            .matches("starting")
            .count()
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_racing_a_stopping_runtime_reports_exactly_what_it_committed() {
    // SIGTERM lands before, during and after the apply reaches the runtime
    // (a debug `weir apply` needs some 40-60 ms to load the manifests here):
    // whichever it was, what the apply reports is what was stored.
    for delay_ms in (0..20u64).map(|i| 20 + 4 * i) {
        let mut cluster = Cluster::up(&[]);
        let mut apply = Command::new(weir_bin())
            .args(["apply", "-f", examples().to_str().unwrap(), "--state-dir"])
            .arg(cluster.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let status = Command::new("kill")
            .args(["-TERM", &cluster.child_pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let applied = apply.wait().unwrap();
        cluster.stopped();
        cluster.start();
        let stored = cluster.json("deployments").len();
        assert_eq!(
            applied.success(),
            stored == 2,
            "after {delay_ms} ms: apply {applied:?}, {stored} deployments stored"
        );
    }
}
