//! What /proc says of one process, for the checks made before the runtime
//! adopts or signals a process it did not start in this run: a pid alone
//! may have been reused, so a process is known by its pid *and* its start
//! time, and its executable and environment are read, never guessed.

use std::path::PathBuf;

/// The fields of /proc/PID/stat after the command name (which may hold
/// spaces and parentheses, so the split is at the last `)`).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_fields(&stat)
}

fn parse_fields(stat: &str) -> Option<Vec<String>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// When the process started, in clock ticks since boot (field 22).
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether the process exists and has not exited (a zombie has).
pub fn is_running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|state| state != "Z"))
}

/// Its parent's pid.
pub fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Its process group.
pub fn process_group(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// The executable it runs (unreadable for other users' processes).
pub fn executable(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The value of `name` in its environment, if set (unreadable, so `None`,
/// for other users' processes): one read of the environment, whatever is
/// looked for in it.
pub fn env_value(pid: u32, name: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|var| {
        let value = var.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        String::from_utf8(value.to_vec()).ok()
    })
}

/// Whether its environment holds exactly `NAME=value` (unreadable, so
/// `false`, for other users' processes).
pub fn has_env(pid: u32, entry: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == entry.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_last_parenthesis() {
        let line = "1234 (my (weird) app) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 98765 1000 10";
        let f = parse_fields(line).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[1], "1");
        assert_eq!(f[19], "98765");
    }

    #[test]
    fn this_process_is_seen_as_it_is() {
        let me = std::process::id();
        assert!(is_running(me));
        assert!(start_time(me).is_some());
        assert_eq!(parent(me), Some(std::os::unix::process::parent_id()));
        assert_eq!(executable(me), std::env::current_exe().ok());
        assert!(!has_env(me, "WEIR_NO_SUCH_VARIABLE=1"));
        assert_eq!(env_value(me, "WEIR_NO_SUCH_VARIABLE"), None);
        let path = std::env::var("PATH").unwrap();
        assert_eq!(env_value(me, "PATH"), Some(path));
        assert_eq!(env_value(me, "PAT"), None);
        assert!(!is_running(u32::MAX));
    }
}
