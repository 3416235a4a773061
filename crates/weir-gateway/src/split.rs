//! The weighted split between a rule's destinations: smooth weighted
//! round-robin (nginx's algorithm) precomputed into one period and walked by
//! a shared atomic counter, so the split is exact over every window of one
//! period — 9/1 in every 10 consecutive requests at 90/10 — across all
//! worker threads and connections, without a lock. Envoy picks at random
//! per request and is exact only on average.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The longest period kept; weights whose reduced sum is longer are scaled
/// down to it (exact to within 1/65536 of each share).
const MAX_PERIOD: u64 = 1 << 16;

/// A precomputed split schedule.
#[derive(Debug)]
pub struct SmoothSplit {
    schedule: Box<[u16]>,
    counter: Arc<AtomicU64>,
}

impl SmoothSplit {
    /// A schedule for `weights` (all ≥ 0, at least one > 0), walked by
    /// `counter`, which callers keep across reconfigurations so a changed
    /// endpoint set does not restart the period.
    pub fn new(weights: &[u64], counter: Arc<AtomicU64>) -> Self {
        let reduced = reduce(weights);
        let total: u64 = reduced.iter().sum();
        let mut schedule = Vec::with_capacity(total as usize);
        let mut current = vec![0i64; reduced.len()];
        for _ in 0..total {
            let mut best = 0;
            for (i, w) in reduced.iter().enumerate() {
                current[i] += *w as i64;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total as i64;
            schedule.push(best as u16);
        }
        Self {
            schedule: schedule.into_boxed_slice(),
            counter,
        }
    }

    /// The index of the destination for the next request.
    #[inline]
    pub fn pick(&self) -> usize {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.schedule[(n % self.schedule.len() as u64) as usize] as usize
    }

    /// The schedule's length: every window this long is exact.
    pub fn period(&self) -> usize {
        self.schedule.len()
    }
}

/// Divides by the gcd and scales down to at most [`MAX_PERIOD`], keeping
/// every positive weight positive.
fn reduce(weights: &[u64]) -> Vec<u64> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut reduced: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let total: u64 = reduced.iter().sum();
    if total > MAX_PERIOD {
        reduced = reduced
            .iter()
            .map(|&w| {
                if w == 0 {
                    0
                } else {
                    ((w as u128 * MAX_PERIOD as u128 / total as u128) as u64).max(1)
                }
            })
            .collect();
    }
    reduced
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[u64]) -> SmoothSplit {
        SmoothSplit::new(weights, Arc::new(AtomicU64::new(0)))
    }

    #[test]
    fn ninety_ten_is_exact_in_every_window_of_ten() {
        let s = split(&[90, 10]);
        assert_eq!(s.period(), 10);
        let picks: Vec<usize> = (0..1000).map(|_| s.pick()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 100);
        for window in picks.windows(10) {
            assert_eq!(window.iter().filter(|&&p| p == 1).count(), 1, "{window:?}");
        }
    }

    #[test]
    fn zero_weights_never_picked_and_a_sole_weight_always() {
        let s = split(&[0, 100]);
        assert!((0..50).all(|_| s.pick() == 1));
        let s = split(&[7]);
        assert!((0..50).all(|_| s.pick() == 0));
    }

    #[test]
    fn three_way_split_is_smooth() {
        let s = split(&[50, 30, 20]);
        assert_eq!(s.period(), 10);
        let picks: Vec<usize> = (0..100).map(|_| s.pick()).collect();
        for window in picks.windows(10) {
            let count = |d| window.iter().filter(|&&p| p == d).count();
            assert_eq!((count(0), count(1), count(2)), (5, 3, 2));
        }
    }

    #[test]
    fn huge_weights_are_scaled_to_a_bounded_period() {
        let s = split(&[2_000_000_000, 1, 3]);
        assert!(s.period() as u64 <= MAX_PERIOD + 2);
        let picks: Vec<usize> = (0..s.period()).map(|_| s.pick()).collect();
        assert!(picks.contains(&1) && picks.contains(&2));
    }

    proptest::proptest! {
        #[test]
        fn every_period_holds_each_share_exactly(weights in proptest::collection::vec(0u64..200, 1..6)) {
            proptest::prop_assume!(weights.iter().any(|&w| w > 0));
            let s = split(&weights);
            let reduced = reduce(&weights);
            let picks: Vec<usize> = (0..s.period() * 2).map(|_| s.pick()).collect();
            for window in picks.windows(s.period()) {
                for (d, &w) in reduced.iter().enumerate() {
                    proptest::prop_assert_eq!(window.iter().filter(|&&p| p == d).count() as u64, w);
                }
            }
        }
    }
}
