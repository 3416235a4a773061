//! The HPA's specification as the algorithm reads it, built from
//! autoscaling/v1 or v2 objects with Kubernetes' defaults.

use std::time::Duration;

use weir_api::k8s_openapi::api::autoscaling::{v1, v2};
use weir_api::quantity;

/// What the autoscaler aims at, per pod.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Average CPU utilization, percent of the pods' requests.
    Utilization(i32),
    /// Average CPU usage in millicores.
    AverageMillis(i64),
}

/// `selectPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectPolicy {
    /// The policy allowing the biggest change (default).
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// `Pods` or `Percent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// A number of pods per period.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// One scaling policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Pods or Percent.
    pub kind: PolicyKind,
    /// How many pods or percent.
    pub value: i32,
    /// Over how long.
    pub period: Duration,
}

/// The rules of one direction.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// `stabilizationWindowSeconds`.
    pub window: Duration,
    /// `selectPolicy`.
    pub select: SelectPolicy,
    /// `policies`.
    pub policies: Vec<Policy>,
    /// `tolerance` (Kubernetes 1.33+): this direction's own tolerance;
    /// `None` uses the controller's.
    pub tolerance: Option<f64>,
}

/// `spec.behavior`, defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    /// Scaling up.
    pub scale_up: Rules,
    /// Scaling down.
    pub scale_down: Rules,
}

/// The controller's flags (`--horizontal-pod-autoscaler-*`), with Kubernetes' defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// `--horizontal-pod-autoscaler-tolerance` (0.1).
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (5 min).
    pub cpu_initialization_period: Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (30 s).
    pub initial_readiness_delay: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (5 min).
    pub downscale_stabilization: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
            downscale_stabilization: Duration::from_secs(300),
        }
    }
}

/// The band around a usage ratio of 1 in which the HPA holds
/// (Kubernetes 1.33+: each direction's own tolerance, bounds compared
/// directly, so a ratio of exactly 1 + tolerance holds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    /// How far above 1 the ratio may be.
    pub scale_up: f64,
    /// How far below 1 the ratio may be.
    pub scale_down: f64,
}

impl Tolerances {
    /// The tolerances for an HPA: its behavior's where set, else the controller's.
    pub fn of(spec: &HpaSpec, settings: &Settings) -> Self {
        let rule = |r: Option<&Rules>| r.and_then(|r| r.tolerance).unwrap_or(settings.tolerance);
        Self {
            scale_up: rule(spec.behavior.as_ref().map(|b| &b.scale_up)),
            scale_down: rule(spec.behavior.as_ref().map(|b| &b.scale_down)),
        }
    }

    /// The same tolerance both ways.
    pub fn both(tolerance: f64) -> Self {
        Self {
            scale_up: tolerance,
            scale_down: tolerance,
        }
    }

    /// Whether `ratio` is close enough to 1 to hold.
    pub fn within(&self, ratio: f64) -> bool {
        1.0 - self.scale_down <= ratio && ratio <= 1.0 + self.scale_up
    }
}

/// An HPA as the algorithm reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct HpaSpec {
    /// `minReplicas` (default 1).
    pub min: i32,
    /// `maxReplicas`.
    pub max: i32,
    /// CPU targets (several metrics: the largest recommendation wins).
    pub targets: Vec<Target>,
    /// `behavior`, when the object has one.
    pub behavior: Option<Behavior>,
}

/// The CPU target autoscaling/v1 uses when `targetCPUUtilizationPercentage` is unset.
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;

impl HpaSpec {
    /// From an autoscaling/v1 HPA: one CPU utilization target, no behavior.
    pub fn from_v1(hpa: &v1::HorizontalPodAutoscaler) -> Self {
        Self {
            min: hpa.spec.min_replicas.unwrap_or(1),
            max: hpa.spec.max_replicas,
            targets: vec![Target::Utilization(
                hpa.spec
                    .target_cpu_utilization_percentage
                    .unwrap_or(DEFAULT_CPU_UTILIZATION),
            )],
            behavior: None,
        }
    }

    /// From an autoscaling/v2 HPA (validated: Resource cpu metrics only).
    pub fn from_v2(hpa: &v2::HorizontalPodAutoscaler, settings: &Settings) -> Self {
        let targets = hpa
            .spec
            .metrics
            .iter()
            .flatten()
            .filter_map(|m| m.resource.as_ref())
            .filter_map(|r| match r.target.type_.as_str() {
                "Utilization" => r.target.average_utilization.map(Target::Utilization),
                "AverageValue" => r
                    .target
                    .average_value
                    .as_ref()
                    .and_then(|q| quantity::cpu_millis(&q.0).ok())
                    .map(Target::AverageMillis),
                _ => None,
            })
            .collect::<Vec<_>>();
        Self {
            min: hpa.spec.min_replicas.unwrap_or(1),
            max: hpa.spec.max_replicas,
            // v2 without metrics defaults to 80% CPU, as the API server does.
            targets: if targets.is_empty() {
                vec![Target::Utilization(DEFAULT_CPU_UTILIZATION)]
            } else {
                targets
            },
            behavior: hpa
                .spec
                .behavior
                .as_ref()
                .map(|b| behavior_with_defaults(b, settings)),
        }
    }
}

/// `SetDefaults_HorizontalPodAutoscalerBehavior`: scale-up 0 s window, Max
/// of 100 %/15 s and 4 pods/15 s; scale-down the controller's window
/// (5 min), 100 %/15 s.
fn behavior_with_defaults(
    b: &v2::HorizontalPodAutoscalerBehavior,
    settings: &Settings,
) -> Behavior {
    let fifteen = Duration::from_secs(15);
    let rules = |r: Option<&v2::HPAScalingRules>, window: Duration, policies: Vec<Policy>| Rules {
        window: r
            .and_then(|r| r.stabilization_window_seconds)
            .map_or(window, |s| Duration::from_secs(s.max(0) as u64)),
        select: match r.and_then(|r| r.select_policy.as_deref()) {
            Some("Min") => SelectPolicy::Min,
            Some("Disabled") => SelectPolicy::Disabled,
            _ => SelectPolicy::Max,
        },
        policies: r
            .and_then(|r| r.policies.as_ref())
            .map(|ps| {
                ps.iter()
                    .map(|p| Policy {
                        kind: if p.type_ == "Pods" {
                            PolicyKind::Pods
                        } else {
                            PolicyKind::Percent
                        },
                        value: p.value,
                        period: Duration::from_secs(p.period_seconds.max(0) as u64),
                    })
                    .collect()
            })
            .unwrap_or(policies),
        tolerance: r
            .and_then(|r| r.tolerance.as_ref())
            .and_then(|q| quantity::cpu_millis(&q.0).ok())
            .map(|millis| millis as f64 / 1000.0),
    };
    Behavior {
        scale_up: rules(
            b.scale_up.as_ref(),
            Duration::ZERO,
            vec![
                Policy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: fifteen,
                },
                Policy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period: fifteen,
                },
            ],
        ),
        scale_down: rules(
            b.scale_down.as_ref(),
            settings.downscale_stabilization,
            vec![Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period: fifteen,
            }],
        ),
    }
}
