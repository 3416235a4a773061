//! The result of a load run, for people (text) and scripts (JSON).

use std::collections::BTreeMap;

use serde::Serialize;

/// Latency percentiles, milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// What a load run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Requests answered (any status).
    pub requests: u64,
    /// Requests that got no answer (connect errors, resets, timeouts).
    pub errors: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Answers per second.
    pub requests_per_second: f64,
    /// Latency of answered requests (from their scheduled start at a fixed rate).
    pub latency_ms: Latency,
    /// Answers by status code.
    pub status: BTreeMap<u16, u64>,
    /// Answers by version (`Version:` in the body, or the chosen header).
    pub versions: BTreeMap<String, u64>,
    /// Failures by kind.
    pub error_kinds: BTreeMap<String, u64>,
}

impl Report {
    /// The report as text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "requests      {} in {:.2}s, {:.1} req/s, {} errors\n",
            self.requests, self.seconds, self.requests_per_second, self.errors
        );
        let l = &self.latency_ms;
        out.push_str(&format!(
            "latency (ms)  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}\n",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        ));
        let statuses: Vec<String> = self
            .status
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        out.push_str(&format!("status        {}\n", statuses.join("  ")));
        let answered: u64 = self.versions.values().sum();
        let versions: Vec<String> = self
            .versions
            .iter()
            .map(|(v, n)| {
                format!(
                    "{v}: {n} ({:.1}%)",
                    *n as f64 * 100.0 / answered.max(1) as f64
                )
            })
            .collect();
        out.push_str(&format!(
            "versions      {}\n",
            if versions.is_empty() {
                "-".into()
            } else {
                versions.join("  ")
            }
        ));
        if !self.error_kinds.is_empty() {
            let kinds: Vec<String> = self
                .error_kinds
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            out.push_str(&format!("errors        {}\n", kinds.join("  ")));
        }
        out
    }
}
