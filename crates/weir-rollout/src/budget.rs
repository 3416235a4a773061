//! The rollout's error budget: how the user's `confidence` is spent.
//!
//! `1 − confidence` (α) is the chance of a wrong decision for the whole
//! rollout, not for one look: half of it for promoting a canary that misses
//! a goal (a false Pass), half for rolling back one that meets every goal
//! (a false Fail).
//!
//! - False Pass: a rollout promotes only when every analysis gate Passes
//!   and a gate Passes only when every goal does, so a canary that misses
//!   one goal is promoted only if that goal's test errs at every gate. Each
//!   goal's Pass test gets the whole α/2; nothing is split.
//! - False Fail: any goal's Fail in any analysed step rolls back, so those
//!   errors add up. α/2 is split evenly over the steps analysed (each is a
//!   fresh window) and the goals judged in each.
//!
//! Each test is anytime-valid ([`crate::sequential`]): its share of the
//! budget holds however many looks a step takes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weir_api::rollout::{RolloutSpec, StepKind, defaults};

/// What each test may spend, and how that was worked out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBudget {
    /// 1 − `analysis.confidence`: the whole rollout's.
    pub alpha: f64,
    /// The chance of promoting a canary that misses a goal (α/2).
    pub false_pass: f64,
    /// The chance of rolling back a canary that meets every goal (α/2).
    pub false_fail: f64,
    /// Steps whose traffic is judged: those with the canary above 0 %.
    pub windows: u32,
    /// Goals judged in each.
    pub goals: u32,
    /// One goal's Pass test, in any step: `falsePass`.
    pub pass_per_test: f64,
    /// One goal's Fail test in one step: `falseFail / (windows × goals)`.
    pub fail_per_test: f64,
}

/// The levels one goal's tests are held to in one window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Levels {
    /// The chance its Pass is wrong.
    pub pass: f64,
    /// The chance its Fail is wrong.
    pub fail: f64,
}

impl ErrorBudget {
    /// The levels of each goal's tests.
    pub fn levels(&self) -> Levels {
        Levels {
            pass: self.pass_per_test,
            fail: self.fail_per_test,
        }
    }
}

/// How many goals `spec.analysis` judges.
pub fn goal_count(spec: &RolloutSpec) -> u32 {
    let Some(a) = &spec.analysis else { return 0 };
    let success = a.success_rate.as_ref().map_or(0, |s| {
        u32::from(s.min.is_some()) + u32::from(s.max_drop_from_stable.is_some())
    });
    let latency = a.latency.as_ref().map_or(0, |l| {
        u32::from(l.max_ms.is_some()) + u32::from(l.max_ratio_to_stable.is_some())
    });
    success + latency
}

/// The steps whose traffic analysis judges: every step during which the
/// canary's planned weight is above 0 (a `setWeight` counts when the
/// weight it leaves or the one it sets is). Before the first `setWeight`
/// the weight is whatever the route served when the rollout began, so
/// those steps count.
pub fn analysed_windows(spec: &RolloutSpec) -> u32 {
    let mut weight = 100;
    let mut windows = 0;
    for step in &spec.steps {
        let during = match step.kind() {
            Some(StepKind::SetWeight(w)) => {
                let either = weight.max(w);
                weight = w;
                either
            }
            _ => weight,
        };
        if during > 0 {
            windows += 1;
        }
    }
    windows
}

/// The budget of one attempt of `spec` (a `retry` starts a new one).
pub fn split(spec: &RolloutSpec) -> ErrorBudget {
    let confidence = spec
        .analysis
        .as_ref()
        .and_then(|a| a.confidence)
        .unwrap_or(defaults::CONFIDENCE);
    let alpha = (1.0 - confidence).clamp(1e-9, 0.5);
    let (windows, goals) = (analysed_windows(spec).max(1), goal_count(spec).max(1));
    let half = alpha / 2.0;
    ErrorBudget {
        alpha,
        false_pass: half,
        false_fail: half,
        windows,
        goals,
        pass_per_test: half,
        fail_per_test: half / f64::from(windows * goals),
    }
}

#[cfg(test)]
mod tests {
    use weir_api::rollout::{AnalysisSpec, LatencyGoal, RolloutStep, SuccessRateGoal};

    use super::*;
    use crate::test_steps::{gate, pause, weight};

    #[test]
    fn the_fail_budget_is_split_over_analysed_steps_and_goals_the_pass_budget_is_not() {
        let analysis = AnalysisSpec {
            confidence: Some(0.95),
            success_rate: Some(SuccessRateGoal {
                min: Some(99.0),
                max_drop_from_stable: Some(1.0),
            }),
            latency: Some(LatencyGoal {
                percentile: 99.0,
                max_ms: Some(500.0),
                max_ratio_to_stable: None,
            }),
            ..AnalysisSpec::default()
        };
        // (steps, analysed windows)
        let cases: Vec<(Vec<RolloutStep>, u32)> = vec![
            (vec![weight(10), gate(), weight(100)], 3),
            (
                vec![
                    pause(None),
                    weight(10),
                    gate(),
                    weight(50),
                    gate(),
                    weight(100),
                ],
                6,
            ),
            (
                vec![weight(20), gate(), weight(0), pause(None), weight(0)],
                3,
            ),
            (vec![weight(0), pause(None)], 1),
            (vec![weight(0), pause(None), weight(0)], 1),
        ];
        for (steps, windows) in cases {
            let spec = RolloutSpec {
                steps,
                analysis: Some(analysis.clone()),
                ..RolloutSpec::default()
            };
            let b = split(&spec);
            assert_eq!(b.windows, windows.max(1), "{:?}", spec.steps);
            assert_eq!(b.goals, 3);
            assert!((b.alpha - 0.05).abs() < 1e-12);
            assert!((b.false_pass - 0.025).abs() < 1e-12);
            assert_eq!(b.pass_per_test, b.false_pass);
            let spent = b.fail_per_test * f64::from(b.windows * b.goals);
            assert!((spent - b.false_fail).abs() < 1e-12);
        }
    }
}
