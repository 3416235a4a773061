//! Scaling on the embedded runtime: scale-down and rolling updates under
//! load lose no request; the walkthrough's v2 grows under load and shrinks
//! after its stabilization window.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::*;
use tokio::time::Instant;

/// Keeps `connections` clients sending GETs until stopped (bounded to 120 s).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, connections: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks = (0..connections)
            .map(|_| {
                let (url, stop, ok, failed) =
                    (url.clone(), stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let client = hyper_util::client::legacy::Client::builder(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .build_http::<http_body_util::Empty<bytes::Bytes>>();
                    let deadline = Instant::now() + Duration::from_secs(120);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match client.get(url.parse().unwrap()).await {
                            Ok(r) if r.status() == 200 => {
                                let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// The walkthrough's files in a temp dir, edited by `edit(file, text)`.
fn walkthrough_copy(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "app-v1.yaml",
        "app-v2.yaml",
        "istio.yaml",
        "weir-images.conf",
    ] {
        let text = std::fs::read_to_string(examples().join(file)).unwrap();
        std::fs::write(dir.path().join(file), edit(file, text)).unwrap();
    }
    dir
}

/// The walkthrough with v2 burning 10 ms of CPU per request and an
/// autoscaling/v2 HPA on it (1–4 replicas, 50 %) whose scale-down waits
/// `window_secs`.
fn cpu_bound_v2_autoscaled(window_secs: u32) -> tempfile::TempDir {
    let dir = walkthrough_copy(|file, text| {
        match file {
        "app-v2.yaml" => text.replace(
            "        - name: VERSION\n          value: v2.0.0\n",
            "        - name: VERSION\n          value: v2.0.0\n        - name: CPU_BURN\n          value: 10ms\n",
        ),
        _ => text,
    }
    });
    std::fs::write(
        dir.path().join("hpa.yaml"),
        format!("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: my-app-v2\nspec:\n  minReplicas: 1\n  maxReplicas: 4\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: my-app-v2\n  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Utilization\n        averageUtilization: 50\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: {window_secs}\n"),
    )
    .unwrap();
    dir
}

fn replicas_of(c: &Cluster, deployment: &str) -> usize {
    c.json("pods")
        .iter()
        .filter(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("{deployment}-"))
        })
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_and_rolling_update_under_load_lose_no_request() {
    let cluster = Cluster::up(&[]);
    let dir = walkthrough_copy(|file, text| match file {
        "app-v1.yaml" => text.replace("  replicas: 1", "  replicas: 3"),
        _ => text,
    });
    assert!(cluster.apply(dir.path()).status.success());
    cluster
        .wait_for("3 ready v1 pods", Duration::from_secs(30), |c| {
            c.ready("my-app-v1") == 3 && c.ready("my-app-v2") == 1
        })
        .await;

    let load = Load::start(cluster.url(), 4);
    // Scale down 3 → 1 while requests flow.
    cluster.edit_and_apply(
        &dir.path().join("app-v1.yaml"),
        "  replicas: 3",
        "  replicas: 1",
    );
    cluster
        .wait_for("one v1 pod left", Duration::from_secs(40), |c| {
            c.json("pods").len() == 2
        })
        .await;
    // Rolling update of the template while requests flow.
    cluster.edit_and_apply(
        &dir.path().join("app-v1.yaml"),
        "value: v1.0.0",
        "value: v1.0.1",
    );
    cluster
        .wait_for("the new template serving", Duration::from_secs(40), |c| {
            c.json("pods").len() == 2
                && c.ready("my-app-v1") == 1
                && curl(&c.url()).contains("v1.0.1")
        })
        .await;
    let (ok, failed) = load.finish().await;
    assert!(ok > 100, "the load ran: {ok}");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthroughs_v2_scales_up_under_load_and_back_down_after_its_window() {
    let cluster = Cluster::up(&["--hpa-sync-period", "1s", "--metrics-window", "2s"]);
    let dir = cpu_bound_v2_autoscaled(5);
    let out = cluster.apply(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster
        .wait_for("v2 ready", Duration::from_secs(30), |c| {
            c.ready("my-app-v2") == 1
        })
        .await;
    cluster.route(&["v1=0", "v2=100"]);
    assert_eq!(replicas_of(&cluster, "my-app-v2"), 1);

    let load = Load::start(cluster.url(), 2);
    cluster
        .wait_for("v2 to scale up under load", Duration::from_secs(60), |c| {
            replicas_of(c, "my-app-v2") >= 2
        })
        .await;
    let hpa = String::from_utf8(cluster.weir(&["get", "hpa"]).stdout).unwrap();
    assert!(
        hpa.lines()
            .any(|l| l.starts_with("my-app-v2") && l.contains("cpu: ") && !l.contains("<unknown>")),
        "{hpa}"
    );
    let (ok, failed) = load.finish().await;
    assert!(ok > 0 && failed == 0, "ok {ok}, failed {failed}");
    let stopped = Instant::now();
    cluster
        .wait_for("v2 to scale back down", Duration::from_secs(60), |c| {
            replicas_of(c, "my-app-v2") == 1
        })
        .await;
    assert!(
        stopped.elapsed() >= Duration::from_secs(4),
        "shrank before the 5 s stabilization window: {:?}",
        stopped.elapsed()
    );
    // v1 got none of the load: it never scaled.
    assert_eq!(replicas_of(&cluster, "my-app-v1"), 1);
    // What happened is in the events `describe` shows, as kubectl's.
    let describe = |args: &[&str]| {
        let out = cluster.weir(&[&["describe"], args].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let hpa = describe(&["hpa", "my-app-v2"]);
    assert!(
        hpa.contains("Events:")
            && hpa.contains("SuccessfulRescale")
            && hpa.contains("New size: 1; reason: All metrics below target"),
        "{hpa}"
    );
    let deployment = describe(&["deploy", "my-app-v2"]);
    assert!(
        deployment.contains("ScalingReplicaSet")
            && deployment.contains("Scaled up replica set my-app-v2-")
            && deployment.contains("Scaled down replica set my-app-v2-"),
        "{deployment}"
    );
    let pod = cluster
        .json("pods")
        .iter()
        .find_map(|p| {
            p["metadata"]["name"]
                .as_str()
                .filter(|n| n.starts_with("my-app-v1-"))
                .map(str::to_owned)
        })
        .unwrap();
    let pod = describe(&["pod", &pod]);
    for reason in ["Scheduled", "Started"] {
        assert!(
            pod.lines()
                .any(|l| l.contains("Normal") && l.contains(reason)),
            "{reason}: {pod}"
        );
    }
    assert!(
        pod.contains("default-scheduler") && pod.contains("kubelet"),
        "{pod}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runtime_keeps_the_replicas_its_autoscaler_had_within_the_window() {
    let mut cluster = Cluster::up(&["--hpa-sync-period", "1s", "--metrics-window", "2s"]);
    let dir = cpu_bound_v2_autoscaled(60);
    assert!(cluster.apply(dir.path()).status.success());
    cluster
        .wait_for("v2 ready", Duration::from_secs(30), |c| {
            c.ready("my-app-v2") == 1
        })
        .await;
    cluster.route(&["v1=0", "v2=100"]);
    let load = Load::start(cluster.url(), 2);
    cluster
        .wait_for("v2 to scale up under load", Duration::from_secs(60), |c| {
            replicas_of(c, "my-app-v2") >= 2
        })
        .await;
    let (ok, _) = load.finish().await;
    assert!(ok > 0);
    let scaled = replicas_of(&cluster, "my-app-v2");
    // No load any more: a fresh autoscaler would scale down at its first
    // sync. Kubernetes' records the current scale as a recommendation when
    // it first sees an HPA, so nothing shrinks within the 60 s window.
    cluster.kill9();
    cluster.start();
    let restarted = Instant::now();
    let mut observed = 0;
    while restarted.elapsed() < Duration::from_secs(8) {
        let now = replicas_of(&cluster, "my-app-v2");
        assert_eq!(
            now,
            scaled,
            "replicas changed {:?} after the restart",
            restarted.elapsed()
        );
        observed += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(observed > 10);
    let hpa = cluster.json("hpa");
    let status = &hpa[0]["status"];
    assert_eq!(status["currentCPUUtilizationPercentage"], 0, "{status}");
    assert_eq!(status["desiredReplicas"], scaled as u64, "{status}");
}
