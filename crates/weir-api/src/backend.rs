//! The seam between the `weir` commands and what runs the walkthrough: the
//! embedded runtime on one machine, or a Kubernetes cluster with Istio.
//! Both implement [`Backend`]; the commands are written once against it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use serde::{Deserialize, Serialize};

use crate::load::Manifests;
use crate::resource::{Kind, ObjectRef};

/// An object as the backend holds it now, in Kubernetes' JSON shape with
/// its status (as `kubectl get -o json` prints it). Both backends produce
/// this natively (the embedded runtime from its state, the Kubernetes one
/// from the API server), and the commands read it by JSON path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveObject {
    /// The kind.
    pub kind: Kind,
    /// The object.
    pub object: serde_json::Value,
}

impl LiveObject {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// What changed in a watched kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum WatchEvent {
    /// Created or changed (the object's new state).
    Applied(LiveObject),
    /// Deleted (its last state).
    Deleted(LiveObject),
}

/// What `apply` did to each object, in kubectl's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// It did not exist.
    Created,
    /// It existed and differed.
    Configured,
    /// It existed and was the same.
    Unchanged,
}

/// Which http rule of a VirtualService `set_route_weights` changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleSelector {
    /// The only rule, or the first one that has weighted destinations.
    Default,
    /// The rule with this `name`.
    Named(String),
    /// The rule at this index of `spec.http`.
    Index(usize),
}

/// A weight change that the data plane now serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteChange {
    /// The rule changed, by index.
    pub rule_index: usize,
    /// `(subset, weight)` before.
    pub before: Vec<(String, u32)>,
    /// `(subset, weight)` now.
    pub after: Vec<(String, u32)>,
    /// How serving was confirmed (e.g. "gateway snapshot swapped",
    /// "Reconciled condition", "sampled 400 requests").
    pub confirmed_by: String,
    /// From the request to confirmation.
    pub elapsed: Duration,
}

/// Why a backend call failed. Each kind maps to one documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The runtime or API server cannot be reached (exit 3).
    #[error("cannot reach {what}: {reason}")]
    Unreachable {
        /// The runtime's socket or the API server's URL.
        what: String,
        /// The underlying error.
        reason: String,
    },
    /// The input was rejected; nothing was changed (exit 2). One message
    /// per problem, each naming file, line and field where it has them.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// The named object does not exist (exit 2, as kubectl's NotFound).
    #[error("{0} not found")]
    NotFound(ObjectRef),
    /// The change conflicts with another writer (exit 1).
    #[error("conflict on {object}: {reason}")]
    Conflict {
        /// The object.
        object: ObjectRef,
        /// What conflicted.
        reason: String,
    },
    /// The credentials may not do this (exit 1).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The backend failed at the task (exit 1).
    #[error("{0}")]
    Failed(String),
    /// The operation did not finish in time (exit 1).
    #[error("timed out after {0:?}: {1}")]
    Timeout(Duration, String),
}

impl BackendError {
    /// The process exit code `docs/CLI.md` gives this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            BackendError::Unreachable { .. } => 3,
            BackendError::Invalid(_) | BackendError::NotFound(_) => 2,
            BackendError::Conflict { .. }
            | BackendError::Forbidden(_)
            | BackendError::Failed(_)
            | BackendError::Timeout(..) => 1,
        }
    }
}

/// A stream of watch events, ending when the backend goes away.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, BackendError>> + Send>>;

/// A pod's log lines.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<String, BackendError>> + Send>>;

/// What part of a pod's log to show, as kubectl's `logs` flags say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open for new lines (`-f`).
    pub follow: bool,
    /// Start with only the last this many lines (`--tail`).
    pub tail_lines: Option<u64>,
    /// Only lines from this long ago on (`--since`).
    pub since: Option<std::time::Duration>,
    /// Each line with its timestamp (`--timestamps`).
    pub timestamps: bool,
}

/// The operations the CLI needs from whatever runs the walkthrough.
///
/// Every mutating call either applies completely or changes nothing, and
/// returns only when the change is in effect: `apply` once the objects are
/// stored (pods start asynchronously, as on a cluster), `set_route_weights`
/// once the data plane serves the new weights.
pub trait Backend: Send + Sync {
    /// Creates or updates the loaded objects, all or nothing; errors name
    /// the files they were loaded from.
    fn apply(
        &self,
        manifests: &Manifests,
    ) -> impl Future<Output = Result<Vec<(ObjectRef, ApplyOutcome)>, BackendError>> + Send;

    /// Deletes the objects; absent ones are reported, not an error.
    fn delete(
        &self,
        objects: &[ObjectRef],
    ) -> impl Future<Output = Result<Vec<(ObjectRef, bool)>, BackendError>> + Send;

    /// One object, with its status, or `None` if absent.
    fn get(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<Option<LiveObject>, BackendError>> + Send;

    /// Every object of a kind in a namespace.
    fn list(
        &self,
        kind: Kind,
        namespace: &str,
    ) -> impl Future<Output = Result<Vec<LiveObject>, BackendError>> + Send;

    /// Changes to a kind in a namespace, starting with the current objects
    /// as `Applied` events (kubectl's `get -w`); ends when dropped.
    fn watch(
        &self,
        kind: Kind,
        namespace: &str,
    ) -> impl Future<Output = Result<WatchStream, BackendError>> + Send;

    /// Sets the weights of one rule of a VirtualService, persists them, and
    /// returns once the data plane serves them.
    fn set_route_weights(
        &self,
        virtual_service: &ObjectRef,
        rule: &RuleSelector,
        weights: &[(String, u32)],
    ) -> impl Future<Output = Result<RouteChange, BackendError>> + Send;

    /// A pod's log, as `options` ask (follow, the last lines only).
    fn logs(
        &self,
        pod: &ObjectRef,
        options: &LogOptions,
    ) -> impl Future<Output = Result<LogStream, BackendError>> + Send;

    /// Where the ingress gateway takes requests (`http://host:port`), for
    /// `weir load` and `weir verify` when no URL is given.
    fn gateway_url(&self) -> impl Future<Output = Result<String, BackendError>> + Send;

    /// An object's events (`core/v1` Event JSON), oldest first, for
    /// `describe`.
    fn events(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<Vec<serde_json::Value>, BackendError>> + Send;

    /// The ingress gateway's Istio metrics as Prometheus text (several
    /// replicas' samples are concatenated; readers add them up).
    fn gateway_metrics(&self) -> impl Future<Output = Result<String, BackendError>> + Send;

    /// CPU use of each pod of a namespace, in millicores, as the autoscaler
    /// measures it.
    fn pod_cpu(
        &self,
        namespace: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, i64>, BackendError>> + Send;

    /// The namespace used where a command names none.
    fn default_namespace(&self) -> &str;
}
