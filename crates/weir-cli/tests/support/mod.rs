//! Test support: a real `weir up` on a fresh state dir, the real `weir`
//! commands, curl, and process inspection.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

pub fn weir_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weir")
}

/// Runs `weir` as a user pointed at a cluster would: without the
/// cluster-choosing variables of the test's own environment (only those in
/// `env`), with a state dir that does not exist (so nothing can fall back
/// to a local runtime), given `limit` to finish in.
pub async fn weir_against_cluster(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
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
    tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("weir {args:?} finished within {limit:?}"))
        .expect("weir ran")
}

/// A real my-app on loopback answering `Version: VERSION`, as an ingress
/// gateway's stand-in where no Istio data plane can run; stopped when
/// dropped.
pub struct MyApp {
    child: tokio::process::Child,
    /// Where it serves.
    pub port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts [`MyApp`] and returns once it accepts connections.
pub async fn my_app(version: &str) -> MyApp {
    let program = Path::new(weir_bin()).with_file_name("my-app");
    let port = free_port();
    let child = tokio::process::Command::new(program)
        .args([
            "--listen-address",
            &format!("127.0.0.1:{port}"),
            "--probe-address",
            &format!("127.0.0.1:{}", free_port()),
            "--metrics-address",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env("VERSION", version)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("my-app starts (build the workspace first)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "my-app did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    MyApp { child, port }
}

impl Drop for MyApp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/canary-istio")
}

/// A `weir up` on a fresh state dir and a free gateway port.
pub struct Cluster {
    child: Option<Child>,
    /// The state dir.
    pub dir: tempfile::TempDir,
    port: u16,
    extra: Vec<String>,
    /// A program `weir up` is started through (e.g. `prlimit ...`).
    wrapper: Vec<String>,
}

impl Cluster {
    pub fn up(extra: &[&str]) -> Cluster {
        Self::up_under(&[], extra)
    }

    /// As [`Cluster::up`], `weir up` started through `wrapper` (which
    /// execs it, as `prlimit` does, so the pid stays `weir up`'s).
    pub fn up_under(wrapper: &[&str], extra: &[&str]) -> Cluster {
        Self::up_in(tempfile::tempdir().unwrap(), wrapper, extra)
    }

    /// As [`Cluster::up`] run as the unprivileged user `uid` (the caller
    /// being root): its state dir is that user's, `weir up` is started
    /// through `setpriv`.
    pub fn up_as(uid: u32, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
        let (reuid, regid) = (format!("--reuid={uid}"), format!("--regid={uid}"));
        Self::up_in(
            dir,
            &["setpriv", &reuid, &regid, "--clear-groups", "--"],
            extra,
        )
    }

    fn up_in(dir: tempfile::TempDir, wrapper: &[&str], extra: &[&str]) -> Cluster {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cluster = Cluster {
            child: None,
            dir,
            port,
            // Pods of a test that ends with its runtime killed stop soon.
            extra: ["--orphan-grace", "15s"]
                .iter()
                .filter(|_| !extra.contains(&"--orphan-grace"))
                .chain(extra)
                .map(|s| s.to_string())
                .collect(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
        };
        cluster.start();
        cluster
    }

    pub fn start(&mut self) {
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(weir_bin());
                c
            }
            None => Command::new(weir_bin()),
        };
        let child = command
            .args([
                "up",
                "--state-dir",
                self.dir.path().to_str().unwrap(),
                "--port-map",
                &format!("80={}", self.port),
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let socket = self.dir.path().join("admin.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(socket.exists() && self.weir(&["get", "pods"]).status.success()) {
            assert!(Instant::now() < deadline, "weir up did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn weir(&self, args: &[&str]) -> Output {
        Command::new(weir_bin())
            .args(args)
            .args(["--state-dir", self.dir.path().to_str().unwrap()])
            .output()
            .unwrap()
    }

    pub fn apply(&self, path: &Path) -> Output {
        self.weir(&["apply", "-f", path.to_str().unwrap()])
    }

    /// Applies `path`; asserts success.
    pub fn apply_ok(&self, path: &Path) {
        let out = self.apply(path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits (bounded) until both versions of the walkthrough have a ready pod.
    pub async fn both_versions_ready(&self) {
        self.wait_for("both deployments ready", Duration::from_secs(30), |c| {
            c.ready("my-app-v1") == 1 && c.ready("my-app-v2") == 1
        })
        .await;
    }

    /// Replaces `from` with `to` in `file` and applies the file; asserts success.
    pub fn edit_and_apply(&self, file: &Path, from: &str, to: &str) {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.contains(from), "{from:?} not in {}", file.display());
        std::fs::write(file, text.replace(from, to)).unwrap();
        let out = self.apply(file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn json(&self, kind: &str) -> Vec<Value> {
        let out = self.weir(&["get", kind, "-o", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// The pid of the `weir up` this cluster runs.
    pub fn child_pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Polls (bounded) until `check` holds.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Cluster) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Applies the walkthrough's manifests and waits (bounded) until both
    /// versions have a ready pod.
    pub async fn walkthrough_ready(&self) {
        self.apply_ok(&examples());
        self.both_versions_ready().await;
    }

    /// The name and supervisor pid of the first pod whose name starts with `prefix`.
    pub fn pod(&self, prefix: &str) -> (String, u32) {
        self.json("pods")
            .iter()
            .find(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .map(|p| {
                (
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    p["status"]["containerStatuses"][0]["pid"]
                        .as_u64()
                        .unwrap_or_default() as u32,
                )
            })
            .unwrap_or_else(|| panic!("no pod {prefix}*"))
    }

    /// `weir route my-app` with these weights; asserts success.
    pub fn route(&self, weights: &[&str]) {
        let out = self.weir(&[&["route", "my-app"][..], weights].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn ready(&self, deployment: &str) -> i64 {
        self.json("deployments")
            .iter()
            .find(|d| d["metadata"]["name"] == deployment)
            .and_then(|d| d["status"]["readyReplicas"].as_i64())
            .unwrap_or(0)
    }

    pub fn pod_pids(&self) -> Vec<u32> {
        self.json("pods")
            .iter()
            .filter_map(|p| p["status"]["containerStatuses"][0]["pid"].as_u64())
            .map(|p| p as u32)
            .collect()
    }

    /// Waits for a `weir up` that was told to stop to exit.
    pub fn stopped(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.weir(&["down"]);
            self.kill9();
        }
    }
}

pub fn curl(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn curl_status(url: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "5",
            url,
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The pod supervisors (by PID) of the runtime of `dir`: `weir-pod-exec DIR ...`.
pub fn pods_of(dir: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
                args.len() > 1
                    && args[0].ends_with(b"/weir-pod-exec")
                    && args[1] == dir.as_os_str().as_encoded_bytes()
            })
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// Sequential requests to `url`'s host and port (HTTP/1.1, one connection
/// each) until `stop`, at most `limit`; what became of them.
pub fn load_until(
    addr: std::net::SocketAddr,
    stop: &std::sync::atomic::AtomicBool,
    limit: usize,
) -> LoadOutcome {
    load_until_within(addr, stop, limit, Duration::from_secs(5))
}

/// As [`load_until`], each request given up after `patience` without an
/// answer (counted in `other`).
pub fn load_until_within(
    addr: std::net::SocketAddr,
    stop: &std::sync::atomic::AtomicBool,
    limit: usize,
    patience: Duration,
) -> LoadOutcome {
    use std::io::{Read, Write};
    let mut outcome = LoadOutcome::default();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && outcome.total() < limit {
        let mut stream = match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                outcome.refused += 1;
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => {
                outcome.other += 1;
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(patience));
        let mut answer = Vec::new();
        let sent = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let read = sent.and_then(|()| stream.read_to_end(&mut answer));
        let text = String::from_utf8_lossy(&answer);
        if let (Ok(_), Some(code)) = (&read, text.split(' ').nth(1)) {
            let version = text
                .split("Version: ")
                .nth(1)
                .map_or("", |v| v.trim())
                .to_owned();
            *outcome
                .answered
                .entry((code.to_owned(), version))
                .or_default() += 1;
        }
        match (read, text.split(' ').nth(1)) {
            (Ok(_), Some("200")) => {
                outcome.ok += 1;
                if text.contains("v2.0.0") {
                    outcome.v2 += 1;
                }
            }
            (Ok(_), Some(code)) => *outcome.statuses.entry(code.to_owned()).or_default() += 1,
            _ => outcome.other += 1,
        }
    }
    outcome
}

/// What became of the requests of [`load_until`].
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// Answered 200.
    pub ok: usize,
    /// Of which by v2.
    pub v2: usize,
    /// Connection refused: nothing listened.
    pub refused: usize,
    /// Answered with another status.
    pub statuses: std::collections::BTreeMap<String, usize>,
    /// Reset, timed out, cut short.
    pub other: usize,
    /// Answers by status code and the version that gave them (`Version:`
    /// in my-app's body; empty when none).
    pub answered: std::collections::BTreeMap<(String, String), usize>,
}

impl LoadOutcome {
    pub fn total(&self) -> usize {
        self.ok + self.refused + self.other + self.statuses.values().sum::<usize>()
    }
}
