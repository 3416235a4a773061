//! Judging a canary (over 600 lines because each goal's judgement sits
//! beside the others it mirrors — verdict, confidence-sequence ends,
//! estimate — with their table tests, the last third) from what was counted
//! in its step's window: each goal gives Pass, Fail or Inconclusive, never
//! a guess, and each verdict keeps its error rate however often the growing
//! window is looked at ([`crate::sequential`]). Pass and Fail are held to
//! their own levels ([`crate::budget::Levels`]). Each verdict carries its
//! numbers and how many requests a conclusion would need if what was seen
//! so far went on.
//!
//! - Success rate (`min`): the non-5xx share's tests against `min`. The
//!   interval shown is the confidence sequence: its lower end at the Pass
//!   level, its upper end at the Fail level.
//! - Success rate against the stable (`maxDropFromStable`): the drop
//!   (stable's share − canary's, percentage points) is bounded by both
//!   versions' confidence sequences, each at half the level: Pass when
//!   stable's upper − canary's lower ≤ the drop allowed, Fail when stable's
//!   lower − canary's upper exceeds it.
//! - Latency percentile (`maxMs`): the q quantile is at most `x` exactly
//!   when the share of requests at most `x` is at least q, so it is the
//!   share test at a bucket edge — the largest edge at or below `maxMs` for
//!   Pass, the smallest at or above it for Fail (Howard & Ramdas,
//!   "Sequential estimation of quantiles", Bernoulli 2022). Reading bounds
//!   at every edge needs no correction: the counts at most `x` only grow
//!   with `x`, so any wrong bound implies the test at the one edge nearest
//!   the true quantile erred.
//! - Latency against the stable (`maxRatioToStable`): the canary's quantile
//!   bounds over the stable's, each at half the level.
//! - A goal the stable misses as well (a shared incident) does not Fail
//!   the canary: it is Inconclusive and marked, and the engine holds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weir_api::rollout::AnalysisSpec;
use weir_api::version_stats::{LatencyHistogram, VersionCounts};

use crate::budget::Levels;
use crate::sequential::{lower_bound, shows_above, shows_below, upper_bound};

/// A goal's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Verdict {
    /// The goal is met, at the Pass level.
    Pass,
    /// The goal is missed, at the Fail level.
    Fail,
    /// Not enough requests to say.
    Inconclusive,
}

/// One goal's verdict and its numbers, as the status shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Judgement {
    /// `success-rate`, `success-rate-drop`, `latency-p99`, `latency-p99-ratio`.
    pub metric: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Canary requests judged.
    pub n: u64,
    /// The point estimate (percent for rates, ms or a ratio for latency).
    pub estimate: Option<f64>,
    /// The confidence sequence's ends; `None` on a side where it is
    /// unbounded.
    pub interval: (Option<f64>, Option<f64>),
    /// The threshold it is compared with.
    pub threshold: f64,
    /// The levels its Pass and Fail are held to.
    pub levels: Levels,
    /// Requests in all a conclusion would need, were the rest like these.
    pub requests_needed: Option<u64>,
    /// The stable misses the goal too: a shared incident, not the canary's.
    #[serde(default)]
    pub shared_incident: bool,
}

/// The latency goal with its defaults applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyGoals {
    /// The quantile, 0–1.
    pub quantile: f64,
    /// Its bound in ms.
    pub max_ms: Option<f64>,
    /// Its bound relative to the stable's.
    pub max_ratio: Option<f64>,
}

/// The spec's goals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Goals {
    /// Least non-5xx share, percent.
    pub success_min: Option<f64>,
    /// Most percentage points the canary's non-5xx share may be below the
    /// stable's.
    pub success_max_drop: Option<f64>,
    /// A latency quantile's bounds.
    pub latency: Option<LatencyGoals>,
}

impl Goals {
    /// Reads `spec.analysis`.
    pub fn of(spec: &AnalysisSpec) -> Self {
        Self {
            success_min: spec.success_rate.as_ref().and_then(|s| s.min),
            success_max_drop: spec
                .success_rate
                .as_ref()
                .and_then(|s| s.max_drop_from_stable),
            latency: spec.latency.as_ref().map(|l| LatencyGoals {
                quantile: l.percentile / 100.0,
                max_ms: l.max_ms,
                max_ratio: l.max_ratio_to_stable,
            }),
        }
    }
}

/// Every goal's verdict for the canary's window (and the stable's, for
/// relative goals and shared incidents).
pub fn judge(
    goals: &Goals,
    levels: Levels,
    canary: &VersionCounts,
    stable: &VersionCounts,
) -> Vec<Judgement> {
    let mut out = Vec::new();
    if let Some(min) = goals.success_min {
        let judged = |c: &VersionCounts, full| success_rate(min, levels, c, stable, full);
        out.push(with_needed(
            canary,
            |c| judged(c, false).verdict,
            judged(canary, true),
        ));
    }
    if let Some(max_drop) = goals.success_max_drop {
        let sides = StableSides::of(stable, levels);
        let judged =
            |c: &VersionCounts, full| success_rate_drop(max_drop, levels, c, stable, &sides, full);
        out.push(with_needed(
            canary,
            |c| judged(c, false).verdict,
            judged(canary, true),
        ));
    }
    if let Some(l) = goals.latency {
        if let Some(max) = l.max_ms {
            let judged =
                |c: &VersionCounts, full| latency(l.quantile, max, levels, c, stable, full);
            out.push(with_needed(
                canary,
                |c| judged(c, false).verdict,
                judged(canary, true),
            ));
        }
        if let Some(max) = l.max_ratio {
            let judged =
                |c: &VersionCounts, full| latency_ratio(l.quantile, max, levels, c, stable, full);
            out.push(with_needed(
                canary,
                |c| judged(c, false).verdict,
                judged(canary, true),
            ));
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

/// Whether any goal is held by a shared incident.
pub fn shared_incident(judgements: &[Judgement]) -> bool {
    judgements.iter().any(|j| j.shared_incident)
}

fn good(c: &VersionCounts) -> u64 {
    c.requests.saturating_sub(c.failures)
}

/// The share test's verdict against `p0`, and whether a Fail is one the
/// stable shares.
fn share_verdict(
    (n, k): (u64, u64),
    p0: f64,
    levels: Levels,
    stable: (u64, u64),
) -> (Verdict, bool) {
    if shows_above(n, k, p0, levels.pass) {
        (Verdict::Pass, false)
    } else if shows_below(n, k, p0, levels.fail) {
        if shows_below(stable.0, stable.1, p0, levels.fail) {
            (Verdict::Inconclusive, true)
        } else {
            (Verdict::Fail, false)
        }
    } else {
        (Verdict::Inconclusive, false)
    }
}

fn success_rate(
    min_percent: f64,
    levels: Levels,
    c: &VersionCounts,
    stable: &VersionCounts,
    full: bool,
) -> Judgement {
    let (n, k) = (c.requests, good(c));
    let p0 = min_percent / 100.0;
    let (verdict, shared) = share_verdict((n, k), p0, levels, (stable.requests, good(stable)));
    let interval = if n == 0 || !full {
        (None, None)
    } else {
        (
            Some(lower_bound(n, k, levels.pass) * 100.0),
            Some(upper_bound(n, k, levels.fail) * 100.0),
        )
    };
    Judgement {
        metric: "success-rate".into(),
        verdict,
        n,
        estimate: (n > 0).then(|| k as f64 / n as f64 * 100.0),
        interval,
        threshold: min_percent,
        levels,
        requests_needed: None,
        shared_incident: shared,
    }
}

/// The stable's confidence-sequence ends the drop is measured from, each
/// at half the level (the canary's ends take the other half).
struct StableSides {
    /// Its upper end at the Pass level.
    upper: f64,
    /// Its lower end at the Fail level.
    lower: f64,
}

impl StableSides {
    fn of(stable: &VersionCounts, levels: Levels) -> Self {
        let (n, k) = (stable.requests, good(stable));
        Self {
            upper: upper_bound(n, k, levels.pass / 2.0),
            lower: lower_bound(n, k, levels.fail / 2.0),
        }
    }
}

fn success_rate_drop(
    max_drop: f64,
    levels: Levels,
    canary: &VersionCounts,
    stable: &VersionCounts,
    sides: &StableSides,
    full: bool,
) -> Judgement {
    let (nc, kc, ns, ks) = (canary.requests, good(canary), stable.requests, good(stable));
    let known = nc > 0 && ns > 0;
    let (pass, fail) = (levels.pass / 2.0, levels.fail / 2.0);
    let drop = max_drop / 100.0;
    let verdict = if known {
        // Pass: the canary's lower end within `drop` of the stable's upper
        // end; Fail: its upper end beyond `drop` below the stable's lower.
        let least = sides.upper - drop;
        let beyond = sides.lower - drop;
        if least <= 0.0 || shows_above(nc, kc, least, pass) {
            Verdict::Pass
        } else if beyond > 0.0 && shows_below(nc, kc, beyond, fail) {
            Verdict::Fail
        } else {
            Verdict::Inconclusive
        }
    } else {
        Verdict::Inconclusive
    };
    let interval = if known && full {
        (
            Some((sides.lower - upper_bound(nc, kc, fail)) * 100.0),
            Some((sides.upper - lower_bound(nc, kc, pass)) * 100.0),
        )
    } else {
        (None, None)
    };
    let share = |k: u64, n: u64| k as f64 / n as f64 * 100.0;
    Judgement {
        metric: "success-rate-drop".into(),
        verdict,
        n: nc,
        estimate: known.then(|| share(ks, ns) - share(kc, nc)),
        interval,
        threshold: max_drop,
        levels,
        requests_needed: None,
        shared_incident: false,
    }
}

/// The quantile's confidence sequence read at the bucket edges, ms: the
/// greatest edge it is shown to be above (at `alpha_low`) and the least it
/// is shown to be at most (at `alpha_high`).
fn quantile_bounds(
    q: f64,
    h: &LatencyHistogram,
    alpha_low: f64,
    alpha_high: f64,
) -> (Option<f64>, Option<f64>) {
    let n = h.total();
    let finite = h.edges.len().saturating_sub(1);
    // Edges where the share at most the edge is shown below q: a prefix.
    let below = partition(finite, |i| shows_below(n, h.at_most(i), q, alpha_low));
    // Edges where it is shown above q: a suffix.
    let above = partition(finite, |i| !shows_above(n, h.at_most(i), q, alpha_high));
    let lower = below.checked_sub(1).map(|i| h.edges.upper_ms(i));
    let upper = (above < finite).then(|| h.edges.upper_ms(above));
    (lower, upper)
}

/// The first index in `0..len` where `holds` stops holding (it holds on a
/// prefix).
fn partition(len: usize, holds: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The upper edge of the bucket holding the `q` quantile's rank, ms.
fn quantile_estimate(q: f64, h: &LatencyHistogram) -> Option<f64> {
    let n = h.total();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as u64).max(1);
    let mut seen = 0;
    h.counts
        .iter()
        .position(|&k| {
            seen += k;
            seen >= rank
        })
        .map(|i| h.edges.upper_ms(i))
        .filter(|v| v.is_finite())
}

fn latency(
    q: f64,
    max_ms: f64,
    levels: Levels,
    c: &VersionCounts,
    stable: &VersionCounts,
    full: bool,
) -> Judgement {
    let h = &c.latency;
    let n = h.total();
    let finite = h.edges.len().saturating_sub(1);
    // The edges around the bound: Pass at or below it, Fail at or above it.
    let at_or_below = partition(finite, |i| h.edges.upper_ms(i) <= max_ms).checked_sub(1);
    let at_or_above = partition(finite, |i| h.edges.upper_ms(i) < max_ms);
    let pass = at_or_below.is_some_and(|i| shows_above(n, h.at_most(i), q, levels.pass));
    let (verdict, shared) = if pass {
        (Verdict::Pass, false)
    } else if at_or_above < finite && shows_below(n, h.at_most(at_or_above), q, levels.fail) {
        let s = &stable.latency;
        if s.edges == h.edges && shows_below(s.total(), s.at_most(at_or_above), q, levels.fail) {
            (Verdict::Inconclusive, true)
        } else {
            (Verdict::Fail, false)
        }
    } else {
        (Verdict::Inconclusive, false)
    };
    Judgement {
        metric: format!("latency-p{}", q * 100.0),
        verdict,
        n,
        estimate: quantile_estimate(q, h),
        interval: if full {
            quantile_bounds(q, h, levels.fail, levels.pass)
        } else {
            (None, None)
        },
        threshold: max_ms,
        levels,
        requests_needed: None,
        shared_incident: shared,
    }
}

fn latency_ratio(
    q: f64,
    max_ratio: f64,
    levels: Levels,
    canary: &VersionCounts,
    stable: &VersionCounts,
    _full: bool,
) -> Judgement {
    let (pass, fail) = (levels.pass / 2.0, levels.fail / 2.0);
    // The canary's low end and the stable's high end decide a Fail, the
    // canary's high end and the stable's low end a Pass.
    let (c_low, c_high) = quantile_bounds(q, &canary.latency, fail, pass);
    let (s_low, s_high) = quantile_bounds(q, &stable.latency, pass, fail);
    let lower = match (c_low, s_high) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        _ => None,
    };
    let upper = match (c_high, s_low) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        _ => None,
    };
    let verdict = match (lower, upper) {
        (_, Some(hi)) if hi <= max_ratio => Verdict::Pass,
        (Some(lo), _) if lo > max_ratio => Verdict::Fail,
        _ => Verdict::Inconclusive,
    };
    let estimate = match (
        quantile_estimate(q, &canary.latency),
        quantile_estimate(q, &stable.latency),
    ) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        _ => None,
    };
    Judgement {
        metric: format!("latency-p{}-ratio", q * 100.0),
        verdict,
        n: canary.latency.total(),
        estimate,
        interval: (lower, upper),
        threshold: max_ratio,
        levels,
        requests_needed: None,
        shared_incident: false,
    }
}

/// Adds how many requests an Inconclusive verdict would need, were more
/// of the canary's requests like these: a count within 2 % above the least
/// at which the same proportions conclude, looked for up to 64 times the
/// requests seen (at least 4,096, at most 10⁷); none beyond. `verdict` judges
/// without the numbers a status shows (the search calls it ~15 times).
fn with_needed(
    canary: &VersionCounts,
    verdict: impl Fn(&VersionCounts) -> Verdict,
    mut j: Judgement,
) -> Judgement {
    if j.verdict != Verdict::Inconclusive || j.shared_incident || canary.requests == 0 {
        return j;
    }
    let scaled = |n: u64| {
        let f = n as f64 / canary.requests as f64;
        VersionCounts {
            requests: n,
            failures: (canary.failures as f64 * f).round() as u64,
            latency: LatencyHistogram {
                edges: canary.latency.edges.clone(),
                counts: canary
                    .latency
                    .counts
                    .iter()
                    .map(|&k| (k as f64 * f).round() as u64)
                    .collect(),
            },
        }
    };
    let concludes = |n: u64| verdict(&scaled(n)) != Verdict::Inconclusive;
    let limit = (canary.requests * 64).clamp(4096, 10_000_000);
    let mut hi = canary.requests.max(1) * 2;
    while !concludes(hi) {
        if hi >= limit {
            return j;
        }
        hi *= 2;
    }
    let mut lo = canary.requests;
    while hi - lo > (hi / 50).max(1) {
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
    use weir_api::version_stats::{BucketEdges, ENVOY_DURATION_EDGES_MS};

    use super::*;

    const LEVELS: Levels = Levels {
        pass: 0.025,
        fail: 0.025,
    };

    fn counts(requests: u64, errors: u64, latency_ms: f64) -> VersionCounts {
        let mut latency = LatencyHistogram::empty(BucketEdges::Fine);
        latency.add(latency_ms, requests);
        VersionCounts {
            requests,
            failures: errors,
            latency,
        }
    }

    fn goals(success: Option<f64>, latency: Option<(f64, Option<f64>, Option<f64>)>) -> Goals {
        Goals {
            success_min: success,
            success_max_drop: None,
            latency: latency.map(|(p, max_ms, max_ratio)| LatencyGoals {
                quantile: p / 100.0,
                max_ms,
                max_ratio,
            }),
        }
    }

    #[test]
    fn verdicts_never_guess() {
        let g = goals(Some(99.0), None);
        let stable = counts(1000, 0, 1.0);
        // No requests: never a Pass.
        let j = &judge(&g, LEVELS, &counts(0, 0, 1.0), &stable)[0];
        assert_eq!(j.verdict, Verdict::Inconclusive);
        assert_eq!((j.n, j.estimate, j.interval), (0, None, (None, None)));
        // One error in three: never a Fail.
        let j = &judge(&g, LEVELS, &counts(3, 1, 1.0), &stable)[0];
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        // A canary at 5 % errors against a 99 % minimum fails within a few hundred requests.
        let first_fail = (1..=500)
            .find(|&n| {
                judge(&g, LEVELS, &counts(n, n / 20, 1.0), &stable)[0].verdict == Verdict::Fail
            })
            .unwrap();
        assert!(first_fail <= 300, "failed only at {first_fail}");
        // As good as the stable (no errors): passes once n suffices, at the
        // count the status announced: 535 at 2.5 % (368 for one look).
        let early = &judge(&g, LEVELS, &counts(100, 0, 1.0), &stable)[0];
        assert_eq!(early.verdict, Verdict::Inconclusive);
        let needed = early.requests_needed.unwrap();
        assert!((535..=546).contains(&needed), "{needed}");
        assert_eq!(
            judge(&g, LEVELS, &counts(needed, 0, 1.0), &stable)[0].verdict,
            Verdict::Pass
        );
        assert_eq!(
            judge(&g, LEVELS, &counts(534, 0, 1.0), &stable)[0].verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn a_goal_the_stable_misses_too_is_a_shared_incident_not_a_fail() {
        let g = goals(Some(99.0), None);
        let canary = counts(2000, 200, 1.0);
        let j = &judge(&g, LEVELS, &canary, &counts(20_000, 0, 1.0))[0];
        assert_eq!((j.verdict, j.shared_incident), (Verdict::Fail, false));
        let j = &judge(&g, LEVELS, &canary, &counts(20_000, 2000, 1.0))[0];
        assert_eq!(
            (j.verdict, j.shared_incident),
            (Verdict::Inconclusive, true)
        );
        assert!(shared_incident(std::slice::from_ref(j)));
        assert_eq!(j.requests_needed, None, "no count would conclude it");
    }

    #[test]
    fn the_success_rate_against_the_stable_is_bounded_by_both_sequences() {
        let g = Goals {
            success_max_drop: Some(1.0),
            ..goals(None, None)
        };
        let judged = |canary: VersionCounts, stable: VersionCounts| {
            judge(&g, LEVELS, &canary, &stable)[0].clone()
        };
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
        assert!(first_fail <= 400, "failed only at {first_fail}");
        // As bad as the stable (both 2 % errors) passes a 1-point drop once
        // n suffices, at the number the status announced.
        let stable = || counts(90_000, 1800, 1.0);
        let early = judged(counts(100, 2, 1.0), stable());
        assert_eq!(early.verdict, Verdict::Inconclusive);
        let needed = early.requests_needed.unwrap();
        let scaled = |n: u64| counts(n, (2 * n + 50) / 100, 1.0);
        assert_eq!(judged(scaled(needed), stable()).verdict, Verdict::Pass);
        assert_eq!(
            judged(scaled(needed * 9 / 10), stable()).verdict,
            Verdict::Inconclusive
        );
        // Too few stable requests for the drop's upper end: no count of the
        // canary's concludes, and none is promised.
        let j = judged(counts(100, 2, 1.0), counts(900, 18, 1.0));
        assert_eq!(
            (j.verdict, j.requests_needed),
            (Verdict::Inconclusive, None)
        );
        let j = judged(counts(40_000, 800, 1.0), counts(40_000, 800, 1.0));
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        assert_eq!(j.estimate, Some(0.0));
    }

    #[test]
    fn latency_percentiles_are_the_share_test_at_a_bucket_edge() {
        let g = goals(None, Some((99.0, Some(500.0), None)));
        let stable = counts(1000, 0, 1.0);
        assert_eq!(
            judge(&g, LEVELS, &counts(1000, 0, 2.0), &stable)[0].verdict,
            Verdict::Pass
        );
        assert_eq!(
            judge(&g, LEVELS, &counts(1000, 0, 900.0), &stable)[0].verdict,
            Verdict::Fail
        );
        // Too few for the 99th percentile: not a Pass yet.
        let few = &judge(&g, LEVELS, &counts(20, 0, 2.0), &stable)[0];
        assert_eq!(few.verdict, Verdict::Inconclusive);
        assert_eq!(few.interval.1, None);
        // 5 % slow requests: the p99 is among them.
        let mut mixed = counts(950, 0, 2.0);
        mixed.latency.add(800.0, 50);
        mixed.requests = 1000;
        assert_eq!(judge(&g, LEVELS, &mixed, &stable)[0].verdict, Verdict::Fail);
    }

    #[test]
    fn latency_works_on_envoys_nineteen_buckets() {
        let envoy = BucketEdges::Explicit(ENVOY_DURATION_EDGES_MS.to_vec());
        let at = |ms: f64, n: u64| {
            let mut latency = LatencyHistogram::empty(envoy.clone());
            latency.add(ms, n);
            VersionCounts {
                requests: n,
                failures: 0,
                latency,
            }
        };
        // maxMs on an edge: a p99 at 400 ms passes 500, one at 600 fails it.
        let g = goals(None, Some((99.0, Some(500.0), None)));
        let stable = at(400.0, 5000);
        assert_eq!(
            judge(&g, LEVELS, &at(400.0, 2000), &stable)[0].verdict,
            Verdict::Pass
        );
        let slow = &judge(&g, LEVELS, &at(600.0, 2000), &at(100.0, 5000))[0];
        assert_eq!(slow.verdict, Verdict::Fail);
        assert_eq!(slow.interval.0, Some(500.0), "shown above the 500 ms edge");
        // A ratio as wide as the buckets: as fast as the stable passes 2.5
        // in the 10–25 ms bucket; 2 cannot (validation refuses it).
        let g = goals(None, Some((99.0, None, Some(2.5))));
        let j = &judge(&g, LEVELS, &at(20.0, 5000), &at(20.0, 5000))[0];
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        assert_eq!(j.interval.1, Some(2.5));
    }

    #[test]
    fn latency_against_the_stable_is_a_ratio_of_bounds() {
        let g = goals(None, Some((99.0, None, Some(1.5))));
        let stable = counts(5000, 0, 10.0);
        assert_eq!(
            judge(&g, LEVELS, &counts(5000, 0, 10.0), &stable)[0].verdict,
            Verdict::Pass
        );
        assert_eq!(
            judge(&g, LEVELS, &counts(5000, 0, 30.0), &stable)[0].verdict,
            Verdict::Fail
        );
        assert_eq!(
            judge(&g, LEVELS, &counts(5000, 0, 10.0), &counts(0, 0, 1.0))[0].verdict,
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
            levels: LEVELS,
            requests_needed: None,
            shared_incident: false,
        };
        use Verdict::*;
        assert_eq!(overall(&[j(Pass), j(Pass)]), Pass);
        assert_eq!(overall(&[j(Pass), j(Inconclusive)]), Inconclusive);
        assert_eq!(overall(&[j(Inconclusive), j(Fail)]), Fail);
        assert_eq!(overall(&[]), Inconclusive);
    }
}
