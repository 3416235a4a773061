//! What rollout analysis reads: for each Service version, the requests
//! its pods answered (or failed: 5xx, including the gateway's own 503/504
//! for a destination that broke), and their latencies in a histogram that
//! carries its bucket edges. The gateway counts into weir's fine log-scale
//! buckets (10 % wide from 0.01 ms), fine enough that a percentile and a
//! ratio of percentiles can be judged; a histogram read from Prometheus
//! carries the edges it was exported with (Envoy's 19 by default). Counted
//! beside the Istio metrics, by the same recording, with atomics; read as
//! snapshots (no parsing of the metrics text). Here rather than in the
//! gateway so the rollout engine, which judges these counts, needs no
//! data plane.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// Buckets of weir's fine histogram.
pub const LATENCY_BUCKETS: usize = 200;
/// The first bucket's upper edge, milliseconds.
const FIRST_EDGE_MS: f64 = 0.01;
/// Each bucket's upper edge over the one before.
const GROWTH: f64 = 1.1;

/// Envoy's and Istio's default duration buckets (upper edges, ms): what a
/// Prometheus scraping a mesh holds (`istio_request_duration_milliseconds`),
/// and what weir's own exposition uses.
pub const ENVOY_DURATION_EDGES_MS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// The upper edge of fine bucket `i`, milliseconds (the last is unbounded).
pub fn bucket_upper_ms(i: usize) -> f64 {
    if i + 1 >= LATENCY_BUCKETS {
        return f64::INFINITY;
    }
    FIRST_EDGE_MS * GROWTH.powi(i as i32)
}

/// The fine bucket a latency falls in.
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

/// Where a histogram's buckets end.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BucketEdges {
    /// weir's fine buckets ([`bucket_upper_ms`]), as the gateway counts.
    #[default]
    Fine,
    /// These finite upper edges in ms, ascending; one more bucket above
    /// the last is unbounded (Prometheus' `le`, without `+Inf`).
    Explicit(Vec<f64>),
}

impl BucketEdges {
    /// How many buckets (the unbounded one included).
    pub fn len(&self) -> usize {
        match self {
            BucketEdges::Fine => LATENCY_BUCKETS,
            BucketEdges::Explicit(edges) => edges.len() + 1,
        }
    }

    /// Whether there are no finite edges (one unbounded bucket).
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }

    /// The upper edge of bucket `i`, ms; infinite for the last.
    pub fn upper_ms(&self, i: usize) -> f64 {
        match self {
            BucketEdges::Fine => bucket_upper_ms(i),
            BucketEdges::Explicit(edges) => edges.get(i).copied().unwrap_or(f64::INFINITY),
        }
    }

    /// The lower edge of bucket `i`, ms (0 for the first).
    pub fn lower_ms(&self, i: usize) -> f64 {
        if i == 0 { 0.0 } else { self.upper_ms(i - 1) }
    }

    /// The bucket a latency falls in.
    pub fn bucket_of(&self, ms: f64) -> usize {
        match self {
            BucketEdges::Fine => bucket_of(ms),
            BucketEdges::Explicit(edges) => edges.partition_point(|&e| e < ms),
        }
    }

    /// The finite upper edges, ascending.
    pub fn finite_edges(&self) -> Vec<f64> {
        (0..self.len().saturating_sub(1))
            .map(|i| self.upper_ms(i))
            .collect()
    }
}

/// Latencies counted per bucket, with the buckets' edges.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyHistogram {
    /// Where the buckets end.
    #[serde(default)]
    pub edges: BucketEdges,
    /// Requests per bucket; empty: none yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<u64>,
}

impl LatencyHistogram {
    /// An empty histogram over `edges`.
    pub fn empty(edges: BucketEdges) -> Self {
        let counts = vec![0; edges.len()];
        Self { edges, counts }
    }

    /// Counts `n` requests of `ms` each.
    pub fn add(&mut self, ms: f64, n: u64) {
        if self.counts.len() < self.edges.len() {
            self.counts.resize(self.edges.len(), 0);
        }
        let i = self.edges.bucket_of(ms);
        self.counts[i] += n;
    }

    /// Requests counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Requests in buckets `0..=i`: those that took at most `upper_ms(i)`.
    pub fn at_most(&self, i: usize) -> u64 {
        self.counts.iter().take(i + 1).sum()
    }
}

/// One version's live counters.
#[derive(Debug)]
pub struct VersionStats {
    requests: AtomicU64,
    failures: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for VersionStats {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency: [const { AtomicU64::new(0) }; LATENCY_BUCKETS],
        }
    }
}

impl VersionStats {
    /// Counts one request that took `ms` to its end; `failed` as
    /// [`VersionCounts::failures`] counts it.
    pub fn record(&self, ms: f64, failed: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket_of(ms)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn counts(&self) -> VersionCounts {
        VersionCounts {
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            latency: LatencyHistogram {
                edges: BucketEdges::Fine,
                counts: self
                    .latency
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .collect(),
            },
        }
    }
}

/// A version's counters at one moment, or their difference over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionCounts {
    /// Requests answered or failed.
    pub requests: u64,
    /// Of which failed: answered 5xx, never answered before the client
    /// gave up (`0`/`DC`), or cut short by the upstream after the head
    /// (`UC`).
    pub failures: u64,
    /// Their latencies.
    #[serde(default)]
    pub latency: LatencyHistogram,
}

impl VersionCounts {
    /// These and `other` together (two rules' counts of one version);
    /// histograms of different edges keep this one's.
    pub fn plus(&self, other: &VersionCounts) -> VersionCounts {
        let mut sum = self.clone();
        sum.requests += other.requests;
        sum.failures += other.failures;
        if sum.latency.edges == other.latency.edges {
            for (i, c) in other.latency.counts.iter().enumerate() {
                if let Some(mine) = sum.latency.counts.get_mut(i) {
                    *mine += c;
                }
            }
        }
        sum
    }

    /// What happened since `earlier` (counters only grow; a restarted
    /// gateway's are taken as they are).
    pub fn since(&self, earlier: &VersionCounts) -> VersionCounts {
        if self.requests < earlier.requests || self.latency.edges != earlier.latency.edges {
            return self.clone();
        }
        VersionCounts {
            requests: self.requests - earlier.requests,
            failures: self.failures.saturating_sub(earlier.failures),
            latency: LatencyHistogram {
                edges: self.latency.edges.clone(),
                counts: self
                    .latency
                    .counts
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        c.saturating_sub(earlier.latency.counts.get(i).copied().unwrap_or(0))
                    })
                    .collect(),
            },
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
        let fine = BucketEdges::Fine;
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(0.01), 0);
        for ms in [0.0101, 0.5, 1.0, 7.3, 250.0, 499.9, 500.0, 10_000.0] {
            let i = bucket_of(ms);
            assert!(
                fine.lower_ms(i) < ms && ms <= fine.upper_ms(i),
                "{ms} in bucket {i}"
            );
            assert!(fine.upper_ms(i) / fine.lower_ms(i).max(0.01) <= 1.1 + 1e-9);
        }
        assert_eq!(bucket_of(1e12), LATENCY_BUCKETS - 1);
        assert!(bucket_upper_ms(LATENCY_BUCKETS - 1).is_infinite());
    }

    #[test]
    fn explicit_edges_bucket_as_prometheus_le_does() {
        let envoy = BucketEdges::Explicit(ENVOY_DURATION_EDGES_MS.to_vec());
        assert_eq!(envoy.len(), 20);
        // `le` is inclusive: 1 ms is in the bucket ending at 1.
        for (ms, bucket, upper) in [
            (0.0, 0, 0.5),
            (0.5, 0, 0.5),
            (0.51, 1, 1.0),
            (1.0, 1, 1.0),
            (4.9, 2, 5.0),
            (3_600_000.0, 18, 3_600_000.0),
        ] {
            assert_eq!(envoy.bucket_of(ms), bucket, "{ms}");
            assert_eq!(envoy.upper_ms(bucket), upper);
        }
        assert_eq!(envoy.bucket_of(1e9), 19);
        assert!(envoy.upper_ms(19).is_infinite());
        assert_eq!(envoy.lower_ms(2), 1.0);
        let mut h = LatencyHistogram::empty(envoy);
        h.add(0.7, 3);
        h.add(20.0, 1);
        assert_eq!((h.total(), h.at_most(1), h.at_most(3)), (4, 3, 3));
        assert_eq!(h.at_most(4), 4);
    }

    #[test]
    fn counts_are_read_and_differenced() {
        let s = VersionStats::default();
        s.record(1.0, false);
        let before = s.counts();
        s.record(2.0, true);
        s.record(2.0, false);
        let window = s.counts().since(&before);
        assert_eq!((window.requests, window.failures), (2, 1));
        assert_eq!(window.latency.counts[bucket_of(2.0)], 2);
        assert_eq!(window.latency.total(), 2);
        let table = VersionTable::default();
        let key = ("default".to_owned(), "my-app".to_owned(), "v2".to_owned());
        table.stats(&key).record(3.0, false);
        table.stats(&key).record(3.0, false);
        assert_eq!(table.snapshot()[0].1.requests, 2);
    }
}
