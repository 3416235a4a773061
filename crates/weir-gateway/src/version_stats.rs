//! What rollout analysis reads: for each Service version, the requests
//! its pods answered (or failed: 5xx, including the gateway's own 503/504
//! for a destination that broke), and their latencies in fine log-scale
//! buckets — 10 % wide from 0.01 ms, fine enough that a percentile and a
//! ratio of percentiles can be judged, which Istio's 14 duration buckets are
//! not. Counted beside the Istio metrics, by the same recording, with
//! atomics; read as snapshots (no parsing of the metrics text).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// Latency buckets.
pub const LATENCY_BUCKETS: usize = 200;
/// The first bucket's upper edge, milliseconds.
const FIRST_EDGE_MS: f64 = 0.01;
/// Each bucket's upper edge over the one before.
const GROWTH: f64 = 1.1;

/// The upper edge of bucket `i`, milliseconds (the last is unbounded).
pub fn bucket_upper_ms(i: usize) -> f64 {
    if i + 1 >= LATENCY_BUCKETS {
        return f64::INFINITY;
    }
    FIRST_EDGE_MS * GROWTH.powi(i as i32)
}

/// The lower edge of bucket `i`, milliseconds.
pub fn bucket_lower_ms(i: usize) -> f64 {
    if i == 0 { 0.0 } else { bucket_upper_ms(i - 1) }
}

/// The bucket a latency falls in.
pub fn bucket_of(ms: f64) -> usize {
    // NaN and anything up to the first edge land in the first bucket.
    if ms.is_nan() || ms <= FIRST_EDGE_MS {
        return 0;
    }
    let i = ((ms / FIRST_EDGE_MS).ln() / GROWTH.ln()).ceil() as usize;
    // Float rounding at an edge: the bucket whose range holds it.
    let i = if i > 0 && ms <= bucket_upper_ms(i - 1) {
        i - 1
    } else {
        i
    };
    i.min(LATENCY_BUCKETS - 1)
}

/// One version's live counters.
#[derive(Debug)]
pub struct VersionStats {
    requests: AtomicU64,
    server_errors: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for VersionStats {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            latency: [const { AtomicU64::new(0) }; LATENCY_BUCKETS],
        }
    }
}

impl VersionStats {
    /// Counts one request that took `ms`; `server_error` for a 5xx.
    pub fn record(&self, ms: f64, server_error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if server_error {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket_of(ms)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn counts(&self) -> VersionCounts {
        VersionCounts {
            requests: self.requests.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            latency: self
                .latency
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// A version's counters at one moment, or their difference over a window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionCounts {
    /// Requests answered or failed.
    pub requests: u64,
    /// Of which 5xx.
    pub server_errors: u64,
    /// Requests per latency bucket ([`bucket_upper_ms`]); empty: none yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<u64>,
}

impl VersionCounts {
    /// What happened since `earlier` (counters only grow; a restarted
    /// gateway's are taken as they are).
    pub fn since(&self, earlier: &VersionCounts) -> VersionCounts {
        if self.requests < earlier.requests {
            return self.clone();
        }
        VersionCounts {
            requests: self.requests - earlier.requests,
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            latency: self
                .latency
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(earlier.latency.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }
}

/// A version of a Service: namespace, Service name, version label.
pub type VersionKey = (String, String, String);

/// Every version's counters.
#[derive(Debug, Default)]
pub struct VersionTable {
    by_version: RwLock<HashMap<VersionKey, Arc<VersionStats>>>,
}

impl VersionTable {
    /// The counters of one version, created on first use.
    pub fn stats(&self, key: &VersionKey) -> Arc<VersionStats> {
        if let Ok(map) = self.by_version.read()
            && let Some(s) = map.get(key)
        {
            return s.clone();
        }
        match self.by_version.write() {
            Ok(mut map) => map.entry(key.clone()).or_default().clone(),
            Err(_) => Arc::new(VersionStats::default()),
        }
    }

    /// Every version's counters now.
    pub fn snapshot(&self) -> Vec<(VersionKey, VersionCounts)> {
        self.by_version
            .read()
            .map(|map| map.iter().map(|(k, s)| (k.clone(), s.counts())).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ten_percent_wide_and_hold_their_edges() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(0.01), 0);
        for ms in [0.0101, 0.5, 1.0, 7.3, 250.0, 499.9, 500.0, 10_000.0] {
            let i = bucket_of(ms);
            assert!(
                bucket_lower_ms(i) < ms && ms <= bucket_upper_ms(i),
                "{ms} in bucket {i}"
            );
            assert!(bucket_upper_ms(i) / bucket_lower_ms(i).max(0.01) <= 1.1 + 1e-9);
        }
        assert_eq!(bucket_of(1e12), LATENCY_BUCKETS - 1);
        assert!(bucket_upper_ms(LATENCY_BUCKETS - 1).is_infinite());
    }

    #[test]
    fn counts_are_read_and_differenced() {
        let s = VersionStats::default();
        s.record(1.0, false);
        let before = s.counts();
        s.record(2.0, true);
        s.record(2.0, false);
        let window = s.counts().since(&before);
        assert_eq!((window.requests, window.server_errors), (2, 1));
        assert_eq!(window.latency[bucket_of(2.0)], 2);
        assert_eq!(window.latency.iter().sum::<u64>(), 2);
        let table = VersionTable::default();
        let key = ("default".to_owned(), "my-app".to_owned(), "v2".to_owned());
        table.stats(&key).record(3.0, false);
        table.stats(&key).record(3.0, false);
        assert_eq!(table.snapshot()[0].1.requests, 2);
    }
}
