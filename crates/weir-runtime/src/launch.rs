//! What a container's supervisor is told: the program and its
//! environment ([`Launch`]), how supervision works ([`Supervision`]), and
//! the private token that marks a supervisor as this runtime's. Shared by
//! the runtime's side ([`crate::process`]) and the supervisor's
//! ([`crate::supervisor`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pod_log::LogLimits;

pub use weir_supervisor::POD_TOKEN_ENV;
use weir_supervisor::orders::Orders;

/// What to run for one container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The uid the container is switched to (`runAsUser`), if another.
    #[serde(default)]
    pub user: Option<u32>,
    /// The primary gid it is switched to (`runAsGroup`).
    #[serde(default)]
    pub group: Option<u32>,
}

impl Launch {
    /// Where the supervisor records the container's exit status.
    pub fn exit_file(&self) -> PathBuf {
        exit_file_of(&self.log)
    }
}

/// The exit-status file beside the log at `log`.
pub fn exit_file_of(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".exit");
    PathBuf::from(name)
}

/// What the supervisor of `launch` is told, on its command line.
pub fn orders(launch: &Launch, supervision: &Supervision) -> Orders {
    Orders {
        state_dir: supervision.state_dir.clone(),
        log: launch.log.clone(),
        exit_file: launch.exit_file(),
        log_limits: supervision.log_limits,
        orphan_grace: supervision.orphan_grace,
        user: launch.user,
        group: launch.group,
        command: std::iter::once(launch.program.clone().into_os_string())
            .chain(launch.args.iter().map(std::ffi::OsString::from))
            .collect(),
    }
}

/// How supervisors watch over their containers.
#[derive(Clone, Debug)]
pub struct Supervision {
    /// The supervisor's program, `weir-pod-exec`.
    pub launcher: PathBuf,
    /// The state dir, whose lock file names the living runtime.
    pub state_dir: PathBuf,
    /// Log rotation.
    pub log_limits: LogLimits,
    /// How long a container outlives its runtime before it is stopped.
    pub orphan_grace: Duration,
}

/// A fresh private token for one supervisor.
pub fn new_token() -> String {
    format!("{:032x}", fastrand::u128(..))
}
