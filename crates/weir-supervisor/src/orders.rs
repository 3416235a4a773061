//! What a supervisor is told, on its command line: written by the runtime
//! when it starts a pod, parsed by `weir-pod-exec`. Positional, so neither
//! side needs an argument parser, and a program's own arguments after `--`
//! are passed on untouched.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use weir_rotating_file::LogLimits;

/// What a supervisor is told to do, on its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orders {
    /// The state dir (its lock file names the living runtime).
    pub state_dir: PathBuf,
    /// The current log file.
    pub log: PathBuf,
    /// Where the exit status goes.
    pub exit_file: PathBuf,
    /// Log rotation.
    pub log_limits: LogLimits,
    /// How long the container outlives its runtime.
    pub orphan_grace: Duration,
    /// The uid and gid the container is switched to, if any.
    pub user: Option<u32>,
    /// The gid.
    pub group: Option<u32>,
    /// The program and its arguments.
    pub command: Vec<OsString>,
}

impl Orders {
    /// As command-line arguments.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            self.state_dir.clone().into(),
            self.log.clone().into(),
            self.exit_file.clone().into(),
            self.log_limits.max_bytes.to_string().into(),
            self.log_limits.max_files.to_string().into(),
            self.orphan_grace.as_millis().to_string().into(),
            id_arg(self.user),
            id_arg(self.group),
            "--".into(),
        ];
        args.extend(self.command.iter().cloned());
        args
    }

    /// Parses what [`Orders::to_args`] wrote.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, String> {
        let mut args = args.into_iter();
        let mut next = |what: &str| args.next().ok_or_else(|| format!("missing {what}"));
        let number = |s: OsString, what: &str| -> Result<u64, String> {
            s.to_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad {what}"))
        };
        let state_dir = PathBuf::from(next("state dir")?);
        let log = PathBuf::from(next("log")?);
        let exit_file = PathBuf::from(next("exit file")?);
        let max_bytes = number(next("log size")?, "log size")?;
        let max_files = number(next("log files")?, "log files")?;
        let grace = number(next("orphan grace")?, "orphan grace")?;
        let id = |s: OsString, what: &str| -> Result<Option<u32>, String> {
            match s.to_str() {
                Some("-") => Ok(None),
                Some(n) => n.parse().map(Some).map_err(|_| format!("bad {what}")),
                None => Err(format!("bad {what}")),
            }
        };
        let user = id(next("uid")?, "uid")?;
        let group = id(next("gid")?, "gid")?;
        if next("--")? != "--" {
            return Err("expected --".into());
        }
        let command: Vec<OsString> = args.collect();
        if command.is_empty() {
            return Err("no program given".into());
        }
        Ok(Self {
            state_dir,
            log,
            exit_file,
            log_limits: LogLimits {
                max_bytes,
                max_files: u32::try_from(max_files).map_err(|_| "bad log files")?,
            },
            orphan_grace: Duration::from_millis(grace),
            user,
            group,
            command,
        })
    }
}

/// An optional id on the command line: the number, or `-`.
fn id_arg(id: Option<u32>) -> OsString {
    id.map_or_else(|| "-".into(), |n| n.to_string().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_survive_the_command_line() {
        let orders = Orders {
            state_dir: "/s t/a".into(),
            log: "/s t/a/logs/default_p.log".into(),
            exit_file: "/s t/a/logs/default_p.log.exit".into(),
            log_limits: LogLimits {
                max_bytes: 1234,
                max_files: 3,
            },
            orphan_grace: Duration::from_millis(2500),
            user: Some(65534),
            group: None,
            command: vec!["/bin/my app".into(), "--".into(), "-x".into()],
        };
        assert_eq!(Orders::parse(orders.to_args()).unwrap(), orders);
        assert!(Orders::parse(Vec::<OsString>::new()).is_err());
        let mut no_program = orders.to_args();
        no_program.truncate(9);
        assert!(Orders::parse(no_program).is_err());
    }
}
