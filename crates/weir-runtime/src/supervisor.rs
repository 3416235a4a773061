//! `weir __pod-exec`: the small process each container runs under, as
//! conmon runs under CRI-O's containers. It starts the container's program,
//! writes its output to the pod's size-rotated log, records its exit status
//! in a file, and exits with the program's code. It does not die with the
//! runtime: containers keep serving while `weir up` restarts, and the next
//! runtime adopts them. But a container is never orphaned for good: when
//! no runtime has held the state dir for the orphan grace, the supervisor
//! stops its container (SIGTERM to the group, SIGKILL after
//! [`STOP_GRACE`]) and exits.
//!
//! It ignores SIGTERM, SIGINT and SIGHUP itself: the runtime signals the
//! whole process group, the program gets the signal, and the supervisor
//! stays to record how the program ended.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::launch::{Launch, POD_TOKEN_ENV, Supervision};
use crate::pod_log::{LogLimits, RotatingLog, Stream};

/// How long an orphaned container has between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How often the supervisor looks whether its runtime lives.
const LOOK_EVERY: Duration = Duration::from_secs(1);

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
    /// The orders for `launch` under `supervision`.
    pub fn new(launch: &Launch, supervision: &Supervision) -> Self {
        Self {
            state_dir: supervision.state_dir.clone(),
            log: launch.log.clone(),
            exit_file: launch.exit_file(),
            log_limits: supervision.log_limits,
            orphan_grace: supervision.orphan_grace,
            user: launch.user,
            group: launch.group,
            command: std::iter::once(launch.program.clone().into_os_string())
                .chain(launch.args.iter().map(OsString::from))
                .collect(),
        }
    }

    /// As command-line arguments (after `__pod-exec`).
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

/// What an orphaned supervisor does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrphanStep {
    /// Nothing: the runtime lives, or the grace has not run out.
    Wait,
    /// Send SIGTERM to the container.
    Terminate,
    /// Send SIGKILL to the container.
    Kill,
}

/// The orphan rule as a pure function: `orphaned` is since when no runtime
/// has held the state dir, `terminated` since when the container has had
/// its SIGTERM.
pub fn orphan_step(
    now: Instant,
    orphaned: Option<Instant>,
    terminated: Option<Instant>,
    grace: Duration,
) -> OrphanStep {
    match (orphaned, terminated) {
        (_, Some(t)) if now.duration_since(t) >= STOP_GRACE => OrphanStep::Kill,
        (_, Some(_)) | (None, None) => OrphanStep::Wait,
        (Some(o), None) if now.duration_since(o) >= grace => OrphanStep::Terminate,
        (Some(_), None) => OrphanStep::Wait,
    }
}

/// Runs as `weir __pod-exec ORDERS...`; returns the process's exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let orders = match Orders::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("weir __pod-exec: {e}");
            return 127;
        }
    };
    // The container gets the usual umask, not the runtime's private one.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return 127,
    };
    runtime.block_on(supervise(orders))
}

async fn supervise(orders: Orders) -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    let mut log = match RotatingLog::open(&orders.log, orders.log_limits) {
        Ok(l) => l,
        Err(_) => return 127,
    };
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return 127;
    };
    let mut command = tokio::process::Command::new(&orders.command[0]);
    if let Some(uid) = orders.user {
        command.uid(uid);
    }
    if let Some(gid) = orders.group {
        command.gid(gid);
    }
    command
        .args(&orders.command[1..])
        .env_remove(POD_TOKEN_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = log.append(
                Stream::Stderr,
                format!("weir: cannot start the pod's program: {e}\n").as_bytes(),
            );
            write_exit(&orders, 127);
            return 127;
        }
    };
    let child_pid = child.id().and_then(|id| Pid::from_raw(id as i32));
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let (mut out_buf, mut err_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let mut look = tokio::time::interval(LOOK_EVERY);
    let (mut orphaned, mut terminated) = (None, None);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            n = read_some(&mut out, &mut out_buf) => copy(n, &mut out, &out_buf, &mut log, Stream::Stdout),
            n = read_some(&mut err, &mut err_buf) => copy(n, &mut err, &err_buf, &mut log, Stream::Stderr),
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {}
            _ = look.tick() => {
                let now = Instant::now();
                if crate::state_dir::holder(&orders.state_dir).is_some() {
                    orphaned = None;
                } else {
                    orphaned.get_or_insert(now);
                }
                match orphan_step(now, orphaned, terminated, orders.orphan_grace) {
                    OrphanStep::Wait => {}
                    OrphanStep::Terminate => {
                        let _ = log.append(
                            Stream::Stderr,
                            b"weir: no runtime for the orphan grace: stopping the container\n",
                        );
                        let group = rustix::process::getpgrp();
                        let _ = rustix::process::kill_process_group(group, Signal::TERM);
                        terminated = Some(now);
                    }
                    OrphanStep::Kill => {
                        if let Some(pid) = child_pid {
                            let _ = rustix::process::kill_process(pid, Signal::KILL);
                        }
                    }
                }
            }
        }
    };
    // What the program wrote last, if its pipes close soon (a process it
    // left behind may hold them open).
    let drain = async {
        while out.is_some() || err.is_some() {
            tokio::select! {
                n = read_some(&mut out, &mut out_buf) => copy(n, &mut out, &out_buf, &mut log, Stream::Stdout),
                n = read_some(&mut err, &mut err_buf) => copy(n, &mut err, &err_buf, &mut log, Stream::Stderr),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    let code = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code()
                .or_else(|| s.signal().map(|sig| 128 + sig))
                .unwrap_or(1)
        }
        Err(_) => 1,
    };
    write_exit(&orders, code);
    u8::try_from(code).unwrap_or(1)
}

/// Reads from a pipe, or never resolves once it is gone.
async fn read_some<R: tokio::io::AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

fn copy<R>(
    n: std::io::Result<usize>,
    pipe: &mut Option<R>,
    buf: &[u8],
    log: &mut RotatingLog,
    stream: Stream,
) {
    match n {
        Ok(0) | Err(_) => *pipe = None,
        Ok(n) => {
            let _ = log.append(stream, &buf[..n]);
        }
    }
}

fn write_exit(orders: &Orders, code: i32) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&orders.exit_file)
    {
        let _ = writeln!(f, "{code}");
    }
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

    #[test]
    fn an_orphan_is_stopped_after_the_grace_then_killed() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let grace = Duration::from_secs(60);
        let cases = [
            // (now, orphaned since, terminated since, step)
            (s(100), None, None, OrphanStep::Wait),
            (s(100), Some(s(50)), None, OrphanStep::Wait),
            (s(110), Some(s(50)), None, OrphanStep::Terminate),
            (s(115), Some(s(50)), Some(s(110)), OrphanStep::Wait),
            (s(120), Some(s(50)), Some(s(110)), OrphanStep::Kill),
            // A runtime came back after the SIGTERM: the stop goes on.
            (s(120), None, Some(s(110)), OrphanStep::Kill),
        ];
        for (now, orphaned, terminated, step) in cases {
            assert_eq!(
                orphan_step(now, orphaned, terminated, grace),
                step,
                "{:?} {:?} {:?}",
                now - t0,
                orphaned.map(|o| o - t0),
                terminated.map(|t| t - t0)
            );
        }
    }
}
