//! Whether a runtime lives: the state dir's lock file names the runtime
//! holding it (its pid and start time), which `weir up` writes when it
//! claims the dir and a supervisor reads to know whether it is orphaned.

use std::path::Path;

use crate::proc_info;

/// The lock file's name in the state dir.
pub const LOCK_FILE: &str = "lock";

/// The runtime that holds `dir`'s lock, if it is alive: its pid, read from
/// the lock file and confirmed by its start time (so a reused pid is not
/// taken for it).
pub fn holder(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(LOCK_FILE)).ok()?;
    let mut fields = text.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let started: u64 = fields.next()?.parse().ok()?;
    (proc_info::start_time(pid) == Some(started) && proc_info::is_running(pid)).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_living_holder_with_its_start_time_counts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(holder(dir.path()), None);
        let me = std::process::id();
        let started = proc_info::start_time(me).unwrap();
        let lock = dir.path().join(LOCK_FILE);
        std::fs::write(&lock, format!("{me} {started}\n")).unwrap();
        assert_eq!(holder(dir.path()), Some(me));
        // The same pid with another start time is another process.
        std::fs::write(&lock, format!("{me} {}\n", started + 1)).unwrap();
        assert_eq!(holder(dir.path()), None);
        std::fs::write(&lock, "garbage").unwrap();
        assert_eq!(holder(dir.path()), None);
    }
}
