//! What the engine reads and writes: a Rollout's status (CRD-shaped: RFC
//! 3339 times, conditions with reasons, desired and served weight apart),
//! what it observes at one moment, the user's commands, and what it asks
//! a backend to do. Types only; the decisions are in [`crate::engine`].

use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weir_api::version_stats::VersionCounts;

use crate::analysis::Judgement;
use crate::budget::ErrorBudget;
use crate::capacity::{CapacityEstimate, CapacityInputs};

/// A webhook's latest answer, as the backend observed it.
#[derive(Clone, Debug, PartialEq)]
pub struct HookAnswer {
    /// The hook's name.
    pub name: String,
    /// When the call was sent.
    pub sent: SystemTime,
    /// Whether it answered 2xx.
    pub ok: bool,
    /// The status code and the start of the body, or why there was none.
    pub detail: String,
}

/// Where a rollout is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Working through its steps.
    #[default]
    Progressing,
    /// Waiting for `weir rollout promote` or `resume` (analysis goes on).
    Paused,
    /// Every step done.
    Succeeded,
    /// Rolled back by a Fail verdict or the progress deadline.
    RolledBack,
    /// Rolled back by `weir rollout abort`.
    Aborted,
}

/// Every phase, for metrics that show one as 1 and the others as 0.
pub const ALL_PHASES: [Phase; 5] = [
    Phase::Progressing,
    Phase::Paused,
    Phase::Succeeded,
    Phase::RolledBack,
    Phase::Aborted,
];

impl Phase {
    /// Whether it is over (until `retry`).
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::RolledBack | Phase::Aborted)
    }

    /// Whether all traffic is held on the stable.
    pub fn is_rolled_back(self) -> bool {
        matches!(self, Phase::RolledBack | Phase::Aborted)
    }
}

pub use weir_api::rollout::{CommandIntent, RolloutCommand as Command};

/// What became of a command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Acknowledgement {
    /// The intent's id.
    pub id: String,
    /// The command.
    #[schemars(with = "String")]
    pub command: Command,
    /// The step it was meant for.
    #[serde(default)]
    pub step: Option<usize>,
    /// `applied`, or why not.
    pub outcome: String,
    /// When (RFC 3339).
    pub time: String,
}

/// How many acknowledgements are kept.
pub const ACKNOWLEDGED: usize = 10;

/// One line of the rollout's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// When (RFC 3339).
    pub time: String,
    /// What happened.
    pub message: String,
}

/// How many history lines are kept.
pub const HISTORY: usize = 20;

/// A condition, as Kubernetes objects carry them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// What it is about: `Held` (the rollout waits on something that is not
    /// the canary's fault or its own progress) or `Analysis`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: String,
    /// A CamelCase reason: `SharedIncident`, `StatusUnreadable`,
    /// `InconclusiveAtDeadline`, `Pass`, `Fail`, `Inconclusive`.
    pub reason: String,
    /// In words.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
}

/// What a workload's revision is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RevisionRole {
    /// Serves the stable subset.
    Stable,
    /// Serves the canary subset.
    Canary,
    /// A former stable, kept until its scale-down time.
    Retiring,
}

/// One revision of a Rollout's workload, as `weir rollout status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionStatus {
    /// Its pod template hash.
    pub revision: String,
    /// Its role.
    pub role: RevisionRole,
    /// The replicas it is given.
    pub replicas: i32,
    /// Its ready pods when decided.
    pub ready: i32,
    /// A retiring revision's scale-down time (RFC 3339).
    #[serde(default, with = "rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub scale_down_at: Option<SystemTime>,
}

/// A Rollout's status: what a backend stores and `weir rollout status`
/// shows. CRD-shaped: every field has a default, times are RFC 3339, and
/// its JSON schema ([`schema`]) is generated from these types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutStatus {
    /// Where it is.
    pub phase: Phase,
    /// The step it is on (the number of steps when done).
    pub current_step: usize,
    /// The canary's weight the gateway serves.
    pub canary_weight: u32,
    /// The canary's weight the rollout set and holds; `None` before its
    /// first `setWeight`.
    #[serde(default)]
    pub desired_weight: Option<u32>,
    /// The plan this status follows: a digest of the fields that change it
    /// (an edit of others does not restart the rollout).
    pub plan_hash: String,
    /// The canary Deployment's pod template hash when the rollout started;
    /// a new one restarts it.
    #[serde(default)]
    pub canary_revision: Option<String>,
    /// The Rollout's `metadata.generation` this status is about.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// With `workloadRef`: the revision (pod template hash) serving as the
    /// stable; `None` before the workload was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// With `workloadRef`: each revision weir runs, its role and replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<RevisionStatus>,
    /// When the current step began: the analysis window starts then.
    #[serde(with = "rfc3339")]
    #[schemars(with = "String")]
    pub step_started: SystemTime,
    /// When it last moved forward (the progress deadline's clock).
    #[serde(with = "rfc3339")]
    #[schemars(with = "String")]
    pub last_progress: SystemTime,
    /// When the canary was last judged in the current step.
    #[serde(default, with = "rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub last_analysis: Option<SystemTime>,
    /// How many times it was judged since the rollout started.
    #[serde(default)]
    pub analyses: u64,
    /// Fail verdicts in a row.
    pub failures_in_row: u32,
    /// The last judgement of each goal.
    pub verdicts: Vec<Judgement>,
    /// How the user's confidence is spent over this attempt.
    pub budget: ErrorBudget,
    /// The rate (req/s) of the load weir sends itself while an analysis
    /// gate lacks requests (`spec.traffic`); `None`: none now.
    #[serde(default)]
    pub traffic_rate: Option<f64>,
    /// The latest webhook answer already counted (a failed check, a
    /// rollback): each counts once.
    #[serde(default, with = "rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub hooks_counted: Option<SystemTime>,
    /// When it ended (Succeeded, RolledBack or Aborted): `post-rollout`
    /// hooks are told once after.
    #[serde(default, with = "rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub finished: Option<SystemTime>,
    /// The last capacity estimate before raising the canary's weight.
    #[serde(default)]
    pub capacity: Option<CapacityEstimate>,
    /// Conditions: what holds it, and the analysis' state.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The latest commands and what became of each, oldest first.
    #[serde(default)]
    pub commands: Vec<Acknowledgement>,
    /// What it is doing or waiting for, or why it ended.
    pub message: String,
    /// The latest events, oldest first.
    pub history: Vec<Event>,
}

impl Default for RolloutStatus {
    fn default() -> Self {
        Self {
            phase: Phase::default(),
            current_step: 0,
            canary_weight: 0,
            desired_weight: None,
            plan_hash: String::new(),
            canary_revision: None,
            observed_generation: None,
            stable_revision: None,
            revisions: Vec::new(),
            step_started: SystemTime::UNIX_EPOCH,
            last_progress: SystemTime::UNIX_EPOCH,
            last_analysis: None,
            analyses: 0,
            failures_in_row: 0,
            verdicts: Vec::new(),
            budget: ErrorBudget::default(),
            traffic_rate: None,
            hooks_counted: None,
            finished: None,
            capacity: None,
            conditions: Vec::new(),
            commands: Vec::new(),
            message: String::new(),
            history: Vec::new(),
        }
    }
}

/// The status' JSON schema (`openAPIV3Schema`-ready), generated from the
/// types.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RolloutStatus)).unwrap_or_default()
}

/// The counts of one analysis window.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// When it began.
    pub start: SystemTime,
    /// When it was read.
    pub end: SystemTime,
    /// The canary's requests in it.
    pub canary: VersionCounts,
    /// The stable's.
    pub stable: VersionCounts,
}

/// What the engine knew of a Rollout before this decision.
#[derive(Clone, Copy, Debug)]
pub enum Prior<'a> {
    /// Never seen: it starts.
    New,
    /// Its last status.
    Known(&'a RolloutStatus),
    /// A status was stored but cannot be read (why): it holds, never
    /// starting again from step 0 on its own.
    Unreadable(&'a str),
}

/// What the engine observes at one moment.
pub struct Observation<'a> {
    /// The wall clock.
    pub now: SystemTime,
    /// The canary's weight the gateway serves now.
    pub served_weight: u32,
    /// The counts since the window began (the backend starts a window when
    /// the status' `stepStarted` moves); `None`: not readable now.
    pub window: Option<&'a Window>,
    /// A user's command, if one is waiting.
    pub command: Option<&'a CommandIntent>,
    /// What the canary's capacity is estimated from; `None`: the canary's
    /// Deployment is not known, and weights move without an estimate.
    pub capacity: Option<&'a CapacityInputs>,
    /// The canary Deployment's pod template hash, when known.
    pub canary_revision: Option<&'a str>,
    /// Each webhook's latest answer (`spec.webhooks`).
    pub hooks: &'a [HookAnswer],
    /// The `setHeaderRoute` step whose match the gateway serves as the
    /// Rollout's header rule; `None`: no such rule.
    pub header_route: Option<usize>,
    /// The share (percent) of the rule's requests mirrored to the canary.
    pub mirror: u32,
    /// The Rollout's `metadata.generation`, when the backend keeps one.
    pub generation: Option<i64>,
}

/// What the engine asks of the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutAction {
    /// Route this share (percent) to the canary, the rest to the stable.
    SetCanaryWeight(u32),
    /// Raise the canary Deployment's replicas to this before its share grows.
    ScaleCanary(i32),
    /// Route requests matching this `setHeaderRoute` step's match to the
    /// canary; `None`: remove the header rule.
    SetHeaderRoute(Option<usize>),
    /// Mirror this share (percent) of the rule's requests to the canary.
    SetMirror(u32),
}

/// Times as RFC 3339 text, as Kubernetes statuses carry them.
pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes a time.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
    }

    /// Reads a time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)
    }

    /// The same for an optional time.
    pub mod option {
        use std::time::SystemTime;

        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes an optional time.
        pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        /// Reads an optional time.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}
