//! The supervisor's loop: start the program, copy its output to the log,
//! wait for its end, write its exit status. One thread and one `poll` over
//! the program's two pipes and a pidfd (the program's end wakes it at
//! once), waking each [`LOOK_EVERY`] besides to see whether its runtime
//! still lives.
//!
//! It ignores SIGTERM, SIGINT and SIGHUP itself: the runtime signals the
//! whole process group, the program gets the signal, and the supervisor
//! stays to record how the program ended. It catches them with a handler
//! rather than ignoring them, since an ignored signal stays ignored across
//! `exec` and the program must get them.

use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::POD_TOKEN_ENV;
use crate::cri_log::{RotatingLog, Stream};
use crate::orders::Orders;
use crate::orphan::{OrphanStep, orphan_step};

/// How often the supervisor looks whether its runtime lives.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// How long it waits for what the program wrote last once it has ended
/// (a process it left behind may hold the pipes open).
const DRAIN_FOR: Duration = Duration::from_secs(1);

/// How often it looks for the program's end where no pidfd can be had.
const WITHOUT_PIDFD: Duration = Duration::from_millis(100);

/// Bytes read from a pipe at a time.
const READ_SIZE: usize = 16 * 1024;

/// Runs as `weir-pod-exec ORDERS...`; returns the process's exit code (the
/// program's, or 128 + the signal that ended it; 127 when it could not be
/// started).
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
    let orders = match Orders::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("weir-pod-exec: {e}");
            return 127;
        }
    };
    // The container gets the usual umask, not the runtime's private one.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let caught = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        if signal_hook::flag::register(signal, caught.clone()).is_err() {
            return 127;
        }
    }
    supervise(&orders)
}

/// The monotonic clock, as a duration since an arbitrary start.
fn now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The program's pipes still open.
struct Pipes {
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    buf: Vec<u8>,
}

impl Pipes {
    fn open(&self) -> bool {
        self.out.is_some() || self.err.is_some()
    }

    /// Waits up to `timeout` for output (or for `exited` to be readable),
    /// and copies what came to the log. A pipe at its end is closed.
    fn copy_some(&mut self, exited: Option<&OwnedFd>, timeout: Duration, log: &mut RotatingLog) {
        let mut ready = [false; 2];
        {
            let mut fds = Vec::with_capacity(3);
            let mut streams = Vec::with_capacity(3);
            for (i, pipe) in [&self.out, &self.err].into_iter().enumerate() {
                if let Some(fd) = pipe {
                    fds.push(PollFd::new(fd, PollFlags::IN));
                    streams.push(Some(i));
                }
            }
            if let Some(fd) = exited {
                fds.push(PollFd::new(fd, PollFlags::IN));
                streams.push(None);
            }
            let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            });
            if !matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0) {
                return;
            }
            for (fd, stream) in fds.iter().zip(streams) {
                if let Some(i) = stream
                    && !fd.revents().is_empty()
                {
                    ready[i] = true;
                }
            }
        }
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            if !ready[i] {
                continue;
            }
            let pipe = if i == 0 { &mut self.out } else { &mut self.err };
            let Some(fd) = pipe else { continue };
            match rustix::io::read(&*fd, &mut self.buf[..]) {
                Ok(0) => *pipe = None,
                Ok(n) => {
                    let _ = log.append(stream, &self.buf[..n]);
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(_) => *pipe = None,
            }
        }
    }
}

fn supervise(orders: &Orders) -> u8 {
    let mut log = match RotatingLog::open(&orders.log, orders.log_limits) {
        Ok(l) => l,
        Err(_) => return 127,
    };
    let mut command = Command::new(&orders.command[0]);
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
            write_exit(orders, 127);
            return 127;
        }
    };
    let child_pid = Pid::from_child(&child);
    let exited = rustix::process::pidfd_open(child_pid, PidfdFlags::empty()).ok();
    let mut pipes = Pipes {
        out: child.stdout.take().map(OwnedFd::from),
        err: child.stderr.take().map(OwnedFd::from),
        buf: vec![0; READ_SIZE],
    };
    let mut next_look = now();
    let (mut orphaned, mut terminated) = (None, None);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        let t = now();
        if t >= next_look {
            next_look = t + LOOK_EVERY;
            if crate::lock::holder(&orders.state_dir).is_some() {
                orphaned = None;
            } else {
                orphaned.get_or_insert(t);
            }
            match orphan_step(t, orphaned, terminated, orders.orphan_grace) {
                OrphanStep::Wait => {}
                OrphanStep::Terminate => {
                    let _ = log.append(
                        Stream::Stderr,
                        b"weir: no runtime for the orphan grace: stopping the container\n",
                    );
                    let group = rustix::process::getpgrp();
                    let _ = rustix::process::kill_process_group(group, Signal::TERM);
                    terminated = Some(t);
                }
                OrphanStep::Kill => {
                    let _ = rustix::process::kill_process(child_pid, Signal::KILL);
                }
            }
        }
        let mut wait = next_look.saturating_sub(now());
        if exited.is_none() {
            wait = wait.min(WITHOUT_PIDFD);
        }
        pipes.copy_some(exited.as_ref(), wait, &mut log);
    };
    let drain_until = now() + DRAIN_FOR;
    while pipes.open() {
        let left = drain_until.saturating_sub(now());
        if left.is_zero() {
            break;
        }
        pipes.copy_some(None, left, &mut log);
    }
    let code = status.map_or(1, |s| {
        s.code()
            .or_else(|| s.signal().map(|sig| 128 + sig))
            .unwrap_or(1)
    });
    write_exit(orders, code);
    u8::try_from(code).unwrap_or(1)
}

/// Records the program's exit code for the runtime (which, having adopted
/// this supervisor, cannot wait for it).
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
