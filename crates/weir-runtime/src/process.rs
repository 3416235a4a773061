//! Pods as OS processes. Each container runs under its own supervisor
//! (`weir-pod-exec`, [`weir_supervisor`]) in a process group of its
//! own, so every process it forks is signalled with it. The supervisor, not
//! the runtime, holds the container's output and exit status, so a
//! container outlives a crash of `weir up` (as containers outlive a kubelet
//! restart) and the next `weir up` adopts it.
//!
//! A process is only ever signalled or adopted as the runtime's own when it
//! is known by more than its pid: its start time (a reused pid has another),
//! the private token the runtime gave its supervisor, readable only by the
//! same user ([`POD_TOKEN_ENV`]), and its executable being the launcher.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::process::{Pid, Signal};
use tokio::process::{Child, Command};

use crate::launch::{Launch, POD_TOKEN_ENV, Supervision};
use crate::proc_info;

/// A running container, through its supervisor.
pub struct Process {
    pid: Pid,
    start_time: u64,
    exit_file: PathBuf,
    /// Present when this runtime started it (it can wait for it).
    child: Option<Child>,
}

impl Process {
    /// Starts `launch` under a supervisor (or, with no launcher, directly),
    /// in a process group of its own.
    pub fn spawn(
        launch: &Launch,
        supervision: Option<&Supervision>,
        token: &str,
    ) -> std::io::Result<Self> {
        let mut cmd = match supervision {
            Some(s) => {
                let mut c = Command::new(&s.launcher);
                c.args(crate::launch::orders(launch, s).to_args())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                c
            }
            None => {
                use std::os::unix::fs::OpenOptionsExt;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&launch.log)?;
                let mut c = Command::new(&launch.program);
                c.args(&launch.args).stdout(file.try_clone()?).stderr(file);
                if let Some(uid) = launch.user {
                    c.uid(uid);
                }
                if let Some(gid) = launch.group {
                    c.gid(gid);
                }
                c
            }
        };
        cmd.env_clear()
            .envs(&launch.env)
            .env(POD_TOKEN_ENV, token)
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        if let Some(dir) = &launch.working_dir {
            cmd.current_dir(dir);
        }
        let _ = std::fs::remove_file(launch.exit_file());
        let child = cmd.spawn()?;
        let pid = child
            .id()
            .and_then(|id| Pid::from_raw(id as i32))
            .ok_or_else(|| std::io::Error::other("the pod exited at once"))?;
        let start_time = proc_info::start_time(pid.as_raw_nonzero().get() as u32).unwrap_or(0);
        Ok(Self {
            pid,
            start_time,
            exit_file: launch.exit_file(),
            child: Some(child),
        })
    }

    /// A supervisor a previous run started, if `pid` still is exactly that
    /// process: same start time, carrying `token`, running the launcher.
    pub fn adopt(
        pid: u32,
        start_time: u64,
        token: &str,
        launcher: &Path,
        launch: &Launch,
    ) -> Option<Self> {
        if !is_ours(pid, Some(start_time), token, launcher) {
            return None;
        }
        Some(Self {
            pid: Pid::from_raw(pid as i32)?,
            start_time,
            exit_file: launch.exit_file(),
            child: None,
        })
    }

    /// The supervisor's pid (and process group).
    pub fn pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get() as u32
    }

    /// When it started (clock ticks since boot), with its pid its identity.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// Sends `signal` to the whole process group, if the process is still
    /// the one started (an adopted pid is checked again first).
    pub fn signal(&self, signal: Signal) {
        if self.child.is_none() && proc_info::start_time(self.pid()) != Some(self.start_time) {
            return;
        }
        let _ = rustix::process::kill_process_group(self.pid, signal);
    }

    /// Whether it has exited, without waiting: `Some(code)` once it has
    /// (`None` inside when killed by a signal or the code is unknown).
    pub fn try_exit(&mut self) -> Option<Option<i32>> {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.code()),
                Ok(None) => None,
                Err(_) => Some(None),
            },
            None => {
                let alive = proc_info::is_running(self.pid())
                    && proc_info::start_time(self.pid()) == Some(self.start_time);
                (!alive).then(|| {
                    std::fs::read_to_string(&self.exit_file)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                })
            }
        }
    }
}

/// Whether `pid` is a supervisor of this state dir's runtime: it carries
/// `token`, runs the launcher, leads its process group, and (when known)
/// started at `start_time`.
fn is_ours(pid: u32, start_time: Option<u64>, token: &str, launcher: &Path) -> bool {
    proc_info::is_running(pid)
        && start_time.is_none_or(|t| proc_info::start_time(pid) == Some(t))
        && proc_info::process_group(pid) == Some(pid)
        && proc_info::has_env(pid, &format!("{POD_TOKEN_ENV}={token}"))
        && proc_info::executable(pid).is_some_and(|exe| same_program(&exe, launcher))
}

/// `/proc/PID/exe` of a binary replaced since it started reads
/// `PATH (deleted)`; a rebuilt launcher is still the launcher. Pods started
/// before the supervisor was a program of its own ran under `weir`
/// itself (`weir __pod-exec`): those are still adopted after an upgrade,
/// never left running beside a restarted copy of their pod.
fn same_program(exe: &Path, launcher: &Path) -> bool {
    let exe = exe.to_string_lossy();
    let exe = Path::new(exe.strip_suffix(" (deleted)").unwrap_or(&exe));
    exe.file_name() == launcher.file_name()
        || exe.file_name() == Some(std::ffi::OsStr::new(EARLIER_LAUNCHER))
}

/// The program that supervised pods before `weir-pod-exec`.
const EARLIER_LAUNCHER: &str = "weir";

/// Kills (SIGKILL, whole group) every supervisor carrying one of `tokens`
/// that is not in `adopted`: containers a previous run started but did not
/// record, or could not adopt. Returns how many. Linear in the processes
/// running: each one's environment is read once.
pub fn kill_unadopted(tokens: &HashSet<String>, adopted: &HashSet<u32>, launcher: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        if adopted.contains(&pid) || pid == std::process::id() {
            continue;
        }
        // One read of each process's environment: the scan stays linear in
        // the processes however many pods were recorded.
        let Some(token) = proc_info::env_value(pid, POD_TOKEN_ENV).filter(|t| tokens.contains(t))
        else {
            continue;
        };
        if is_ours(pid, None, &token, launcher)
            && let Some(group) = Pid::from_raw(pid as i32)
        {
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
            killed += 1;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuilt_launcher_is_still_the_launcher() {
        let launcher = Path::new("/home/u/weir/target/release/weir-pod-exec");
        for (exe, same) in [
            ("/home/u/weir/target/release/weir-pod-exec", true),
            ("/home/u/weir/target/release/weir-pod-exec (deleted)", true),
            ("/usr/bin/weir-pod-exec", true),
            // An earlier weir's supervisor.
            ("/usr/bin/weir", true),
            ("/usr/bin/weir (deleted)", true),
            ("/usr/bin/bash", false),
            ("/usr/bin/weir-gateway", false),
            ("/usr/bin/weir-pod-exec-not", false),
        ] {
            assert_eq!(same_program(Path::new(exe), launcher), same, "{exe}");
        }
    }

    #[test]
    fn a_process_without_the_token_is_never_ours() {
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap();
        assert!(!is_ours(
            me,
            proc_info::start_time(me),
            "no-such-token",
            &exe
        ));
        let tokens = HashSet::from(["no-such-token".to_owned()]);
        assert_eq!(kill_unadopted(&tokens, &HashSet::new(), &exe), 0);
    }
}
