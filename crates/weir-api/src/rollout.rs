//! The `Rollout` kind (`weir.dev/v1alpha1`): the walkthrough's manual
//! canary steps as one automated, analysed, reversible rollout. It drives
//! the walkthrough's own objects — one VirtualService rule with a stable
//! and a canary subset — in Argo Rollouts' step vocabulary (`setWeight`,
//! `pause`, and `analysis` as a gate). This module holds its types, its
//! defaults, and which rule of which VirtualService it drives
//! ([`rollout_target`]), shared by validation and the runtime.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use crate::istio::{IstioObject, VirtualServiceSpec};
use crate::route::destination_label;
pub use crate::webhook::{DEFAULT_WEBHOOK_TIMEOUT, Webhook, WebhookKind};

/// The API group and version of the kind.
pub const API_VERSION: &str = "weir.dev/v1alpha1";

/// A Rollout: the envelope (apiVersion, kind, metadata) around its spec.
pub type Rollout = IstioObject<RolloutSpec>;

/// `Rollout.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// The one Deployment whose pod template this Rollout releases (Argo
    /// Rollouts' `workloadRef`, Flagger's `targetRef`): weir runs its
    /// revisions itself and makes the `stable` and `canary` subsets select
    /// them; absent, `stable` and `canary` select Deployments the user runs
    /// (the walkthrough's two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
    /// How long the previous stable revision keeps its pods after a
    /// promotion (default 30s, Argo's), for connections and caches to
    /// drain; only with `workloadRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay: Option<String>,
    /// The VirtualService it drives, in the Rollout's namespace.
    pub virtual_service: String,
    /// The http rule: its name or index; absent, the one rule that routes
    /// to both subsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<IntOrString>,
    /// The subset serving now.
    pub stable: String,
    /// The subset being rolled out.
    pub canary: String,
    /// What to do, in order.
    pub steps: Vec<RolloutStep>,
    /// How the canary is judged; required by `analysis` steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
    /// Load weir sends itself while a gate lacks requests; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficSpec>,
    /// No progress for this long rolls back (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
    /// HTTP hooks at Flagger's points of a rollout (`pre-rollout`,
    /// `rollout`, `confirm-rollout`, `confirm-promotion`, `post-rollout`,
    /// `rollback`), sent Flagger's JSON.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    /// Whether deleting the Rollout mid-way sends all traffic back to the
    /// stable (Flagger's `revertOnDeletion`; default true); false leaves
    /// the weights where they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_on_deletion: Option<bool>,
}

/// `spec.workloadRef`: the Deployment a Rollout releases.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `apps/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `Deployment`, the only kind a Rollout releases.
    pub kind: String,
    /// The Deployment's name, in the Rollout's namespace.
    pub name: String,
}

/// The label weir gives each revision's pods and adds to the `stable` and
/// `canary` subsets of the DestinationRule, its template's hash (Argo's
/// `rollouts-pod-template-hash`).
pub const REVISION_LABEL: &str = "weir.dev/revision";

/// The annotation on a revision's Deployment naming the workload it runs
/// a revision of.
pub const WORKLOAD_ANNOTATION: &str = "weir.dev/workload";

/// The annotation on a revision's Deployment saying which it is: `stable`,
/// `canary`, or `retiring` (a former stable waiting for its scale-down).
pub const ROLE_ANNOTATION: &str = "weir.dev/revision-role";

/// Defaults of a workload's revisions.
pub const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);

/// The name of a workload's revision Deployment: the workload's and the
/// template hash, as Kubernetes names a ReplicaSet.
pub fn revision_name(workload: &str, revision: &str) -> String {
    format!("{workload}-{revision}")
}

/// One step: exactly one of its fields is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStep {
    /// Give the canary this share (percent); the next step waits until the
    /// gateway serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i64>,
    /// Wait for a conclusive Pass of `spec.analysis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisGate>,
    /// Wait this long, or, without a duration, for `weir rollout promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,
    /// Send requests that match to the canary (A/B: a rule of their own
    /// before the Rollout's); an empty `match` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<HeaderRouteStep>,
    /// Copy a share of the rule's requests to the canary while the stable
    /// answers them; 0 stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_mirror: Option<MirrorStep>,
}

/// A `setHeaderRoute` step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeaderRouteStep {
    /// Istio's match blocks (OR-ed), as in a VirtualService rule.
    #[serde(default, rename = "match")]
    pub matches: Vec<crate::istio::HttpMatchRequest>,
}

/// A `setMirror` step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MirrorStep {
    /// Percent of the rule's requests copied, 0–100.
    pub percentage: i64,
}

/// An `analysis: {}` step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalysisGate {}

/// A `pause` step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PauseStep {
    /// How long; absent waits for a promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// `spec.analysis`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// How often the canary is judged (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Confidence of the intervals (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// The canary's share of answers that are not 5xx: its least value,
    /// and/or how far below the stable's it may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<SuccessRateGoal>,
    /// A latency percentile's bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyGoal>,
    /// Fail verdicts in a row that roll back (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<u32>,
}

/// `analysis.successRate`: at least one bound.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuccessRateGoal {
    /// The least non-5xx share, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// How many percentage points the canary's non-5xx share may be below
    /// the stable's over the same window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drop_from_stable: Option<f64>,
}

/// `analysis.latency`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyGoal {
    /// Which percentile (e.g. 99).
    pub percentile: f64,
    /// Its upper bound, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<f64>,
    /// Its upper bound relative to the stable's same percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio_to_stable: Option<f64>,
}

/// `spec.traffic`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficSpec {
    /// Requests per second at most.
    pub rate: f64,
}

/// What a step does, read from its one set field.
#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    /// Set the canary's weight (percent).
    SetWeight(u32),
    /// Wait for the analysis to pass.
    Analysis,
    /// Wait this long, or for a promote.
    Pause(Option<Duration>),
    /// Route matching requests to the canary (`true`), or stop (`false`).
    SetHeaderRoute(bool),
    /// Mirror this share (percent) to the canary.
    SetMirror(u32),
}

impl RolloutStep {
    /// The step's kind; `None` when not exactly one field is set or a value
    /// is out of range (validation reports which).
    pub fn kind(&self) -> Option<StepKind> {
        if self.fields_set() != 1 {
            return None;
        }
        if let Some(w) = self.set_weight {
            return u32::try_from(w)
                .ok()
                .filter(|w| *w <= 100)
                .map(StepKind::SetWeight);
        }
        if self.analysis.is_some() {
            return Some(StepKind::Analysis);
        }
        if let Some(p) = &self.pause {
            return match &p.duration {
                None => Some(StepKind::Pause(None)),
                Some(d) => crate::duration::parse(d)
                    .ok()
                    .map(|d| StepKind::Pause(Some(d))),
            };
        }
        if let Some(h) = &self.set_header_route {
            return Some(StepKind::SetHeaderRoute(!h.matches.is_empty()));
        }
        self.set_mirror.as_ref().and_then(|m| {
            u32::try_from(m.percentage)
                .ok()
                .filter(|p| *p <= 100)
                .map(StepKind::SetMirror)
        })
    }

    /// How many of its fields are set (a step is exactly one).
    pub fn fields_set(&self) -> usize {
        [
            self.set_weight.is_some(),
            self.analysis.is_some(),
            self.pause.is_some(),
            self.set_header_route.is_some(),
            self.set_mirror.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count()
    }
}

/// The name of the rule a Rollout's `setHeaderRoute` steps add to its
/// VirtualService (before the rule it drives).
pub fn header_rule_name(rollout: &str) -> String {
    format!("weir-header-{rollout}")
}

/// A user's command to a Rollout (`weir rollout ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutCommand {
    /// Past the current pause or analysis gate.
    Promote,
    /// Straight to the end: all weight to the canary.
    PromoteFull,
    /// Stop where it is.
    Pause,
    /// Go on after a pause.
    Resume,
    /// All weight to the stable now.
    Abort,
    /// Start again after RolledBack or Aborted, or from a held status.
    Retry,
    /// Stop holding the rule's weights and pause (`weir route --force`):
    /// a person routes by hand until `resume` (or `retry`).
    YieldRoute,
}

/// A command as an intent: persisted until the controller acknowledges it
/// in the status, applied at most once (its id), and only to the step it
/// was meant for — a `promote` sent twice, or after the rollout moved on,
/// does not skip a second step. Never a spec edit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandIntent {
    /// Unique per intent.
    pub id: String,
    /// What to do.
    pub command: RolloutCommand,
    /// The step the user saw when issuing it; `None`: whatever step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
}

/// The Rollout (of `rollouts`, `(name, spec)` in the VirtualService's
/// namespace) that drives rule `rule_index` of VirtualService `vs_name`:
/// one owner per rule, which `weir route` does not override unasked.
pub fn rule_owner<'a>(
    vs_name: &str,
    vs: &VirtualServiceSpec,
    rule_index: usize,
    mut rollouts: impl Iterator<Item = (&'a str, &'a RolloutSpec)>,
) -> Option<&'a str> {
    rollouts
        .find(|(_, spec)| {
            spec.virtual_service == vs_name
                && rollout_target(spec, vs).is_ok_and(|t| t.rule_index == rule_index)
        })
        .map(|(name, _)| name)
}

/// Whether the latency goal can be judged on a histogram with `edges`:
/// the field and the reason when it cannot. A `maxRatioToStable` below
/// the widest ratio of two neighbouring edges could never Pass a canary as
/// fast as the stable once both percentiles fall in one bucket (weir's
/// buckets: 1.1; Envoy's: up to 5, between 1 and 5 ms); a `maxMs` inside a
/// bucket wider than weir's would leave percentiles within that bucket
/// Inconclusive forever, and one beyond the last finite edge could never
/// Fail. The first bucket (from 0) is left out of the ratio: a percentile
/// that fast is judged absolutely, not relatively.
pub fn latency_resolution(
    goal: &LatencyGoal,
    edges: &crate::version_stats::BucketEdges,
) -> Option<(&'static str, String)> {
    let finite = edges.finite_edges();
    if let Some(ratio) = goal.max_ratio_to_stable {
        let widest = finite
            .windows(2)
            .map(|w| w[1] / w[0])
            .fold(1.0_f64, f64::max);
        if ratio < widest * (1.0 - 1e-9) {
            return Some((
                "maxRatioToStable",
                format!(
                    "Invalid value: {ratio}: finer than the latency histogram resolves: neighbouring bucket edges differ up to {widest:.3}×, so a canary as fast as the stable could show no better ratio and would never Pass; use at least {widest:.3}"
                ),
            ));
        }
    }
    if let Some(max) = goal.max_ms {
        let last = finite.last().copied().unwrap_or(0.0);
        if max > last {
            return Some((
                "maxMs",
                format!(
                    "Invalid value: {max}: above the histogram's last finite edge ({last} ms): a slower canary could never be shown to miss it"
                ),
            ));
        }
        let at_or_above = finite.partition_point(|&e| e < max);
        let upper = finite[at_or_above];
        if at_or_above == 0 && upper != max {
            return Some((
                "maxMs",
                format!(
                    "Invalid value: {max}: below the histogram's first edge ({upper} ms): no percentile could be shown within it; use at least {upper}"
                ),
            ));
        }
        let lower = at_or_above.checked_sub(1).map_or(0.0, |i| finite[i]);
        if upper != max && lower > 0.0 && upper / lower > 1.1 + 1e-9 {
            return Some((
                "maxMs",
                format!(
                    "Invalid value: {max}: between the histogram's edges {lower} and {upper} ms: a percentile within them could never be judged; use {lower} or {upper}"
                ),
            ));
        }
    }
    None
}

/// Defaults of §analysis and the deadline, in one place.
pub mod defaults {
    use std::time::Duration;

    /// `analysis.interval`.
    pub const INTERVAL: Duration = Duration::from_secs(10);
    /// `analysis.confidence`.
    pub const CONFIDENCE: f64 = 0.95;
    /// `analysis.failureLimit`.
    pub const FAILURE_LIMIT: u32 = 1;
    /// `progressDeadline`.
    pub const PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
}

/// The rule a Rollout drives, resolved against its VirtualService.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutTarget {
    /// The rule's index in `spec.http`.
    pub rule_index: usize,
}

/// Which rule of `vs` a Rollout drives, and that it routes to both of its
/// subsets; the error says why not, in one sentence.
pub fn rollout_target(
    spec: &RolloutSpec,
    vs: &VirtualServiceSpec,
) -> Result<RolloutTarget, String> {
    let routes_to = |i: usize, subset: &str| {
        vs.http[i]
            .route
            .iter()
            .flatten()
            .any(|d| destination_label(d) == subset)
    };
    let both = |i: usize| routes_to(i, &spec.stable) && routes_to(i, &spec.canary);
    let rule_index = match &spec.route {
        Some(IntOrString::Int(i)) => {
            let i =
                usize::try_from(*i).map_err(|_| "a rule index cannot be negative".to_owned())?;
            if i >= vs.http.len() {
                return Err(format!(
                    "the VirtualService {:?} has no http rule {i} (it has {})",
                    spec.virtual_service,
                    vs.http.len()
                ));
            }
            i
        }
        Some(IntOrString::String(name)) => vs
            .http
            .iter()
            .position(|r| r.name.as_deref() == Some(name))
            .ok_or_else(|| {
                format!(
                    "the VirtualService {:?} has no http rule named {name:?}",
                    spec.virtual_service
                )
            })?,
        None => {
            let candidates: Vec<usize> = (0..vs.http.len()).filter(|&i| both(i)).collect();
            match candidates.as_slice() {
                [one] => *one,
                [] => {
                    return Err(format!(
                        "no http rule of the VirtualService {:?} routes to both {:?} and {:?}",
                        spec.virtual_service, spec.stable, spec.canary
                    ));
                }
                several => {
                    return Err(format!(
                        "http rules {several:?} of the VirtualService {:?} all route to both subsets; name one in spec.route",
                        spec.virtual_service
                    ));
                }
            }
        }
    };
    if !both(rule_index) {
        return Err(format!(
            "http rule {rule_index} of the VirtualService {:?} does not route to both {:?} and {:?}",
            spec.virtual_service, spec.stable, spec.canary
        ));
    }
    Ok(RolloutTarget { rule_index })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version_stats::{BucketEdges, ENVOY_DURATION_EDGES_MS};

    #[test]
    fn latency_goals_finer_than_the_histogram_are_refused_with_the_reason() {
        let envoy = BucketEdges::Explicit(ENVOY_DURATION_EDGES_MS.to_vec());
        let fine = BucketEdges::Fine;
        let goal = |max_ms: Option<f64>, ratio: Option<f64>| LatencyGoal {
            percentile: 99.0,
            max_ms,
            max_ratio_to_stable: ratio,
        };
        // (goal, edges, the field refused and words of its reason, or None)
        let cases = [
            (goal(None, Some(2.0)), &fine, None),
            (goal(None, Some(1.1)), &fine, None),
            (
                goal(None, Some(1.05)),
                &fine,
                Some(("maxRatioToStable", "use at least 1.100")),
            ),
            (
                goal(None, Some(2.0)),
                &envoy,
                Some(("maxRatioToStable", "up to 5.000")),
            ),
            (goal(None, Some(5.0)), &envoy, None),
            (goal(Some(500.0), None), &fine, None),
            (goal(Some(333.0), None), &fine, None),
            (goal(Some(500.0), None), &envoy, None),
            (
                goal(Some(300.0), None),
                &envoy,
                Some(("maxMs", "use 250 or 500")),
            ),
            (
                goal(Some(0.3), None),
                &envoy,
                Some(("maxMs", "use at least 0.5")),
            ),
            (
                goal(Some(4_000_000.0), None),
                &envoy,
                Some(("maxMs", "last finite edge")),
            ),
        ];
        for (goal, edges, expected) in cases {
            let got = latency_resolution(&goal, edges);
            match (expected, &got) {
                (None, None) => {}
                (Some((field, words)), Some((f, why))) => {
                    assert_eq!(*f, field, "{goal:?}");
                    assert!(why.contains(words), "{goal:?}: {why}");
                }
                _ => panic!("{goal:?} on {edges:?}: {got:?}"),
            }
        }
    }
}
