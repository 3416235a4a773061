//! The `weir-pod-exec` program itself, run as the runtime runs it (in a
//! process group of its own, orders on its command line): what it
//! guarantees — the program's output in the CRI log, its exit code kept in
//! the exit file and as its own, the container stopped once no runtime has
//! held the state dir for the orphan grace — and the code it exits with on
//! orders it cannot read.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use weir_supervisor::orders::{LogLimits, Orders};

fn orders(dir: &Path, grace: Duration, command: &[&str]) -> Orders {
    Orders {
        state_dir: dir.join("state"),
        log: dir.join("pod.log"),
        exit_file: dir.join("pod.log.exit"),
        log_limits: LogLimits::default(),
        orphan_grace: grace,
        user: None,
        group: None,
        command: command.iter().map(OsString::from).collect(),
    }
}

/// Runs the supervisor in a process group of its own, as the runtime does
/// (its orphan stop signals its whole group).
fn supervise(args: Vec<OsString>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir-pod-exec"))
        .args(args)
        .process_group(0)
        .output()
        .unwrap()
}

#[test]
fn the_programs_output_and_exit_code_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let orders = orders(
        dir.path(),
        Duration::from_secs(300),
        &["sh", "-c", "echo out; printf 'err' >&2; exit 3"],
    );
    let out = supervise(orders.to_args());
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(std::fs::read_to_string(&orders.exit_file).unwrap(), "3\n");
    let log = std::fs::read_to_string(&orders.log).unwrap();
    let contents: Vec<&str> = log
        .lines()
        .map(|l| {
            let (stamp, rest) = l.split_once(' ').unwrap();
            assert!(humantime::parse_rfc3339(stamp).is_ok(), "{l}");
            rest
        })
        .collect();
    assert!(contents.contains(&"stdout F out"), "{log}");
    assert!(contents.contains(&"stderr P err"), "{log}");
}

#[test]
fn a_signal_that_ends_the_program_is_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let orders = orders(
        dir.path(),
        Duration::from_secs(300),
        &["sh", "-c", "kill -KILL $$"],
    );
    let out = supervise(orders.to_args());
    assert_eq!(out.status.code(), Some(128 + 9), "{out:?}");
    assert_eq!(std::fs::read_to_string(&orders.exit_file).unwrap(), "137\n");
}

#[test]
fn without_a_runtime_for_the_orphan_grace_the_container_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    // No runtime holds the state dir's lock: after the grace (none here)
    // the supervisor sends SIGTERM to its group, and `sleep` ends by it.
    let orders = orders(dir.path(), Duration::ZERO, &["sleep", "60"]);
    let started = std::time::SystemTime::now();
    let out = supervise(orders.to_args());
    assert_eq!(out.status.code(), Some(128 + 15), "{out:?}");
    assert!(started.elapsed().unwrap() < Duration::from_secs(30));
    let log = std::fs::read_to_string(&orders.log).unwrap();
    assert!(log.contains("no runtime for the orphan grace"), "{log}");
}

#[test]
fn orders_it_cannot_read_exit_127_and_start_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let mut args = orders(
        dir.path(),
        Duration::ZERO,
        &["touch", started.to_str().unwrap()],
    )
    .to_args();
    args[3] = "lots".into();
    let out = supervise(args);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad log size"));
    assert!(!started.exists() && !dir.path().join("pod.log").exists());
}
