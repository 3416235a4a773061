//! The verdicts keep their error rates however often they are looked at:
//! 10,000 rollouts each of a canary exactly at its goal's bound, driven
//! through the engine with a look every 10 s for the whole 10-minute
//! progress deadline (60 looks), must be promoted (a false Pass) and rolled
//! back by analysis (a false Fail) each at most α/2 of the time — with the
//! simulation's own error stated: three binomial standard errors.
//!
//! On the same draws, the fixed-sample rule the engine used before (an exact
//! Clopper–Pearson interval at each look, first conclusion wins) is shown
//! to fail the same test: it errs several times α/2 on each side.

use std::time::{Duration, SystemTime};

use statrs::distribution::{Binomial, DiscreteCDF};
use weir_api::rollout::{
    AnalysisGate, AnalysisSpec, LatencyGoal, RolloutSpec, RolloutStep, SuccessRateGoal,
};
use weir_api::version_stats::{
    BucketEdges, ENVOY_DURATION_EDGES_MS, LatencyHistogram, VersionCounts,
};
use weir_rollout::engine::{Observation, Phase, Prior, RolloutAction, Window, step};

const ROLLOUTS: u32 = 10_000;
const INTERVAL_S: u64 = 10;
/// The nominal level of each side: (1 − 0.95) / 2.
const HALF_ALPHA: f64 = 0.025;

fn spec(analysis: AnalysisSpec) -> RolloutSpec {
    let weight = |w| RolloutStep {
        set_weight: Some(w),
        ..RolloutStep::default()
    };
    RolloutSpec {
        virtual_service: "my-app".into(),
        stable: "v1".into(),
        canary: "v2".into(),
        steps: vec![
            weight(10),
            RolloutStep {
                analysis: Some(AnalysisGate {}),
                ..RolloutStep::default()
            },
            weight(100),
        ],
        analysis: Some(AnalysisSpec {
            interval: Some(format!("{INTERVAL_S}s")),
            confidence: Some(0.95),
            ..analysis
        }),
        progress_deadline: Some("10m".into()),
        ..RolloutSpec::default()
    }
}

/// How one rollout ended.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Promoted,
    RolledBackByAnalysis,
    Other,
}

/// Traffic for one look: what the canary and the stable answered.
type Traffic<'a> = dyn FnMut(&mut fastrand::Rng, &mut VersionCounts, &mut VersionCounts) + 'a;

/// One rollout through the engine; returns how it ended and the looks taken.
fn run(spec: &RolloutSpec, rng: &mut fastrand::Rng, traffic: &mut Traffic<'_>) -> (End, u32) {
    let empty = VersionCounts {
        latency: LatencyHistogram::empty(BucketEdges::Explicit(ENVOY_DURATION_EDGES_MS.to_vec())),
        ..VersionCounts::default()
    };
    let (mut canary, mut stable) = (empty.clone(), empty);
    let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    // The backend's baseline: the counts when the current step began.
    let mut baseline = (now, canary.clone(), stable.clone());
    let mut served = 0;
    let mut status = None;
    for tick in 0..200 {
        if tick > 1 {
            now += Duration::from_secs(INTERVAL_S);
            traffic(rng, &mut canary, &mut stable);
        }
        let window = Window {
            start: baseline.0,
            end: now,
            canary: canary.since(&baseline.1),
            stable: stable.since(&baseline.2),
        };
        let obs = Observation {
            now,
            served_weight: served,
            window: Some(&window),
            command: None,
            capacity: None,
            canary_revision: None,
            hooks: &[],
            header_route: None,
            mirror: 0,
            generation: None,
        };
        let prior = status.as_ref().map_or(Prior::New, Prior::Known);
        let (next, actions) = step(spec, prior, &obs);
        for action in actions {
            if let RolloutAction::SetCanaryWeight(w) = action {
                served = w;
            }
        }
        if next.step_started != baseline.0 {
            baseline = (now, canary.clone(), stable.clone());
        }
        let ended = match next.phase {
            Phase::Succeeded => Some(End::Promoted),
            Phase::RolledBack if next.message.starts_with("analysis failed") => {
                Some(End::RolledBackByAnalysis)
            }
            Phase::RolledBack | Phase::Aborted => Some(End::Other),
            // Still inconclusive at the deadline: paused for a person.
            Phase::Paused => Some(End::Other),
            _ => None,
        };
        let looks = next.analyses as u32;
        if let Some(end) = ended {
            return (end, looks);
        }
        status = Some(next);
    }
    (End::Other, 0)
}

/// Three binomial standard errors of an estimated rate `p` over the runs.
fn tolerance(p: f64) -> f64 {
    3.0 * (p * (1.0 - p) / f64::from(ROLLOUTS)).sqrt()
}

/// Runs the rollouts; returns (false Pass rate, false Fail rate, least
/// number of looks among rollouts that reached the deadline).
fn simulate(spec: &RolloutSpec, seed: u64, traffic: &mut Traffic<'_>) -> (f64, f64, u32) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut passed, mut failed, mut least_looks) = (0, 0, u32::MAX);
    for _ in 0..ROLLOUTS {
        match run(spec, &mut rng, traffic) {
            (End::Promoted, _) => passed += 1,
            (End::RolledBackByAnalysis, _) => failed += 1,
            (End::Other, looks) => least_looks = least_looks.min(looks),
        }
    }
    let rate = |k: u32| f64::from(k) / f64::from(ROLLOUTS);
    (rate(passed), rate(failed), least_looks)
}

fn binomial(rng: &mut fastrand::Rng, n: u64, p: f64) -> u64 {
    (0..n).filter(|_| rng.f64() < p).count() as u64
}

/// The old rule on one look: `e` errors in `n` against an error share
/// `q0`, by the duality of the exact interval: Pass when P(E ≤ e) ≤ α/2,
/// Fail when P(E ≥ e) < α/2.
fn fixed_sample_verdict(n: u64, e: u64, q0: f64) -> Option<bool> {
    let b = Binomial::new(q0, n).ok()?;
    if b.cdf(e) <= HALF_ALPHA {
        Some(true)
    } else if e > 0 && 1.0 - b.cdf(e - 1) < HALF_ALPHA {
        Some(false)
    } else {
        None
    }
}

fn assert_within_budget(what: &str, (pass, fail, looks): (f64, f64, u32)) {
    eprintln!("{what}: false Pass {pass:.4}, false Fail {fail:.4}, looks {looks}");
    assert!(
        looks >= 60,
        "{what}: only {looks} looks before the deadline"
    );
    assert!(
        pass <= HALF_ALPHA + tolerance(HALF_ALPHA),
        "{what}: false Pass {pass} over {HALF_ALPHA}"
    );
    assert!(
        fail <= HALF_ALPHA + tolerance(HALF_ALPHA),
        "{what}: false Fail {fail} over {HALF_ALPHA}"
    );
}

#[test]
fn a_canary_exactly_at_min_is_passed_and_failed_at_most_alpha_over_60_looks() {
    let spec = spec(AnalysisSpec {
        success_rate: Some(SuccessRateGoal {
            min: Some(99.0),
            max_drop_from_stable: None,
        }),
        ..AnalysisSpec::default()
    });
    // 5 canary requests a second: 50 a look, 1 % of them errors.
    let (per_look, q) = (50, 0.01);
    // The old rule, on the same kind of draws, judged at every look.
    let (mut old_pass, mut old_fail) = (0, 0);
    let mut old = fastrand::Rng::with_seed(7);
    for _ in 0..ROLLOUTS {
        let (mut n, mut e) = (0, 0);
        for _ in 0..60 {
            n += per_look;
            e += binomial(&mut old, per_look, q);
            match fixed_sample_verdict(n, e, q) {
                Some(true) => {
                    old_pass += 1;
                    break;
                }
                Some(false) => {
                    old_fail += 1;
                    break;
                }
                None => {}
            }
        }
    }
    let (old_pass, old_fail) = (
        f64::from(old_pass) / f64::from(ROLLOUTS),
        f64::from(old_fail) / f64::from(ROLLOUTS),
    );
    eprintln!("fixed-sample rule: false Pass {old_pass:.4}, false Fail {old_fail:.4}");
    assert!(
        old_pass > HALF_ALPHA + tolerance(HALF_ALPHA)
            && old_fail > HALF_ALPHA + tolerance(HALF_ALPHA),
        "the old rule would pass this test: {old_pass} {old_fail}"
    );
    let result = simulate(&spec, 11, &mut |rng, canary, _| {
        canary.requests += per_look;
        canary.failures += binomial(rng, per_look, q);
    });
    assert_within_budget("successRate.min 99 at 99 %", result);
}

#[test]
fn a_canary_exactly_at_max_drop_from_the_stable_is_passed_and_failed_at_most_alpha() {
    let spec = spec(AnalysisSpec {
        success_rate: Some(SuccessRateGoal {
            min: None,
            max_drop_from_stable: Some(1.0),
        }),
        ..AnalysisSpec::default()
    });
    // The stable at 99.5 % with nine times the canary's traffic; the
    // canary exactly one point below.
    let result = simulate(&spec, 13, &mut |rng, canary, stable| {
        canary.requests += 50;
        canary.failures += binomial(rng, 50, 0.015);
        stable.requests += 450;
        stable.failures += binomial(rng, 450, 0.005);
    });
    assert_within_budget("maxDropFromStable 1 at 1 point", result);
}

#[test]
fn a_canary_exactly_at_its_latency_bound_is_passed_and_failed_at_most_alpha() {
    let spec = spec(AnalysisSpec {
        latency: Some(LatencyGoal {
            percentile: 99.0,
            max_ms: Some(100.0),
            max_ratio_to_stable: None,
        }),
        ..AnalysisSpec::default()
    });
    // 99 % of the canary's requests take at most 100 ms (an Envoy edge),
    // 1 % longer: its p99 sits exactly on the bound.
    let result = simulate(&spec, 17, &mut |rng, canary, stable| {
        let slow = binomial(rng, 50, 0.01);
        canary.requests += 50;
        canary.latency.add(60.0, 50 - slow);
        canary.latency.add(180.0, slow);
        stable.requests += 450;
        stable.latency.add(60.0, 450);
    });
    assert_within_budget("latency p99 maxMs 100 at 100", result);
}
