//! CPU usage per pod from /proc: the user + system time of every process in
//! the pod's process group, sampled over time, as metrics-server reports
//! a container's usage from its cgroup.

use std::collections::HashMap;

/// The CPU time of one process group, in clock ticks, its leader's apart:
/// a pod's group is led by its supervisor, whose own work (log copying,
/// looking for its runtime once a second) is not the container's, as
/// conmon's is not counted in a container's cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupTicks {
    /// The group leader's.
    pub leader: u64,
    /// Every other member's.
    pub members: u64,
}

impl GroupTicks {
    /// The container's time: the members' under a supervisor, else all.
    pub fn container(&self, supervised: bool) -> u64 {
        if supervised {
            self.members
        } else {
            self.leader + self.members
        }
    }
}

/// Clock ticks per process group: Σ (utime + stime + cutime + cstime).
pub fn ticks_by_process_group() -> HashMap<u32, GroupTicks> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((pid, pgrp, ticks)) = parse_stat(&stat) {
            let group: &mut GroupTicks = out.entry(pgrp).or_default();
            if pid == pgrp {
                group.leader += ticks;
            } else {
                group.members += ticks;
            }
        }
    }
    out
}

/// `(pid, pgrp, utime + stime + cutime + cstime)` from a /proc/PID/stat line.
/// The command name may hold spaces and parentheses; fields follow the last `)`.
fn parse_stat(stat: &str) -> Option<(u32, u32, u64)> {
    let pid = stat.split_whitespace().next()?.parse().ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let pgrp = fields.get(2)?.parse().ok()?;
    let ticks = [11, 12, 13, 14]
        .iter()
        .map(|&i| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    Some((pid, pgrp, ticks))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_supervised_containers_time_leaves_out_its_supervisor() {
        let group = GroupTicks {
            leader: 7,
            members: 30,
        };
        assert_eq!(group.container(true), 30);
        assert_eq!(group.container(false), 37);
    }

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "1234 (my (weird) app) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 100 1000 10 18446744073709551615";
        assert_eq!(parse_stat(line), Some((1234, 1234, 250 + 50 + 7 + 3)));
    }

    #[test]
    fn this_process_group_is_seen_burning_cpu() {
        let me = rustix::process::getpgrp().as_raw_nonzero().get() as u32;
        let before = ticks_by_process_group()
            .get(&me)
            .map_or(0, |g| g.container(false));
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while tokio::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = ticks_by_process_group()
            .get(&me)
            .map_or(0, |g| g.container(false));
        assert!(after > before, "{before} -> {after}");
        assert!(ticks_per_second() > 0);
    }
}
