//! The kubelet's restart backoff for a crashing container
//! (`CrashLoopBackOff`): a first crash restarts at once; each crash after
//! it waits twice as long as the one before, from 10 s up to 5 minutes; a
//! container that ran for 10 minutes before it crashed starts over.

use std::time::Duration;

/// The longest wait between restarts.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// Running this long before a crash resets the backoff.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// After a container exits having run for `ran_for`, with `streak` crashes
/// since the last reset before this one: the new streak and how long to
/// wait before restarting it. `base` is the first non-zero wait (10 s).
pub fn after_exit(streak: u32, ran_for: Duration, base: Duration) -> (u32, Duration) {
    let streak = if ran_for >= RESET_AFTER {
        1
    } else {
        streak.saturating_add(1)
    };
    let delay = match streak {
        0 | 1 => Duration::ZERO,
        n => base.saturating_mul(1u32 << (n - 2).min(16)).min(MAX_DELAY),
    };
    (streak, delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelets_rule() {
        let base = Duration::from_secs(10);
        let s = Duration::from_secs;
        let cases = [
            // (streak before, ran for, streak after, delay)
            (0, s(1), 1, s(0)),
            (1, s(1), 2, s(10)),
            (2, s(1), 3, s(20)),
            (3, s(1), 4, s(40)),
            (4, s(1), 5, s(80)),
            (5, s(1), 6, s(160)),
            (6, s(1), 7, s(300)),
            (40, s(1), 41, s(300)),
            (u32::MAX, s(1), u32::MAX, s(300)),
            // Ten minutes of running: the next crash is a first crash again.
            (7, s(599), 8, s(300)),
            (7, s(600), 1, s(0)),
            (7, s(3600), 1, s(0)),
        ];
        for (before, ran, after, delay) in cases {
            assert_eq!(
                after_exit(before, ran, base),
                (after, delay),
                "{before} crashes, ran {ran:?}"
            );
        }
    }
}
