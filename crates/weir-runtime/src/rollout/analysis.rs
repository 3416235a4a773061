//! Judging a canary from what the gateway counted since its step began:
//! each goal gives Pass, Fail or Inconclusive, never a guess. A rate or a
//! percentile is compared through its confidence interval — Pass when the
//! whole interval is on the right side of the threshold, Fail when the
//! whole interval is on the wrong side, Inconclusive otherwise — so no
//! requests never pass, and a handful never fail. Each verdict carries its
//! numbers and how many requests a conclusion would need if what was seen
//! so far continued.
//!
//! - Success rate: the Clopper–Pearson interval of the non-5xx share
//!   (conservative at small n; Wilson's would fail 2 successes of 3
//!   against 99 %).
//! - Success rate relative to the stable: the interval of the stable's
//!   share minus the canary's (`weir_load::stats::difference_interval`:
//!   both exact intervals at 1 − (1 − confidence)/2), in percentage points,
//!   against the drop allowed.
//! - Latency percentile: the distribution-free order-statistic interval
//!   (ranks from the binomial, `weir_load::stats::quantile_ranks`) read
//!   off the gateway's 10 %-wide latency buckets: the lower bound is the
//!   lower edge of the bucket holding the lower rank, the upper bound the
//!   upper edge of the bucket holding the upper rank.
//! - Latency relative to the stable: both versions' intervals, each at
//!   1 − (1 − confidence)/2 (Bonferroni: jointly at least `confidence`),
//!   give the ratio's interval [canary low / stable high, canary high /
//!   stable low].

use serde::{Deserialize, Serialize};
use weir_api::rollout::AnalysisSpec;
use weir_gateway::version_stats::{VersionCounts, bucket_lower_ms, bucket_upper_ms};
use weir_load::stats::{clopper_pearson, difference_interval, quantile_ranks};

/// A goal's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The whole interval meets the goal.
    Pass,
    /// The whole interval misses it.
    Fail,
    /// Not enough requests to say.
    Inconclusive,
}

/// One goal's verdict and its numbers, as the status shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Judgement {
    /// `success-rate`, `success-rate-drop`, `latency-p99`, `latency-p99-ratio`.
    pub metric: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Requests judged.
    pub n: u64,
    /// The point estimate (percent for rates, ms or a ratio for latency).
    pub estimate: Option<f64>,
    /// The interval; `None` on a side where it is unbounded.
    pub interval: (Option<f64>, Option<f64>),
    /// The threshold it is compared with.
    pub threshold: f64,
    /// Requests in all a conclusion would need, were the rest like these.
    pub requests_needed: Option<u64>,
}

/// The spec's goals with their defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Goals {
    /// Interval confidence.
    pub confidence: f64,
    /// Least non-5xx share, percent.
    pub success_min: Option<f64>,
    /// Most percentage points the canary's non-5xx share may be below the
    /// stable's.
    pub success_max_drop: Option<f64>,
    /// Percentile (0–100), its bound in ms, its bound relative to the stable.
    pub latency: Option<(f64, Option<f64>, Option<f64>)>,
}

impl Goals {
    /// Reads `spec.analysis`.
    pub fn of(spec: &AnalysisSpec) -> Self {
        Self {
            confidence: spec
                .confidence
                .unwrap_or(weir_api::rollout::defaults::CONFIDENCE),
            success_min: spec.success_rate.as_ref().and_then(|s| s.min),
            success_max_drop: spec
                .success_rate
                .as_ref()
                .and_then(|s| s.max_drop_from_stable),
            latency: spec
                .latency
                .as_ref()
                .map(|l| (l.percentile, l.max_ms, l.max_ratio_to_stable)),
        }
    }
}

/// Every goal's verdict for the canary (and the stable, for ratios).
pub fn judge(goals: &Goals, canary: &VersionCounts, stable: &VersionCounts) -> Vec<Judgement> {
    let mut out = Vec::new();
    if let Some(min) = goals.success_min {
        out.push(with_needed(canary, |c| {
            success_rate(min, goals.confidence, c)
        }));
    }
    if let Some(max_drop) = goals.success_max_drop {
        out.push(with_needed(canary, |c| {
            success_rate_drop(max_drop, goals.confidence, c, stable)
        }));
    }
    if let Some((percentile, max_ms, max_ratio)) = goals.latency {
        let q = percentile / 100.0;
        if let Some(max) = max_ms {
            out.push(with_needed(canary, |c| {
                latency(q, max, goals.confidence, c)
            }));
        }
        if let Some(max) = max_ratio {
            out.push(with_needed(canary, |c| {
                latency_ratio(q, max, goals.confidence, c, stable)
            }));
        }
    }
    out
}

/// The combined verdict: Fail if any goal fails, Pass if all pass.
pub fn overall(judgements: &[Judgement]) -> Verdict {
    if judgements.iter().any(|j| j.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if !judgements.is_empty() && judgements.iter().all(|j| j.verdict == Verdict::Pass) {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    }
}

fn verdict_of(
    interval: (Option<f64>, Option<f64>),
    threshold: f64,
    higher_is_better: bool,
) -> Verdict {
    let (lo, hi) = interval;
    if higher_is_better {
        match (lo, hi) {
            (Some(lo), _) if lo >= threshold => Verdict::Pass,
            (_, Some(hi)) if hi < threshold => Verdict::Fail,
            _ => Verdict::Inconclusive,
        }
    } else {
        match (lo, hi) {
            (_, Some(hi)) if hi <= threshold => Verdict::Pass,
            (Some(lo), _) if lo > threshold => Verdict::Fail,
            _ => Verdict::Inconclusive,
        }
    }
}

fn success_rate(min_percent: f64, confidence: f64, c: &VersionCounts) -> Judgement {
    let n = c.requests;
    let ok = n.saturating_sub(c.server_errors);
    let (lo, hi) = clopper_pearson(ok, n, confidence);
    let interval = if n == 0 {
        (None, None)
    } else {
        (Some(lo * 100.0), Some(hi * 100.0))
    };
    Judgement {
        metric: "success-rate".into(),
        verdict: verdict_of(interval, min_percent, true),
        n,
        estimate: (n > 0).then(|| ok as f64 / n as f64 * 100.0),
        interval,
        threshold: min_percent,
        requests_needed: None,
    }
}

fn success_rate_drop(
    max_drop: f64,
    confidence: f64,
    canary: &VersionCounts,
    stable: &VersionCounts,
) -> Judgement {
    let ok = |c: &VersionCounts| c.requests.saturating_sub(c.server_errors);
    let (lo, hi) = difference_interval(
        ok(stable),
        stable.requests,
        ok(canary),
        canary.requests,
        confidence,
    );
    let known = canary.requests > 0 && stable.requests > 0;
    let interval = if known {
        (Some(lo * 100.0), Some(hi * 100.0))
    } else {
        (None, None)
    };
    let share = |c: &VersionCounts| ok(c) as f64 / c.requests as f64 * 100.0;
    Judgement {
        metric: "success-rate-drop".into(),
        verdict: verdict_of(interval, max_drop, false),
        n: canary.requests,
        estimate: known.then(|| share(stable) - share(canary)),
        interval,
        threshold: max_drop,
        requests_needed: None,
    }
}

/// The interval of the `q` quantile from bucket counts, in ms.
fn quantile_interval(q: f64, confidence: f64, c: &VersionCounts) -> (Option<f64>, Option<f64>) {
    let n: u64 = c.latency.iter().sum();
    let (l, u) = quantile_ranks(n, q, confidence);
    let bucket_of_rank = |rank: u64| {
        let mut seen = 0;
        c.latency.iter().position(|&k| {
            seen += k;
            seen >= rank
        })
    };
    let lo = l.and_then(bucket_of_rank).map(bucket_lower_ms);
    let hi = u
        .and_then(bucket_of_rank)
        .map(bucket_upper_ms)
        .filter(|v| v.is_finite());
    (lo, hi)
}

/// The bucket holding the `q` quantile's rank: its upper edge, in ms.
fn quantile_estimate(q: f64, c: &VersionCounts) -> Option<f64> {
    let n: u64 = c.latency.iter().sum();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as u64).max(1);
    let mut seen = 0;
    c.latency
        .iter()
        .position(|&k| {
            seen += k;
            seen >= rank
        })
        .map(bucket_upper_ms)
}

fn latency(q: f64, max_ms: f64, confidence: f64, c: &VersionCounts) -> Judgement {
    let interval = quantile_interval(q, confidence, c);
    Judgement {
        metric: format!("latency-p{}", q * 100.0),
        verdict: verdict_of(interval, max_ms, false),
        n: c.latency.iter().sum(),
        estimate: quantile_estimate(q, c),
        interval,
        threshold: max_ms,
        requests_needed: None,
    }
}

fn latency_ratio(
    q: f64,
    max_ratio: f64,
    confidence: f64,
    canary: &VersionCounts,
    stable: &VersionCounts,
) -> Judgement {
    let each = 1.0 - (1.0 - confidence) / 2.0;
    let (clo, chi) = quantile_interval(q, each, canary);
    let (slo, shi) = quantile_interval(q, each, stable);
    let lower = match (clo, shi) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        _ => None,
    };
    let upper = match (chi, slo) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        _ => None,
    };
    let estimate = match (quantile_estimate(q, canary), quantile_estimate(q, stable)) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        _ => None,
    };
    Judgement {
        metric: format!("latency-p{}-ratio", q * 100.0),
        verdict: verdict_of((lower, upper), max_ratio, false),
        n: canary.latency.iter().sum(),
        estimate,
        interval: (lower, upper),
        threshold: max_ratio,
        requests_needed: None,
    }
}

/// Adds how many requests an Inconclusive verdict would need, were more
/// of the canary's requests like these: the least n (up to 10⁷) at which
/// the same proportions conclude.
fn with_needed(canary: &VersionCounts, judge: impl Fn(&VersionCounts) -> Judgement) -> Judgement {
    let mut j = judge(canary);
    if j.verdict != Verdict::Inconclusive || canary.requests == 0 {
        return j;
    }
    let scaled = |n: u64| {
        let f = n as f64 / canary.requests as f64;
        VersionCounts {
            requests: n,
            server_errors: (canary.server_errors as f64 * f).round() as u64,
            latency: canary
                .latency
                .iter()
                .map(|&k| (k as f64 * f).round() as u64)
                .collect(),
        }
    };
    let concludes = |n: u64| judge(&scaled(n)).verdict != Verdict::Inconclusive;
    let mut hi = canary.requests.max(1) * 2;
    while !concludes(hi) {
        if hi >= 10_000_000 {
            return j;
        }
        hi *= 2;
    }
    let mut lo = canary.requests;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if concludes(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    j.requests_needed = Some(hi);
    j
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_gateway::version_stats::{LATENCY_BUCKETS, bucket_of};

    fn counts(requests: u64, errors: u64, latency_ms: f64) -> VersionCounts {
        let mut latency = vec![0; LATENCY_BUCKETS];
        latency[bucket_of(latency_ms)] = requests;
        VersionCounts {
            requests,
            server_errors: errors,
            latency,
        }
    }

    fn goals(success: Option<f64>, latency: Option<(f64, Option<f64>, Option<f64>)>) -> Goals {
        Goals {
            confidence: 0.95,
            success_min: success,
            success_max_drop: None,
            latency,
        }
    }

    #[test]
    fn verdicts_never_guess() {
        let g = goals(Some(99.0), None);
        let stable = counts(1000, 0, 1.0);
        // No requests: never a Pass.
        let j = &judge(&g, &counts(0, 0, 1.0), &stable)[0];
        assert_eq!(j.verdict, Verdict::Inconclusive);
        assert_eq!((j.n, j.estimate, j.interval), (0, None, (None, None)));
        // One error in three: never a Fail.
        let j = &judge(&g, &counts(3, 1, 1.0), &stable)[0];
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        // A canary at 5 % errors against a 99 % minimum fails within a few hundred requests.
        let first_fail = (1..=500)
            .find(|&n| judge(&g, &counts(n, n / 20, 1.0), &stable)[0].verdict == Verdict::Fail)
            .unwrap();
        assert!(first_fail <= 300, "failed only at {first_fail}");
        // As good as the stable (no errors): passes once n suffices, and the
        // status said how many that would be.
        let early = &judge(&g, &counts(100, 0, 1.0), &stable)[0];
        assert_eq!(early.verdict, Verdict::Inconclusive);
        let needed = early.requests_needed.unwrap();
        assert_eq!(
            judge(&g, &counts(needed, 0, 1.0), &stable)[0].verdict,
            Verdict::Pass
        );
        assert_eq!(
            judge(&g, &counts(needed - 1, 0, 1.0), &stable)[0].verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn the_success_rate_against_the_stable_is_a_difference_of_exact_intervals() {
        let g = Goals {
            success_max_drop: Some(1.0),
            ..goals(None, None)
        };
        let judged =
            |canary: VersionCounts, stable: VersionCounts| judge(&g, &canary, &stable)[0].clone();
        // Nothing on either side: no verdict, no numbers.
        let j = judged(counts(0, 0, 1.0), counts(1000, 0, 1.0));
        assert_eq!((j.verdict, j.estimate), (Verdict::Inconclusive, None));
        let j = judged(counts(1000, 0, 1.0), counts(0, 0, 1.0));
        assert_eq!(j.verdict, Verdict::Inconclusive);
        // One error in three against a clean stable: never a Fail.
        let j = judged(counts(3, 1, 1.0), counts(1000, 0, 1.0));
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        // 5 % errors where the stable has none fails within a few hundred.
        let first_fail = (10..=1000)
            .step_by(10)
            .find(|&n| {
                judged(counts(n, n / 20, 1.0), counts(9 * n, 0, 1.0)).verdict == Verdict::Fail
            })
            .unwrap();
        assert!(first_fail <= 300, "failed only at {first_fail}");
        // As bad as the stable (both 2 % errors) passes a 1-point drop once
        // n suffices, at the number the status announced.
        let early = judged(counts(100, 2, 1.0), counts(900, 18, 1.0));
        assert_eq!(early.verdict, Verdict::Inconclusive);
        let needed = early.requests_needed.unwrap();
        let scaled = |n: u64| counts(n, (2 * n + 50) / 100, 1.0);
        assert_eq!(
            judged(scaled(needed), counts(900, 18, 1.0)).verdict,
            Verdict::Pass
        );
        // An absolute minimum the stable itself misses would fail both;
        // the relative goal passes a canary no worse than it.
        let j = judged(counts(20_000, 400, 1.0), counts(20_000, 400, 1.0));
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        assert_eq!(j.estimate, Some(0.0));
    }

    #[test]
    fn latency_percentiles_are_judged_through_their_interval() {
        let g = goals(None, Some((99.0, Some(500.0), None)));
        let stable = counts(1000, 0, 1.0);
        assert_eq!(
            judge(&g, &counts(1000, 0, 2.0), &stable)[0].verdict,
            Verdict::Pass
        );
        assert_eq!(
            judge(&g, &counts(1000, 0, 900.0), &stable)[0].verdict,
            Verdict::Fail
        );
        // Too few for the 99th percentile's upper rank: not a Pass yet.
        let few = &judge(&g, &counts(20, 0, 2.0), &stable)[0];
        assert_eq!(few.verdict, Verdict::Inconclusive);
        assert_eq!(few.interval.1, None);
        // 2 % slow requests: the p99 is among them.
        let mut mixed = counts(1000, 0, 2.0);
        mixed.latency[bucket_of(2.0)] = 980;
        mixed.latency[bucket_of(800.0)] = 20;
        assert_eq!(judge(&g, &mixed, &stable)[0].verdict, Verdict::Fail);
    }

    #[test]
    fn latency_against_the_stable_is_a_ratio_of_intervals() {
        let g = goals(None, Some((99.0, None, Some(1.5))));
        let stable = counts(5000, 0, 10.0);
        assert_eq!(
            judge(&g, &counts(5000, 0, 10.0), &stable)[0].verdict,
            Verdict::Pass
        );
        assert_eq!(
            judge(&g, &counts(5000, 0, 30.0), &stable)[0].verdict,
            Verdict::Fail
        );
        assert_eq!(
            judge(&g, &counts(5000, 0, 10.0), &counts(0, 0, 1.0))[0].verdict,
            Verdict::Inconclusive,
            "no stable requests, no ratio"
        );
    }

    #[test]
    fn the_overall_verdict_fails_on_any_fail_and_passes_only_on_all() {
        let j = |v| Judgement {
            metric: "m".into(),
            verdict: v,
            n: 1,
            estimate: None,
            interval: (None, None),
            threshold: 0.0,
            requests_needed: None,
        };
        use Verdict::*;
        assert_eq!(overall(&[j(Pass), j(Pass)]), Pass);
        assert_eq!(overall(&[j(Pass), j(Inconclusive)]), Inconclusive);
        assert_eq!(overall(&[j(Inconclusive), j(Fail)]), Fail);
        assert_eq!(overall(&[]), Inconclusive);
    }
}
