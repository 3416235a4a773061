//! One sync of Kubernetes' HPA controller (`horizontal.go`
//! `reconcileAutoscaler`): bounds, the metric recommendation, then
//! normalization: the legacy path (downscale stabilization over the max of
//! recent recommendations, scale-up capped at max(2×, 4)) or the `behavior`
//! path (per-direction windows and rate policies), and the status
//! conditions Kubernetes reports.

use std::time::Duration;

use tokio::time::Instant;

use super::calculate::{CalculationError, PodSample, calculate};
use super::spec::{HpaSpec, PolicyKind, Rules, SelectPolicy, Settings, Tolerances};

/// `scaleUpLimitFactor` and `scaleUpLimitMinimum` of the legacy path.
const SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
const SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;

/// What an HPA remembers between syncs.
#[derive(Clone, Debug, Default)]
pub struct HpaHistory {
    recommendations: Vec<(Instant, i32)>,
    scale_up_events: Vec<(Instant, i32)>,
    scale_down_events: Vec<(Instant, i32)>,
}

impl HpaHistory {
    /// The history of an HPA the controller sees for the first time (it
    /// was just created, or the controller just started): the target's
    /// current replicas recorded as a recommendation at `now`, as
    /// Kubernetes' `recordInitialRecommendation` does. Within the
    /// downscale stabilization window that follows, nothing scales below it.
    pub fn first_seen(current: i32, now: Instant) -> Self {
        Self {
            recommendations: vec![(now, current)],
            ..Self::default()
        }
    }
}

impl HpaHistory {
    /// Counts replicas raised ahead of traffic at `at` (a Rollout's
    /// capacity before traffic) as a recommendation of the HPA's own, so its
    /// downscale stabilization holds them while the new share's load
    /// arrives, instead of undoing them at the next sync from a CPU average
    /// over the quiet minutes before. Recorded once per raise.
    pub fn hold(&mut self, at: Instant, replicas: i32) {
        if !self.recommendations.contains(&(at, replicas)) {
            self.recommendations.push((at, replicas));
        }
    }
}

/// A status condition, as `kubectl describe hpa` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `AbleToScale`, `ScalingActive` or `ScalingLimited`.
    pub kind: &'static str,
    /// True or False.
    pub status: bool,
    /// The reason.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

/// The outcome of one sync.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Replicas the target should have.
    pub desired: i32,
    /// Whether to change the target's replicas.
    pub rescale: bool,
    /// Current CPU utilization (percent), when measured.
    pub utilization: Option<i32>,
    /// Current average CPU usage, millicores, when measured.
    pub average_millis: Option<i64>,
    /// Conditions, in Kubernetes' order.
    pub conditions: Vec<Condition>,
}

fn condition(
    kind: &'static str,
    status: bool,
    reason: &'static str,
    message: impl Into<String>,
) -> Condition {
    Condition {
        kind,
        status,
        reason,
        message: message.into(),
    }
}

/// Runs one sync at `now`. `current` is the target's `spec.replicas`.
pub fn reconcile(
    spec: &HpaSpec,
    current: i32,
    pods: &[PodSample],
    now: Instant,
    history: &mut HpaHistory,
    settings: &Settings,
) -> Decision {
    let mut decision = Decision {
        desired: current,
        rescale: false,
        utilization: None,
        average_millis: None,
        conditions: Vec::new(),
    };
    let min = spec.min.max(1);
    if current == 0 && spec.min != 0 {
        decision.desired = 0;
        decision.conditions = vec![
            condition(
                "AbleToScale",
                true,
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale",
            ),
            condition(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            ),
        ];
        return decision;
    }
    if current > spec.max || current < min {
        // Out of range: straight to the bound, setting AbleToScale alone
        // (the other conditions keep their last value, as in Kubernetes).
        decision.desired = current.clamp(min, spec.max);
        decision.rescale = true;
        decision.conditions = vec![condition(
            "AbleToScale",
            true,
            "SucceededRescale",
            format!(
                "the HPA controller was able to update the target scale to {}",
                decision.desired
            ),
        )];
        return decision;
    }

    // computeReplicasForMetrics: the largest recommendation over the targets.
    let mut recommendation: Option<i32> = None;
    let mut failure: Option<CalculationError> = None;
    let tolerances = Tolerances::of(spec, settings);
    for &target in &spec.targets {
        match calculate(current, target, pods, now, settings, tolerances) {
            Ok(c) => {
                recommendation = Some(recommendation.map_or(c.replicas, |r| r.max(c.replicas)));
                decision.utilization = decision.utilization.or(c.utilization);
                decision.average_millis = decision.average_millis.or(Some(c.average_millis));
            }
            Err(e) => failure = Some(e),
        }
    }
    // If some metric failed and the rest would scale down, do not scale.
    let metric_desired = match (recommendation, &failure) {
        (None, Some(e)) => {
            let reason = match e {
                CalculationError::MissingRequest { .. } | CalculationError::NoMetrics => {
                    "FailedGetResourceMetric"
                }
            };
            decision.conditions = vec![
                condition(
                    "AbleToScale",
                    true,
                    "SucceededGetScale",
                    "the HPA controller was able to get the target's current scale",
                ),
                condition(
                    "ScalingActive",
                    false,
                    reason,
                    format!("the HPA was unable to compute the replica count: {e}"),
                ),
            ];
            return decision;
        }
        (Some(r), Some(_)) if r < current => current,
        (Some(r), _) => r,
        (None, None) => current,
    };
    let active = condition(
        "ScalingActive",
        true,
        "ValidMetricFound",
        "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)",
    );

    let (desired, able, limited) = match &spec.behavior {
        None => legacy(spec, min, current, metric_desired, now, history, settings),
        Some(behavior) => with_behavior(spec, min, current, metric_desired, now, history, behavior),
    };
    decision.desired = desired;
    decision.rescale = desired != current;
    if decision.rescale {
        let change = desired - current;
        let events = if change > 0 {
            &mut history.scale_up_events
        } else {
            &mut history.scale_down_events
        };
        events.push((now, change.abs()));
        prune_events(history, spec, now);
    }
    let able = if decision.rescale {
        condition(
            "AbleToScale",
            true,
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        )
    } else {
        able
    };
    decision.conditions = vec![able, active, limited];
    decision
}

/// `normalizeDesiredReplicas`: the highest recommendation of the downscale
/// window, then `convertDesiredReplicasWithRules`.
fn legacy(
    spec: &HpaSpec,
    min: i32,
    current: i32,
    desired: i32,
    now: Instant,
    history: &mut HpaHistory,
    settings: &Settings,
) -> (i32, Condition, Condition) {
    let cutoff = now.checked_sub(settings.downscale_stabilization);
    let mut stabilized = desired;
    for &(at, rec) in &history.recommendations {
        if cutoff.is_none_or(|c| at >= c) {
            stabilized = stabilized.max(rec);
        }
    }
    history
        .recommendations
        .retain(|&(at, _)| cutoff.is_none_or(|c| at >= c));
    history.recommendations.push((now, desired));
    let able = if stabilized != desired {
        condition(
            "AbleToScale",
            true,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    } else {
        condition(
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size",
        )
    };
    let scale_up_limit =
        (SCALE_UP_LIMIT_FACTOR * f64::from(current)).max(SCALE_UP_LIMIT_MINIMUM) as i32;
    let (maximum, max_reason, max_message) = if spec.max > scale_up_limit {
        (
            scale_up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    } else {
        (
            spec.max,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    };
    let (value, limited) = if stabilized < min {
        (
            min,
            condition(
                "ScalingLimited",
                true,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            ),
        )
    } else if stabilized > maximum {
        (
            maximum,
            condition("ScalingLimited", true, max_reason, max_message),
        )
    } else {
        (
            stabilized,
            condition(
                "ScalingLimited",
                false,
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
            ),
        )
    };
    (value, able, limited)
}

/// `normalizeDesiredReplicasWithBehaviors`.
fn with_behavior(
    spec: &HpaSpec,
    min: i32,
    current: i32,
    desired: i32,
    now: Instant,
    history: &mut HpaHistory,
    behavior: &super::spec::Behavior,
) -> (i32, Condition, Condition) {
    let up_cutoff = now.checked_sub(behavior.scale_up.window);
    let down_cutoff = now.checked_sub(behavior.scale_down.window);
    let after = |at: Instant, cutoff: Option<Instant>| cutoff.is_none_or(|c| at > c);
    let (mut up, mut down) = (desired, desired);
    for &(at, rec) in &history.recommendations {
        if after(at, up_cutoff) {
            up = up.min(rec);
        }
        if after(at, down_cutoff) {
            down = down.max(rec);
        }
    }
    history
        .recommendations
        .retain(|&(at, _)| after(at, up_cutoff) || after(at, down_cutoff));
    history.recommendations.push((now, desired));
    let mut stabilized = current;
    if stabilized < up {
        stabilized = up;
    }
    if stabilized > down {
        stabilized = down;
    }
    let able = if stabilized == desired {
        condition(
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size",
        )
    } else if stabilized < desired {
        condition(
            "AbleToScale",
            true,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        condition(
            "AbleToScale",
            true,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    };
    let within = || {
        condition(
            "ScalingLimited",
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )
    };
    if stabilized > current {
        let limit = scale_up_limit(current, history, &behavior.scale_up, now).max(current);
        let (maximum, limited) = if spec.max > limit {
            (
                limit,
                condition(
                    "ScalingLimited",
                    true,
                    "ScaleUpLimit",
                    "the desired replica count is increasing faster than the maximum scale rate",
                ),
            )
        } else {
            (
                spec.max,
                condition(
                    "ScalingLimited",
                    true,
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                ),
            )
        };
        if stabilized > maximum {
            return (maximum, able, limited);
        }
    } else if stabilized < current {
        let limit = scale_down_limit(current, history, &behavior.scale_down, now).min(current);
        let (minimum, limited) = if min < limit {
            (
                limit,
                condition(
                    "ScalingLimited",
                    true,
                    "ScaleDownLimit",
                    "the desired replica count is decreasing faster than the maximum scale rate",
                ),
            )
        } else {
            (
                min,
                condition(
                    "ScalingLimited",
                    true,
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                ),
            )
        };
        if stabilized < minimum {
            return (minimum, able, limited);
        }
    }
    (stabilized, able, within())
}

fn change_in_period(events: &[(Instant, i32)], period: Duration, now: Instant) -> i32 {
    let cutoff = now.checked_sub(period);
    events
        .iter()
        .filter(|(at, _)| cutoff.is_none_or(|c| *at > c))
        .map(|(_, n)| n)
        .sum()
}

/// `calculateScaleUpLimitWithScalingRules`.
fn scale_up_limit(current: i32, history: &HpaHistory, rules: &Rules, now: Instant) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MAX, i32::min),
        SelectPolicy::Max => (i32::MIN, i32::max),
    };
    for policy in &rules.policies {
        let start = current - change_in_period(&history.scale_up_events, policy.period, now)
            + change_in_period(&history.scale_down_events, policy.period, now);
        let proposed = match policy.kind {
            PolicyKind::Pods => start + policy.value,
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// `calculateScaleDownLimitWithBehaviors`.
fn scale_down_limit(current: i32, history: &HpaHistory, rules: &Rules, now: Instant) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MIN, i32::max),
        SelectPolicy::Max => (i32::MAX, i32::min),
    };
    for policy in &rules.policies {
        let start = current - change_in_period(&history.scale_up_events, policy.period, now)
            + change_in_period(&history.scale_down_events, policy.period, now);
        let proposed = match policy.kind {
            PolicyKind::Pods => start - policy.value,
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 - f64::from(policy.value) / 100.0)) as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// Drops scale events older than the longest policy period.
fn prune_events(history: &mut HpaHistory, spec: &HpaSpec, now: Instant) {
    let longest = spec
        .behavior
        .iter()
        .flat_map(|b| b.scale_up.policies.iter().chain(&b.scale_down.policies))
        .map(|p| p.period)
        .max()
        .unwrap_or(Duration::from_secs(1800));
    if let Some(cutoff) = now.checked_sub(longest) {
        history.scale_up_events.retain(|(at, _)| *at > cutoff);
        history.scale_down_events.retain(|(at, _)| *at > cutoff);
    }
}
