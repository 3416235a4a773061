//! Pods as OS processes: each container runs in its own process group (so
//! every process it forks is signalled with it), with stdout and stderr
//! appended to a log file, and dies with the runtime: started through
//! [`pod_exec`], which asks the kernel to kill it when its parent goes.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::process::{Pid, Signal};
use tokio::process::{Child, Command};

/// The environment variable that marks a process as started by the runtime
/// whose state dir it names, so a restarted runtime can find leftovers.
pub const RUN_MARKER: &str = "WEIR_STATE_DIR";

/// The hidden argument that makes the `weir` binary act as [`pod_exec`].
pub const POD_EXEC_ARG: &str = "__pod-exec";

/// What to run for one container.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The program (resolved path).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The full environment.
    pub env: BTreeMap<String, String>,
    /// The working directory, if the container sets one.
    pub working_dir: Option<PathBuf>,
    /// Where stdout and stderr go.
    pub log: PathBuf,
}

/// A running container process.
pub struct Process {
    child: Child,
    pgid: Option<Pid>,
}

impl Process {
    /// Starts `launch` through `launcher` (the `weir` binary, for the
    /// parent-death signal) or directly when there is none.
    pub fn spawn(
        launch: &Launch,
        launcher: Option<&Path>,
        state_dir: &Path,
    ) -> std::io::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)?;
        let mut cmd = match launcher {
            Some(weir) => {
                let mut c = Command::new(weir);
                c.arg(POD_EXEC_ARG).arg(&launch.program).args(&launch.args);
                c
            }
            None => {
                let mut c = Command::new(&launch.program);
                c.args(&launch.args);
                c
            }
        };
        cmd.env_clear()
            .envs(&launch.env)
            .env(RUN_MARKER, state_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        if let Some(dir) = &launch.working_dir {
            cmd.current_dir(dir);
        }
        let child = cmd.spawn()?;
        let pgid = child.id().and_then(|id| Pid::from_raw(id as i32));
        Ok(Self { child, pgid })
    }

    /// The process id (and group id).
    pub fn pid(&self) -> Option<u32> {
        self.pgid.map(|p| p.as_raw_nonzero().get() as u32)
    }

    /// Sends `signal` to the whole process group.
    pub fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = rustix::process::kill_process_group(pgid, signal);
        }
    }

    /// Waits for the process to exit; its exit code, or `None` if killed by a signal.
    pub async fn wait(&mut self) -> Option<i32> {
        self.child.wait().await.ok().and_then(|s| s.code())
    }

    /// Whether it has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<Option<i32>> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.code()),
            Ok(None) => None,
            Err(_) => Some(None),
        }
    }
}

/// Runs as the pod's process: asks the kernel to SIGKILL it when its parent
/// (the runtime) dies, then becomes `program args...`. Returns only on error.
pub fn pod_exec(mut args: impl Iterator<Item = OsString>) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::KILL)) {
        return e.into();
    }
    // The parent may already have died between fork and the call above.
    if rustix::process::getppid().is_none_or(|p| p.as_raw_nonzero().get() == 1) {
        return std::io::Error::other("the runtime exited before the pod started");
    }
    let Some(program) = args.next() else {
        return std::io::Error::other("no program given");
    };
    std::process::Command::new(program).args(args).exec()
}

/// Kills (SIGKILL, whole group) every process a previous run with this state
/// dir left behind, found by the [`RUN_MARKER`] in its environment.
pub fn kill_leftovers(state_dir: &Path) -> usize {
    let marker = format!("{RUN_MARKER}={}", state_dir.display());
    let mut killed = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let ours = environ
            .split(|&b| b == 0)
            .any(|var| var == marker.as_bytes());
        if ours && let Some(pid) = Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            killed += 1;
        }
    }
    killed
}
