//! Steps for the tables of tests, as a Rollout's YAML writes them.

use weir_api::rollout::{AnalysisGate, PauseStep, RolloutStep};

/// `setWeight: w`.
pub fn weight(w: i64) -> RolloutStep {
    RolloutStep {
        set_weight: Some(w),
        ..RolloutStep::default()
    }
}

/// `analysis: {}`.
pub fn gate() -> RolloutStep {
    RolloutStep {
        analysis: Some(AnalysisGate {}),
        ..RolloutStep::default()
    }
}

/// `pause: {duration: d}`, or `pause: {}`.
pub fn pause(d: Option<&str>) -> RolloutStep {
    RolloutStep {
        pause: Some(PauseStep {
            duration: d.map(str::to_owned),
        }),
        ..RolloutStep::default()
    }
}
