//! Chaos, bounded: pods killed and stopped under load, a crowd of idle
//! connections, and apply/delete churn — each measured, each with a number
//! asserted, not just "still up". (The runtime killed under load is in
//! `runtime.rs`; connection-level attacks on the gateway are in the
//! gateway's `tests/chaos.rs`.)

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::*;
use tokio::time::Instant;

/// Sends the signal `sig` (by name, as kill(1) takes it) to process group `pgid`.
fn signal_group(sig: &str, pgid: u32) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_pod_of_a_version_at_100_percent_killed_is_back_within_seconds() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    cluster.route(&["v1=100", "v2=0"]);
    let (_, v1) = cluster.pod("my-app-v1");

    // Timestamped outcomes, one request at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let addr = cluster.addr();
    let probe = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut failures: Vec<Instant> = Vec::new();
            let mut ok = 0usize;
            let flag = AtomicBool::new(false);
            while !stop.load(Ordering::SeqCst) {
                flag.store(false, Ordering::SeqCst);
                let one = load_until(addr, &flag, 1);
                if one.ok == 1 {
                    ok += 1;
                } else {
                    failures.push(Instant::now());
                }
            }
            (ok, failures)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    signal_group("KILL", v1);
    cluster
        .wait_for("v1 restarted and ready", Duration::from_secs(20), |c| {
            c.json("pods").iter().any(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("my-app-v1")
                    && p["status"]["containerStatuses"][0]["restartCount"] == 1
                    && p["status"]["containerStatuses"][0]["ready"] == true
            })
        })
        .await;
    // Traffic flows again.
    let back = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (ok, failures) = probe.join().unwrap();
    let window = failures
        .last()
        .map_or(Duration::ZERO, |last| last.duration_since(killed));
    eprintln!(
        "503 window after kill -9 of the only v1 pod: {window:?} ({} failed, {ok} ok)",
        failures.len()
    );
    assert!(!failures.is_empty(), "the kill was seen");
    assert!(
        failures.iter().all(|t| *t <= back),
        "no failure once the pod was back"
    );
    // The first crash restarts at once; what remains is the program's start
    // and its readiness probe's period (5 s in the walkthrough).
    assert!(window < Duration::from_secs(8), "{window:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_pod_is_taken_out_by_readiness_and_the_other_serves_everything() {
    let cluster = Cluster::up(&[]);
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "app-v1.yaml",
        "app-v2.yaml",
        "istio.yaml",
        "weir-images.conf",
    ] {
        let text = std::fs::read_to_string(examples().join(file)).unwrap();
        let text = text.replace("  replicas: 1", "  replicas: 2");
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    assert!(cluster.apply(dir.path()).status.success());
    cluster
        .wait_for("two ready v1 pods", Duration::from_secs(30), |c| {
            c.ready("my-app-v1") == 2
        })
        .await;
    cluster.route(&["v1=100", "v2=0"]);
    let (frozen_name, frozen) = cluster.pod("my-app-v1");
    signal_group("STOP", frozen);
    let stopped = Instant::now();
    cluster
        .wait_for("the stopped pod unready", Duration::from_secs(30), |c| {
            c.json("pods").iter().any(|p| {
                p["metadata"]["name"] == frozen_name.as_str()
                    && p["status"]["containerStatuses"][0]["ready"] == false
            })
        })
        .await;
    let out_after = stopped.elapsed();
    // Readiness: period 5 s, timeout 1 s, 3 failures.
    assert!(out_after < Duration::from_secs(25), "{out_after:?}");
    let flag = AtomicBool::new(false);
    let addr = cluster.addr();
    let outcome = tokio::task::spawn_blocking(move || load_until(addr, &flag, 200))
        .await
        .unwrap();
    signal_group("CONT", frozen);
    assert_eq!(outcome.ok, 200, "{outcome:?}");
}

/// Waits (bounded) until the runtime has no pod and no pod process.
async fn settle(c: &Cluster) {
    c.wait_for("no pods left", Duration::from_secs(60), |c| {
        c.json("pods").is_empty() && pods_of(c.dir.path()).is_empty()
    })
    .await;
}

/// Open file descriptors, threads and resident memory (KiB) of `pid`.
fn footprint(pid: u32) -> (usize, usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    (fds, field("Threads:") as usize, field("VmRSS:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_are_closed_and_leave_nothing_behind() {
    let cluster = Cluster::up(&["--first-bytes-timeout", "2s"]);
    assert!(cluster.apply(&examples()).status.success());
    cluster
        .wait_for("v1 ready", Duration::from_secs(20), |c| {
            c.ready("my-app-v1") == 1
        })
        .await;
    let pid = cluster.child_pid();
    let (fds_before, _, _) = footprint(pid);
    let addr = cluster.addr();
    let opened = Instant::now();
    let idle: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    // Served meanwhile.
    assert!(curl(&cluster.url()).contains("Version: v"));
    // Each is closed by the gateway once its first-bytes deadline passes
    // (those beyond the listen backlog are accepted as room frees up).
    let deadline = opened + Duration::from_secs(40);
    let closed = tokio::task::spawn_blocking(move || {
        let mut closed = 0;
        for mut s in idle {
            let left = deadline.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut buf = [0u8; 1];
            if matches!(std::io::Read::read(&mut s, &mut buf), Ok(0)) {
                closed += 1;
            }
        }
        closed
    })
    .await
    .unwrap();
    assert_eq!(closed, 1000, "closed by the gateway within 40 s");
    assert!(
        opened.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        opened.elapsed()
    );
    // Every descriptor is back.
    cluster
        .wait_for(
            "the gateway's descriptors back",
            Duration::from_secs(5),
            |_| footprint(pid).0 <= fds_before + 2,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_apply_delete_cycles_leave_descriptors_threads_memory_and_files_flat() {
    let cluster = Cluster::up(&[]);
    let pid = cluster.child_pid();
    let files = |c: &Cluster| -> usize {
        std::fs::read_dir(c.dir.path().join("logs"))
            .unwrap()
            .count()
    };
    let disk = |c: &Cluster| -> u64 {
        std::fs::read_dir(c.dir.path())
            .unwrap()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    };
    let db = |c: &Cluster| -> u64 {
        std::fs::metadata(c.dir.path().join("state.db"))
            .unwrap()
            .len()
    };
    let cycle = |c: &Cluster| {
        assert!(c.apply(&examples()).status.success());
        let out = c.weir(&["delete", "-f", examples().to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Warm up: the first cycles size the allocator and the database — long
    // enough for the write-ahead log to have been checkpointed into the
    // database at least once (every 1 MiB), or its size says nothing.
    for _ in 0..25 {
        cycle(&cluster);
    }
    settle(&cluster).await;
    let (fds0, threads0, rss0) = footprint(pid);
    let (files0, disk0, db0) = (files(&cluster), disk(&cluster), db(&cluster));
    for _ in 0..50 {
        cycle(&cluster);
    }
    settle(&cluster).await;
    let (fds1, threads1, rss1) = footprint(pid);
    let (files1, disk1, db1) = (files(&cluster), disk(&cluster), db(&cluster));
    eprintln!(
        "50 cycles: fds {fds0}->{fds1}, threads {threads0}->{threads1}, RSS {rss0}->{rss1} KiB, log files {files0}->{files1}, state bytes {disk0}->{disk1}"
    );
    assert!(fds1 <= fds0 + 2, "fds {fds0} -> {fds1}");
    assert!(threads1 <= threads0 + 2, "threads {threads0} -> {threads1}");
    assert!(rss1 <= rss0 + 8 * 1024, "RSS {rss0} -> {rss1} KiB");
    assert_eq!(files1, files0, "log files");
    // The database stays its size; its write-ahead log is checkpointed and
    // cut back every MiB, so the whole state dir stays within a few MiB.
    assert!(db1 <= db0 + 64 * 1024, "state.db {db0} -> {db1} bytes");
    assert!(
        disk1 <= 3 * 1024 * 1024,
        "state dir {disk0} -> {disk1} bytes"
    );
}
