//! Per-version traffic from two scrapes of a Prometheus exposition: the
//! gateway's Istio metrics or the pods' own `http_requests_total` —
//! request rate, share, p99 latency interpolated within the histogram's
//! buckets, and error rate over the interval between them.

use std::collections::BTreeMap;

use prometheus_parse::{Scrape, Value as PromValue};

use super::top_snapshot::VersionRow;

/// Per version: (requests, 5xx answers, cumulative duration buckets by upper bound in µs).
type Counts = BTreeMap<String, (f64, f64, BTreeMap<u64, f64>)>;

/// How one exposition names its per-version request counts.
struct Dialect {
    /// The label naming the version.
    version: &'static str,
    /// The request counter.
    requests: &'static str,
    /// The label with the status code.
    code: &'static str,
    /// The latency histogram.
    duration: &'static str,
    /// Microseconds in the histogram's unit.
    micros_per_unit: f64,
}

/// The gateway's: Istio's standard metrics.
const ISTIO: Dialect = Dialect {
    version: "destination_version",
    requests: "istio_requests_total",
    code: "response_code",
    duration: "istio_request_duration_milliseconds",
    micros_per_unit: 1_000.0,
};

/// An application's own (my-app's, the Go app's): `http_requests_total` by
/// `version` and `code`, and `request_duration_seconds`.
const APP: Dialect = Dialect {
    version: "version",
    requests: "http_requests_total",
    code: "code",
    duration: "request_duration_seconds",
    micros_per_unit: 1_000_000.0,
};

/// Per version: (requests, 5xx, duration buckets by `le` in µs).
fn counts(text: &str, dialect: &Dialect) -> Counts {
    let mut out = Counts::new();
    let Ok(scrape) = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))) else {
        return out;
    };
    for s in &scrape.samples {
        let Some(version) = s.labels.get(dialect.version) else {
            continue;
        };
        let entry = out.entry(version.to_owned()).or_default();
        match &s.value {
            PromValue::Counter(v) | PromValue::Untyped(v) if s.metric == dialect.requests => {
                entry.0 += v;
                if s.labels
                    .get(dialect.code)
                    .is_some_and(|c| c.starts_with('5'))
                {
                    entry.1 += v;
                }
            }
            PromValue::Histogram(buckets) if s.metric == dialect.duration => {
                for b in buckets {
                    let le = if b.less_than.is_finite() {
                        (b.less_than * dialect.micros_per_unit) as u64
                    } else {
                        u64::MAX
                    };
                    *entry.2.entry(le).or_default() += b.count;
                }
            }
            _ => {}
        }
    }
    out
}

/// Prometheus' `histogram_quantile` over cumulative buckets keyed by their
/// upper bound in µs (`u64::MAX` for +Inf): linear interpolation within
/// the bucket, in milliseconds.
fn quantile(q: f64, buckets: &BTreeMap<u64, f64>) -> Option<f64> {
    let bounds: Vec<(f64, f64)> = buckets
        .iter()
        .map(|(le, c)| {
            (
                if *le == u64::MAX {
                    f64::INFINITY
                } else {
                    *le as f64 / 1000.0
                },
                *c,
            )
        })
        .collect();
    let total = bounds.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (upper, cumulative) in bounds {
        if cumulative >= rank {
            if upper.is_infinite() {
                return Some(lower);
            }
            let in_bucket = cumulative - below;
            let fraction = if in_bucket > 0.0 {
                (rank - below) / in_bucket
            } else {
                1.0
            };
            return Some(lower + (upper - lower) * fraction);
        }
        (lower, below) = (upper, cumulative);
    }
    None
}

/// `after − before` per version; a counter that went down was reset (its
/// process restarted), so all of `after` is new, as Prometheus' `rate` reads it.
fn delta(before: &Counts, after: &Counts) -> Counts {
    let since = |now: f64, then: f64| if now >= then { now - then } else { now };
    after
        .iter()
        .map(|(v, (req, err, buckets))| {
            let (req0, err0, buckets0) = before.get(v).cloned().unwrap_or_default();
            let db = buckets
                .iter()
                .map(|(le, c)| (*le, since(*c, buckets0.get(le).copied().unwrap_or(0.0))))
                .collect();
            (v.clone(), (since(*req, req0), since(*err, err0), db))
        })
        .collect()
}

/// Differences between two scrapes of the gateway, `seconds` apart.
pub fn version_rows(before: &str, after: &str, seconds: f64) -> Vec<VersionRow> {
    rows(
        &delta(&counts(before, &ISTIO), &counts(after, &ISTIO)),
        seconds,
    )
}

/// Differences between two scrapes of every pod (`(pod, text)`), `seconds`
/// apart, summed per version: a pod's counters are compared with its own,
/// so pods that start or stop between the scrapes count what they served.
pub fn app_version_rows(
    before: &[(String, String)],
    after: &[(String, String)],
    seconds: f64,
) -> Vec<VersionRow> {
    let mut sum = Counts::new();
    for (pod, text) in after {
        let then = before
            .iter()
            .find(|(p, _)| p == pod)
            .map(|(_, t)| counts(t, &APP))
            .unwrap_or_default();
        for (version, (req, err, buckets)) in delta(&then, &counts(text, &APP)) {
            let entry = sum.entry(version).or_default();
            entry.0 += req;
            entry.1 += err;
            for (le, c) in buckets {
                *entry.2.entry(le).or_default() += c;
            }
        }
    }
    rows(&sum, seconds)
}

/// Rows from per-version deltas over `seconds`.
fn rows(deltas: &Counts, seconds: f64) -> Vec<VersionRow> {
    let deltas: Vec<(String, f64, f64, BTreeMap<u64, f64>)> = deltas
        .iter()
        .filter(|(v, _)| v.as_str() != "unknown")
        .map(|(v, (req, err, buckets))| (v.clone(), *req, *err, buckets.clone()))
        .collect();
    let total: f64 = deltas.iter().map(|d| d.1).sum();
    deltas
        .into_iter()
        .map(|(version, req, err, buckets)| VersionRow {
            version,
            rps: req / seconds.max(1e-9),
            share: if total > 0.0 {
                req * 100.0 / total
            } else {
                0.0
            },
            p99_ms: quantile(0.99, &buckets),
            error_rate: if req > 0.0 { err * 100.0 / req } else { 0.0 },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// my-app's exposition, as a pod serves it.
    fn app(version: &str, ok: u64, errors: u64, fast: u64) -> String {
        format!(
            "# TYPE http_requests_total counter\n\
             http_requests_total{{code=\"200\",method=\"get\",version=\"{version}\"}} {ok}\n\
             http_requests_total{{code=\"500\",method=\"get\",version=\"{version}\"}} {errors}\n\
             # TYPE request_duration_seconds histogram\n\
             request_duration_seconds_bucket{{version=\"{version}\",le=\"0.001\"}} {fast}\n\
             request_duration_seconds_bucket{{version=\"{version}\",le=\"0.01\"}} {all}\n\
             request_duration_seconds_bucket{{version=\"{version}\",le=\"+Inf\"}} {all}\n\
             request_duration_seconds_sum{{version=\"{version}\"}} 0.1\n\
             request_duration_seconds_count{{version=\"{version}\"}} {all}\n",
            all = ok + errors
        )
    }

    #[test]
    fn pods_rates_are_summed_per_version_pod_by_pod() {
        let pod = |name: &str, text: String| (name.to_owned(), text);
        let before = vec![
            pod("v1-a", app("v1.0.0", 100, 0, 100)),
            pod("v1-b", app("v1.0.0", 50, 0, 50)),
            pod("v1-gone", app("v1.0.0", 70, 0, 70)),
        ];
        let after = vec![
            // +20 each on a and b; b restarted (its counter went down: 5 new).
            pod("v1-a", app("v1.0.0", 120, 0, 120)),
            pod("v1-b", app("v1.0.0", 5, 0, 5)),
            // A pod that started between the scrapes: all of its count.
            pod("v2-new", app("v2.0.0", 8, 2, 0)),
        ];
        let rows = app_version_rows(&before, &after, 2.0);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let v1 = &rows[0];
        assert_eq!(v1.version, "v1.0.0");
        assert!((v1.rps - 12.5).abs() < 1e-9, "{v1:?}");
        assert!((v1.share - 25.0 / 35.0 * 100.0).abs() < 1e-9, "{v1:?}");
        assert_eq!(v1.error_rate, 0.0);
        assert!(v1.p99_ms.is_some_and(|p| p <= 1.0), "{v1:?}");
        let v2 = &rows[1];
        assert!((v2.rps - 5.0).abs() < 1e-9, "{v2:?}");
        assert!((v2.error_rate - 20.0).abs() < 1e-9, "{v2:?}");
        assert!(v2.p99_ms.is_some_and(|p| p > 1.0 && p <= 10.0), "{v2:?}");
        // Nothing new: zero rates, not negative ones.
        let idle = app_version_rows(&after, &after, 1.0);
        assert!(idle.iter().all(|r| r.rps == 0.0), "{idle:?}");
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        let buckets: BTreeMap<u64, f64> = [(1000, 50.0), (5000, 100.0), (u64::MAX, 100.0)].into();
        assert_eq!(quantile(0.5, &buckets), Some(1.0));
        let p99 = quantile(0.99, &buckets).unwrap();
        assert!((p99 - 4.92).abs() < 1e-9, "{p99}");
    }
}
