//! An HPA's status as the API shows it (`kubectl get/describe hpa`), built
//! from one sync's [`Decision`](super::Decision).

use serde::Serialize;

use super::{Condition, Decision};

/// `status` of a HorizontalPodAutoscaler, in autoscaling/v1's field names
/// plus the average usage weir measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HpaStatus {
    /// The target's replicas when the controller last synced.
    pub current_replicas: i32,
    /// What the controller wants.
    pub desired_replicas: i32,
    /// Average CPU utilization of the target's pods, percent of requests.
    #[serde(rename = "currentCPUUtilizationPercentage")]
    pub current_cpu_utilization_percentage: Option<i32>,
    /// Average CPU usage, millicores.
    pub current_average_millis: Option<i64>,
    /// When the controller last changed the target's replicas (RFC 3339).
    pub last_scale_time: Option<String>,
    /// AbleToScale, ScalingActive, ScalingLimited.
    pub conditions: Vec<StatusCondition>,
}

/// One status condition in the API's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusCondition {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// "True" or "False".
    pub status: &'static str,
    /// Why, in one word.
    pub reason: &'static str,
    /// Why, in words.
    pub message: String,
}

impl From<&Condition> for StatusCondition {
    fn from(c: &Condition) -> Self {
        Self {
            kind: c.kind,
            status: if c.status { "True" } else { "False" },
            reason: c.reason,
            message: c.message.clone(),
        }
    }
}

impl HpaStatus {
    /// The status after a sync: `now_rfc3339` becomes the last scale time
    /// when the decision rescales, else the `previous` one is kept.
    pub fn after(
        current: i32,
        decision: &Decision,
        previous: Option<&HpaStatus>,
        now_rfc3339: &str,
    ) -> Self {
        Self {
            current_replicas: current,
            desired_replicas: decision.desired,
            current_cpu_utilization_percentage: decision.utilization,
            current_average_millis: decision.average_millis,
            last_scale_time: if decision.rescale {
                Some(now_rfc3339.to_owned())
            } else {
                previous.and_then(|p| p.last_scale_time.clone())
            },
            conditions: merged_conditions(previous, decision),
        }
    }
}

/// Kubernetes' `setCondition` for each condition of the sync: it replaces the
/// previous status's condition of its type, or is appended; conditions the
/// sync did not set (a sync that only rescales into range sets AbleToScale
/// alone) keep their previous value.
fn merged_conditions(previous: Option<&HpaStatus>, decision: &Decision) -> Vec<StatusCondition> {
    let mut conditions: Vec<StatusCondition> =
        previous.map(|p| p.conditions.clone()).unwrap_or_default();
    for c in &decision.conditions {
        let c = StatusCondition::from(c);
        match conditions.iter_mut().find(|old| old.kind == c.kind) {
            Some(old) => *old = c,
            None => conditions.push(c),
        }
    }
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(rescale: bool) -> Decision {
        Decision {
            desired: 3,
            rescale,
            utilization: Some(120),
            average_millis: Some(120),
            conditions: vec![Condition {
                kind: "AbleToScale",
                status: true,
                reason: "ReadyForNewScale",
                message: "m".into(),
            }],
        }
    }

    #[test]
    fn a_sync_replaces_the_conditions_it_sets_and_keeps_the_others() {
        let limited = Condition {
            kind: "ScalingLimited",
            status: true,
            reason: "TooFewReplicas",
            message: "m".into(),
        };
        let mut full = decision(false);
        full.conditions.push(limited);
        let before = HpaStatus::after(3, &full, None, "t0");
        let mut rescale = decision(true);
        rescale.conditions[0].reason = "SucceededRescale";
        let after = HpaStatus::after(3, &rescale, Some(&before), "t1");
        let kinds: Vec<(&str, &str)> = after
            .conditions
            .iter()
            .map(|c| (c.kind, c.reason))
            .collect();
        assert_eq!(
            kinds,
            [
                ("AbleToScale", "SucceededRescale"),
                ("ScalingLimited", "TooFewReplicas")
            ]
        );
    }

    #[test]
    fn keeps_the_last_scale_time_until_the_next_rescale() {
        let first = HpaStatus::after(1, &decision(true), None, "2026-01-01T00:00:00Z");
        assert_eq!(
            first.last_scale_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        let steady = HpaStatus::after(3, &decision(false), Some(&first), "2026-01-01T00:01:00Z");
        assert_eq!(steady.last_scale_time, first.last_scale_time);
        let json = serde_json::to_value(&steady).unwrap();
        assert_eq!(json["currentCPUUtilizationPercentage"], 120);
        assert_eq!(json["desiredReplicas"], 3);
        assert_eq!(json["conditions"][0]["type"], "AbleToScale");
        assert_eq!(json["conditions"][0]["status"], "True");
        let never = HpaStatus::after(1, &decision(false), None, "x");
        assert_eq!(
            serde_json::to_value(&never).unwrap()["lastScaleTime"],
            serde_json::Value::Null
        );
    }
}
