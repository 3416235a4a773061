//! The HorizontalPodAutoscaler, Kubernetes' algorithm exactly: the replica
//! calculation of `replica_calculator.go` ([`calculate`]) and the
//! controller's normalization of `horizontal.go` ([`reconcile`]), both the
//! legacy path (no `behavior`: every autoscaling/v1 HPA) and the `behavior`
//! path. Pure functions over explicit time, so every rule is testable.

mod calculate;
mod reconcile;
mod spec;
mod status;

pub use calculate::{Calculation, CalculationError, PodSample, Usage, calculate};
pub use reconcile::{Condition, Decision, HpaHistory, reconcile};
pub use spec::{
    Behavior, HpaSpec, Policy, PolicyKind, Rules, SelectPolicy, Settings, Target, Tolerances,
};
pub use status::{HpaStatus, StatusCondition};
