//! CPU samples per pod and the usage the HPA sees, as metrics-server gives
//! it: the CPU time used over a window, in millicores. Pure: the samples
//! are handed in (by the runtime, from /proc) with their times.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::hpa::Usage;
use crate::pods::PodKey;

/// Cumulative CPU ticks of each pod's container, sampled over time.
#[derive(Debug, Default)]
pub struct CpuHistory {
    samples: HashMap<PodKey, VecDeque<(Instant, u64)>>,
}

impl CpuHistory {
    /// Records `ticks` for `pod` at `now`; samples older than `keep` go.
    pub fn record(&mut self, pod: &PodKey, now: Instant, ticks: u64, keep: Duration) {
        let samples = self.samples.entry(pod.clone()).or_default();
        samples.push_back((now, ticks));
        while samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > keep)
        {
            samples.pop_front();
        }
    }

    /// Drops a pod's samples.
    pub fn forget(&mut self, pod: &PodKey) {
        self.samples.remove(pod);
    }

    /// The pods with samples.
    pub fn pods(&self) -> impl Iterator<Item = &PodKey> {
        self.samples.keys()
    }

    /// A pod's usage over the last `window` of its samples; `None` until
    /// the samples span most of a second.
    pub fn usage(&self, pod: &PodKey, window: Duration, ticks_per_second: u64) -> Option<Usage> {
        let samples = self.samples.get(pod)?;
        let (newest_t, newest) = *samples.back()?;
        let (oldest_t, oldest) = *samples
            .iter()
            .find(|(t, _)| newest_t.duration_since(*t) <= window)?;
        let span = newest_t.duration_since(oldest_t);
        if span < Duration::from_millis(900) {
            return None;
        }
        let tps = ticks_per_second.max(1) as f64;
        let millis = newest.saturating_sub(oldest) as f64 / tps / span.as_secs_f64() * 1000.0;
        Some(Usage {
            millis: millis.round() as i64,
            timestamp: newest_t,
            window: span,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_ticks_over_the_window_in_millicores() {
        let t0 = Instant::now();
        let pod = PodKey::new("default", "p");
        let mut h = CpuHistory::default();
        let keep = Duration::from_secs(30);
        h.record(&pod, t0, 0, keep);
        assert!(
            h.usage(&pod, Duration::from_secs(15), 100).is_none(),
            "one sample"
        );
        h.record(&pod, t0 + Duration::from_millis(500), 25, keep);
        assert!(
            h.usage(&pod, Duration::from_secs(15), 100).is_none(),
            "under 900 ms"
        );
        h.record(&pod, t0 + Duration::from_secs(2), 100, keep);
        let u = h.usage(&pod, Duration::from_secs(15), 100).unwrap();
        // 100 ticks at 100 per second over 2 s: half a core.
        assert_eq!(u.millis, 500);
        assert_eq!(u.window, Duration::from_secs(2));
        // Only the window counts: 1 s back from the newest sample.
        h.record(&pod, t0 + Duration::from_secs(3), 300, keep);
        assert_eq!(
            h.usage(&pod, Duration::from_secs(1), 100).unwrap().millis,
            2000
        );
        // Old samples are dropped.
        h.record(&pod, t0 + Duration::from_secs(40), 300, keep);
        assert!(h.usage(&pod, Duration::from_secs(60), 100).is_none());
        h.forget(&pod);
        assert_eq!(h.pods().count(), 0);
    }
}
