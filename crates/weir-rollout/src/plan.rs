//! A plan before exposure: for each analysis gate, how many canary
//! requests a verdict takes — a Pass of a clean canary, a Fail of one at
//! twice its allowed badness — and how long that is at the rule's rate,
//! against the progress deadline. No anchor tells its users this before a
//! rollout starts; here it is the same judgement the engine makes, on the
//! counts such canaries would produce.
//!
//! The canaries: clean — no 5xx, every request in one bucket well within
//! `maxMs` and as fast as the stable; bad — twice the allowed error share
//! (`2·(100 − min)` % errors), twice the allowed drop below a clean stable,
//! twice the allowed share of requests over `maxMs` (2 % for a p99), or a
//! percentile at twice `maxRatioToStable` times the stable's. The stable
//! answers `(100 − w)/w` requests for each canary request at weight w.

use std::time::Duration;

use serde::Serialize;
use weir_api::rollout::{RolloutSpec, StepKind, defaults};
use weir_api::version_stats::{BucketEdges, LatencyHistogram, VersionCounts};

use crate::analysis::{Goals, Judgement, Verdict, judge};
use crate::budget::{self, ErrorBudget, Levels};

/// One goal at one gate.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalPlan {
    /// The goal (`success-rate`, `latency-p99`, ...).
    pub metric: String,
    /// Canary requests for a clean canary's Pass; `None`: over 10⁷.
    pub pass_requests: Option<u64>,
    /// Canary requests for a bad canary's Fail; `None`: over 10⁷.
    pub fail_requests: Option<u64>,
    /// The time the Pass takes at the given rate.
    pub pass_seconds: Option<f64>,
    /// The time the Fail takes.
    pub fail_seconds: Option<f64>,
}

/// One analysis gate.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatePlan {
    /// Its step.
    pub step: usize,
    /// The canary's weight there, percent.
    pub weight: u32,
    /// Each goal.
    pub goals: Vec<GoalPlan>,
}

/// The plan of one Rollout.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The rule's requests per second it was planned at, if known.
    pub rate: Option<f64>,
    /// How the confidence is spent.
    pub budget: ErrorBudget,
    /// Each analysis gate.
    pub gates: Vec<GatePlan>,
    /// What will not work as written, in words.
    pub warnings: Vec<String>,
}

/// Counts of `n` requests with `errors` 5xx, `slow` of them at `slow_ms`
/// and the rest at `fast_ms`.
fn counts(n: u64, errors: u64, (fast_ms, slow_ms, slow): (f64, f64, u64)) -> VersionCounts {
    let mut latency = LatencyHistogram::empty(BucketEdges::Fine);
    latency.add(fast_ms, n - slow.min(n));
    latency.add(slow_ms, slow.min(n));
    VersionCounts {
        requests: n,
        failures: errors.min(n),
        latency,
    }
}

/// The least n (within 2 %, up to 10⁷) at which `verdict_at(n)` gives
/// `wanted`.
fn requests_for(wanted: Verdict, verdict_at: impl Fn(u64) -> Verdict) -> Option<u64> {
    let mut hi = 8;
    while verdict_at(hi) != wanted {
        if hi >= 10_000_000 {
            return None;
        }
        hi *= 2;
    }
    let mut lo = hi / 2;
    while hi - lo > (hi / 50).max(1) {
        let mid = lo + (hi - lo) / 2;
        if verdict_at(mid) == wanted {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// The `index`th goal's verdict on one pair of windows.
fn verdict_of(
    goals: &Goals,
    levels: Levels,
    index: usize,
    canary: &VersionCounts,
    stable: &VersionCounts,
) -> Verdict {
    judge(goals, levels, canary, stable)
        .get(index)
        .map_or(Verdict::Inconclusive, |j: &Judgement| j.verdict)
}

/// The plan of `spec` at `rate` requests per second through its rule.
pub fn plan(spec: &RolloutSpec, rate: Option<f64>) -> Plan {
    let budget = budget::split(spec);
    let levels = budget.levels();
    let mut warnings = Vec::new();
    let Some(analysis) = &spec.analysis else {
        return Plan {
            rate,
            budget,
            gates: Vec::new(),
            warnings,
        };
    };
    let goals = Goals::of(analysis);
    let deadline = spec
        .progress_deadline
        .as_deref()
        .and_then(|d| weir_api::duration::parse(d).ok())
        .unwrap_or(defaults::PROGRESS_DEADLINE);
    let metrics: Vec<String> = judge(
        &goals,
        levels,
        &VersionCounts::default(),
        &VersionCounts::default(),
    )
    .into_iter()
    .map(|j| j.metric)
    .collect();
    // The latency a clean canary shows: well within maxMs, 10 ms otherwise.
    let latency = goals.latency;
    let fast = latency.and_then(|l| l.max_ms).map_or(10.0, |m| m / 4.0);
    let mut gates = Vec::new();
    let mut weight: Option<u32> = None;
    for (step, s) in spec.steps.iter().enumerate() {
        match s.kind() {
            Some(StepKind::SetWeight(w)) => weight = Some(w),
            Some(StepKind::Analysis) => {
                let w = weight.unwrap_or(100).clamp(1, 100);
                let stable_per_canary = f64::from(100 - w) / f64::from(w);
                let stable_n = |n: u64| (n as f64 * stable_per_canary).round() as u64;
                let mut plans = Vec::new();
                for (index, metric) in metrics.iter().enumerate() {
                    let clean = |n: u64| {
                        let stable = counts(stable_n(n), 0, (fast, fast, 0));
                        verdict_of(
                            &goals,
                            levels,
                            index,
                            &counts(n, 0, (fast, fast, 0)),
                            &stable,
                        )
                    };
                    let bad = |n: u64| {
                        let stable = counts(stable_n(n), 0, (fast, fast, 0));
                        let canary = bad_canary(metric, &goals, n, fast);
                        verdict_of(&goals, levels, index, &canary, &stable)
                    };
                    let pass_requests = requests_for(Verdict::Pass, clean);
                    let fail_requests = requests_for(Verdict::Fail, bad);
                    let canary_rate = rate.map(|r| r * f64::from(w) / 100.0).filter(|r| *r > 0.0);
                    let seconds = |n: Option<u64>| Some(n? as f64 / canary_rate?);
                    let plan = GoalPlan {
                        metric: metric.clone(),
                        pass_requests,
                        fail_requests,
                        pass_seconds: seconds(pass_requests),
                        fail_seconds: seconds(fail_requests),
                    };
                    match (plan.pass_requests, plan.pass_seconds) {
                        (None, _) => warnings.push(format!(
                            "step {step}: {metric}: a clean canary needs over 10⁷ requests to Pass at canary {w} %"
                        )),
                        (Some(n), Some(t)) if Duration::from_secs_f64(t) > deadline => {
                            warnings.push(format!(
                                "step {step}: {metric}: a clean canary needs ~{n} requests, {} at {} req/s × {w} %: longer than progressDeadline ({}), where the gate pauses inconclusive",
                                humantime::format_duration(Duration::from_secs(t.ceil() as u64)),
                                rate.unwrap_or_default(),
                                humantime::format_duration(deadline)
                            ));
                        }
                        _ => {}
                    }
                    plans.push(plan);
                }
                gates.push(GatePlan {
                    step,
                    weight: w,
                    goals: plans,
                });
            }
            _ => {}
        }
    }
    if rate == Some(0.0) {
        warnings.push(
            "the rule has no traffic now: no gate can conclude without `spec.traffic`".into(),
        );
    }
    Plan {
        rate,
        budget,
        gates,
        warnings,
    }
}

/// `n` requests of a canary at twice the allowed badness on `metric`.
fn bad_canary(metric: &str, goals: &Goals, n: u64, fast: f64) -> VersionCounts {
    let share = |percent: f64| ((n as f64) * percent / 100.0).round() as u64;
    match metric {
        "success-rate" => {
            let allowed = 100.0 - goals.success_min.unwrap_or(99.0);
            counts(n, share((2.0 * allowed).min(100.0)), (fast, fast, 0))
        }
        "success-rate-drop" => {
            let drop = goals.success_max_drop.unwrap_or(1.0);
            counts(n, share((2.0 * drop).min(100.0)), (fast, fast, 0))
        }
        m if m.ends_with("-ratio") => {
            let ratio = goals.latency.and_then(|l| l.max_ratio).unwrap_or(2.0);
            counts(n, 0, (fast, fast * 2.0 * ratio, n))
        }
        _ => {
            let (q, max) = goals
                .latency
                .map_or((0.99, 1000.0), |l| (l.quantile, l.max_ms.unwrap_or(1000.0)));
            counts(n, 0, (fast, max * 2.0, share(200.0 * (1.0 - q))))
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_api::rollout::{AnalysisSpec, LatencyGoal, SuccessRateGoal};

    use super::*;
    use crate::test_steps::{gate, weight};

    fn spec(deadline: &str) -> RolloutSpec {
        RolloutSpec {
            steps: vec![weight(10), gate(), weight(50), gate(), weight(100)],
            analysis: Some(AnalysisSpec {
                success_rate: Some(SuccessRateGoal {
                    min: Some(99.0),
                    max_drop_from_stable: None,
                }),
                latency: Some(LatencyGoal {
                    percentile: 99.0,
                    max_ms: Some(500.0),
                    max_ratio_to_stable: Some(2.0),
                }),
                ..AnalysisSpec::default()
            }),
            progress_deadline: Some(deadline.into()),
            ..RolloutSpec::default()
        }
    }

    #[test]
    fn each_gate_says_what_a_verdict_takes_and_when_the_deadline_cannot_be_met() {
        let p = plan(&spec("10m"), Some(10.0));
        assert_eq!(p.gates.len(), 2);
        assert_eq!((p.gates[0].step, p.gates[0].weight), (1, 10));
        assert_eq!((p.gates[1].step, p.gates[1].weight), (3, 50));
        let success = &p.gates[0].goals[0];
        assert_eq!(success.metric, "success-rate");
        // A clean canary: the same count the engine's verdict needs.
        let n = success.pass_requests.unwrap();
        assert!((535..=546).contains(&n), "{n}");
        // At 10 req/s × 10 %, one canary request a second.
        assert!((success.pass_seconds.unwrap() - n as f64).abs() < 1e-9);
        let bad = success.fail_requests.unwrap();
        assert!(bad > 100 && bad < n * 4, "{bad}");
        // 535 s at the first gate fits 10m; the latency goals' do too or not:
        // whatever does not fit is warned about, naming its step.
        for g in &p.gates[0].goals {
            let over = g.pass_seconds.unwrap() > 600.0;
            let warned = p
                .warnings
                .iter()
                .any(|w| w.starts_with(&format!("step 1: {}:", g.metric)));
            assert_eq!(over, warned, "{g:?} {:?}", p.warnings);
        }
        // A deadline of 1m cannot be met at the first gate at all.
        let short = plan(&spec("1m"), Some(10.0));
        assert!(
            short
                .warnings
                .iter()
                .any(|w| w.starts_with("step 1: success-rate")),
            "{:?}",
            short.warnings
        );
        // Without a rate, requests but no times.
        let unknown = plan(&spec("10m"), None);
        assert_eq!(unknown.gates[0].goals[0].pass_seconds, None);
        assert!(unknown.gates[0].goals[0].pass_requests.is_some());
    }
}
