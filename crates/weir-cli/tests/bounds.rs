//! Everything bounded: pod logs in size and life, the admin API's bodies,
//! the CLI's waits, and output to a reader that went away.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_rotate_at_their_size_and_go_with_their_pod() {
    let cluster = Cluster::up(&["--pod-log-max-bytes", "4096", "--pod-log-max-files", "3"]);
    cluster.walkthrough_ready().await;
    // `weir logs -f deployment/...` follows v1's log across its rotations.
    let mut follower = KillOnDrop(
        Command::new(weir_bin())
            .args(["logs", "-f", "deployment/my-app-v1", "--state-dir"])
            .arg(cluster.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let followed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        use std::io::BufRead;
        let stdout = follower.0.stdout.take().unwrap();
        let followed = followed.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains(r#""message":"request""#) {
                    followed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    };
    // Each answer is one access-log line: enough for several rotations.
    let mut answered_by_v1 = 0;
    for _ in 0..200 {
        answered_by_v1 += usize::from(curl(&cluster.url()).contains("Version: v1.0.0"));
    }
    let logs = cluster.dir.path().join("logs");
    let files = || -> Vec<(String, u64)> {
        let mut files: Vec<(String, u64)> = std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            // A file rotated away between the listing and its stat is gone.
            .filter_map(|e| {
                Some((
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().ok()?.len(),
                ))
            })
            .filter(|(name, _)| name.contains("my-app-v1") && !name.ends_with(".exit"))
            .collect();
        files.sort();
        files
    };
    cluster
        .wait_for("v1's log rotated twice", Duration::from_secs(10), |_| {
            files().len() == 3
        })
        .await;
    let v1 = files();
    assert!(v1.iter().all(|(_, size)| *size <= 4096), "{v1:?}");
    assert!(
        v1[0].0.ends_with(".log") && v1[1].0.ends_with(".log.1") && v1[2].0.ends_with(".log.2"),
        "{v1:?}"
    );
    // `weir logs` reads the current file.
    let pod = v1[0]
        .0
        .trim_start_matches("default_")
        .trim_end_matches(".log")
        .to_owned();
    let out = cluster.weir(&["logs", &pod]);
    assert!(out.status.success());
    assert!(!out.stdout.is_empty());
    // The follower saw every request v1 answered, across the rotations.
    cluster
        .wait_for(
            "the follower to see every v1 request",
            Duration::from_secs(10),
            |_| followed.load(std::sync::atomic::Ordering::SeqCst) >= answered_by_v1,
        )
        .await;
    assert_eq!(
        followed.load(std::sync::atomic::Ordering::SeqCst),
        answered_by_v1
    );
    // --tail: the last lines only.
    let out = cluster.weir(&["logs", "deployment/my-app-v1", "--tail", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let out = cluster.weir(&["logs", "service/my-app"]);
    assert_eq!(out.status.code(), Some(2));
    // Lines carry their time: --timestamps shows it, --since filters by it.
    let lines = |args: &[&str]| {
        let out = cluster.weir(&[&["logs", "deployment/my-app-v1"], args].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stamped = lines(&["--timestamps"]);
    assert!(!stamped.is_empty());
    for line in stamped.lines() {
        let ts = line.split(' ').next().unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{line}");
    }
    assert_eq!(
        lines(&["--since", "1h"]).lines().count(),
        stamped.lines().count()
    );
    assert_eq!(
        lines(&["--since", "1ms"]),
        "",
        "nothing logged in the last millisecond"
    );

    // The Deployment deleted: its pod's logs go with it.
    let out = cluster.weir(&[
        "delete",
        "-f",
        examples().join("app-v1.yaml").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster
        .wait_for("v1's logs removed", Duration::from_secs(40), |_| {
            files().is_empty()
        })
        .await;
    // The follower ends with its pod, as `kubectl logs -f` does.
    cluster
        .wait_for(
            "the follower to end with its pod",
            Duration::from_secs(10),
            |_| follower.0.try_wait().is_ok_and(|s| s.is_some()),
        )
        .await;
    reader.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_that_never_answers_is_given_up_on_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts, then says nothing: a stopped (SIGSTOP) or hung runtime.
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("admin.sock")).unwrap();
    let held = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(5));
        drop(stream);
    });
    let started = Instant::now();
    let out = Command::new(weir_bin())
        .args(["get", "pods", "--request-timeout", "1s", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no answer within 1s"), "{stderr}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    held.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_an_oversized_body_and_keeps_serving() {
    let cluster = Cluster::up(&[]);
    let dir = tempfile::tempdir().unwrap();
    // 20 files of 1 MiB each: every one within an object's limit, the
    // request over the admin API's 16 MiB.
    for i in 0..20 {
        std::fs::write(
            dir.path().join(format!("svc-{i}.yaml")),
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\n  labels:\n    filler: x\nspec:\n  ports: [{{port: 80}}]\n# {}\n",
                "x".repeat(1024 * 1024)
            ),
        )
        .unwrap();
    }
    let out = cluster.apply(dir.path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("request body over 16 MiB"), "{stderr}");
    // Another client declaring such a body is answered 413 before it sends it.
    let socket = cluster.dir.path().join("admin.sock");
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"POST /apply HTTP/1.1\r\nHost: weir\r\nContent-Length: 20971520\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Nothing applied, and the runtime answers.
    let out = cluster.weir(&["get", "services"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_went_away_ends_weir_quietly() {
    let cluster = Cluster::up(&[]);
    assert!(cluster.apply(&examples()).status.success());
    // `weir get pods | head -0`: the pipe's reader is gone before weir writes.
    let mut child = Command::new(weir_bin())
        .args(["get", "deployments", "--state-dir"])
        .arg(cluster.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

/// A child process of the test, killed if the test ends before it did.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_up_raises_its_open_files_limit_to_the_hard_one() {
    // A thousand Services are a thousand listening sockets: a 1,024 soft
    // limit would run out. Started under a soft limit of 256, weir up
    // runs with the hard one.
    let dir = tempfile::tempdir().unwrap();
    let mut up = KillOnDrop(
        Command::new("bash")
            .args([
                "-c",
                "ulimit -Sn 256 && exec \"$0\" up --state-dir \"$1\" --port-map 80=0 --no-metrics",
            ])
            .arg(weir_bin())
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = dir.path().join("admin.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "weir up did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", up.0.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft = hard: {line}");
    assert_ne!(numbers[0], "256", "{line}");
    let out = Command::new(weir_bin())
        .args(["down", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let _ = up.0.wait();
}
