//! When an orphaned container is stopped: a pure rule over the supervisor's
//! monotonic clock, so it is table-tested without waiting.

use std::time::Duration;

/// How long an orphaned container has between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

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

/// The orphan rule. Times are readings of one monotonic clock: `now`,
/// since when no runtime has held the state dir (`orphaned`), since when
/// the container has had its SIGTERM (`terminated`).
pub fn orphan_step(
    now: Duration,
    orphaned: Option<Duration>,
    terminated: Option<Duration>,
    grace: Duration,
) -> OrphanStep {
    match (orphaned, terminated) {
        (_, Some(t)) if now.saturating_sub(t) >= STOP_GRACE => OrphanStep::Kill,
        (_, Some(_)) | (None, None) => OrphanStep::Wait,
        (Some(o), None) if now.saturating_sub(o) >= grace => OrphanStep::Terminate,
        (Some(_), None) => OrphanStep::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphan_is_stopped_after_the_grace_then_killed() {
        let s = Duration::from_secs;
        let grace = s(60);
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
                "{now:?} {orphaned:?} {terminated:?}"
            );
        }
    }
}
