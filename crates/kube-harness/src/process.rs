//! The control plane's processes: each started under `setpriv --pdeathsig
//! KILL`, so it dies with the test thread that started it even when the
//! test process is killed (a timeout) and no destructor runs; killed and
//! reaped when dropped otherwise. Each writes to a log file of its own,
//! shown when it fails to come up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where the control plane's programs are: `$WEIR_CONTROL_PLANE`, else
/// `target/control-plane` in the workspace (`.ci/test-tools` builds them
/// there, from `tools/control-plane`).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("WEIR_CONTROL_PLANE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/control-plane"))
}

/// A program of the control plane, by name, or a panic that says how to
/// build it.
pub fn program(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash .ci/test-tools` (it builds etcd, kube-apiserver and kube-controller-manager from tools/control-plane, about 8 minutes once)",
        path.display()
    );
    path
}

/// A running process of the control plane.
pub struct Running {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Running {
    /// Starts `program args` with its output in `log`.
    pub fn start(name: &'static str, args: &[String], log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("a log file");
        let err = out.try_clone().expect("a log file");
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(program(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} (setpriv, from util-linux): {e}"));
        Self { name, child, log }
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the end of its log if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); the end of its log:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on loopback now (the program binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A process of the control plane stopped (SIGSTOP) until this is dropped
/// (SIGCONT). Only the harness's own processes are ever paused.
pub struct Paused(rustix::process::Pid);

impl Paused {
    /// Stops the process `pid`, which the harness started.
    pub fn new(pid: u32) -> Self {
        let pid = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("a process id");
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
        // The signal is delivered asynchronously: on a busy machine a
        // thread of the server could still answer a request sent right
        // after. Stopped is when /proc says every thread is (state `T`),
        // waited for within a second.
        let tasks = format!("/proc/{}/task", pid.as_raw_nonzero());
        let stopped = || {
            std::fs::read_dir(&tasks).is_ok_and(|threads| {
                threads.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
                        s.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with('T'))
                    })
                })
            })
        };
        for _ in 0..500 {
            if stopped() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Self(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(self.0, rustix::process::Signal::CONT);
    }
}
