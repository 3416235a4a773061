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
pub use crate::route::RuleSelector;

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
    /// "read from the ingress gateway's Envoy configuration", "sampled").
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// The container (`-c`); see [`log_containers`] for the default.
    pub container: Option<String>,
    /// Every container's log, init containers first (`--all-containers`).
    pub all_containers: bool,
    /// Keep the stream open for new lines (`-f`).
    pub follow: bool,
    /// Start with only the last this many lines (`--tail`).
    pub tail_lines: Option<u64>,
    /// Only lines from this long ago on (`--since`).
    pub since: Option<std::time::Duration>,
    /// Each line with its timestamp (`--timestamps`).
    pub timestamps: bool,
}

/// Containers injected beside the application, skipped when choosing the
/// container whose log a pod shows by default.
pub const SIDECAR_CONTAINERS: [&str; 3] = ["istio-proxy", "istio-validation", "linkerd-proxy"];

/// The annotation that names a pod's default container, as kubectl reads it.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Which containers' logs `options` asks for, given the pod (as the API
/// returns it): the one named with `-c` (init containers included); all of
/// them, init containers first, with `--all-containers`; otherwise the one
/// the default-container annotation names, else the first that is not a
/// known sidecar, else the first. An API server refuses a log request
/// without a container for a pod of several (400); kubectl chooses so.
pub fn log_containers(
    pod: &serde_json::Value,
    options: &LogOptions,
) -> Result<Vec<String>, String> {
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    if let Some(wanted) = &options.container {
        return if containers.contains(wanted) || init.contains(wanted) {
            Ok(vec![wanted.clone()])
        } else {
            Err(format!(
                "container {wanted} is not valid for pod {pod_name} (it has: {})",
                init.iter()
                    .chain(&containers)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
    }
    if options.all_containers {
        return Ok(init.into_iter().chain(containers).collect());
    }
    let annotated = pod["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION]
        .as_str()
        .filter(|name| containers.iter().any(|c| c == name));
    let chosen = annotated
        .map(str::to_owned)
        .or_else(|| {
            containers
                .iter()
                .find(|c| !SIDECAR_CONTAINERS.contains(&c.as_str()))
                .cloned()
        })
        .or_else(|| containers.first().cloned());
    chosen
        .map(|c| vec![c])
        .ok_or_else(|| format!("pod {pod_name} has no containers"))
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

    /// Patches one object as `kubectl patch` does (`weir patch`); whether
    /// it changed.
    fn patch(
        &self,
        object: &ObjectRef,
        kind: crate::patch::PatchType,
        patch: &serde_json::Value,
    ) -> impl Future<Output = Result<ApplyOutcome, BackendError>> + Send;

    /// Sets a Deployment's replicas (`weir scale`, kubectl's: through the
    /// scale subresource on a cluster).
    fn scale(
        &self,
        deployment: &ObjectRef,
        replicas: i32,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The nodes' addresses, where `NodePort` Services are reached
    /// (`weir service NAME --url`).
    fn node_addresses(&self) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;

    /// An object's events (`core/v1` Event JSON), oldest first, for
    /// `describe`.
    fn events(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<Vec<serde_json::Value>, BackendError>> + Send;

    /// The ingress gateway's Istio metrics as Prometheus text (several
    /// replicas' samples are concatenated; readers add them up).
    fn gateway_metrics(&self) -> impl Future<Output = Result<String, BackendError>> + Send;

    /// Each pod of a namespace that asks to be scraped
    /// ([`crate::scrape::scrape_target`]): its name and its own metrics
    /// text, as Prometheus reads the application's `http_requests_total`.
    /// A pod that does not answer is left out.
    fn app_metrics(
        &self,
        namespace: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, BackendError>> + Send;

    /// CPU use of each pod of a namespace, in millicores, as the autoscaler
    /// measures it.
    fn pod_cpu(
        &self,
        namespace: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, i64>, BackendError>> + Send;

    /// Hands a Rollout a command intent (`weir rollout promote|...`) and
    /// returns the Rollout once its controller acknowledged the intent in
    /// the status (`None`: it has no status yet).
    fn rollout_command(
        &self,
        rollout: &ObjectRef,
        intent: &crate::rollout::CommandIntent,
    ) -> impl Future<Output = Result<Option<LiveObject>, BackendError>> + Send;

    /// The pod template a Deployment had before its current one
    /// (`weir rollout undo deployment/NAME`); `None`: it had none.
    fn previous_template(
        &self,
        deployment: &ObjectRef,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, BackendError>> + Send;

    /// The namespace used where a command names none.
    fn default_namespace(&self) -> &str;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(containers: &[&str], init: &[&str], default: Option<&str>) -> serde_json::Value {
        let list = |names: &[&str]| names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        let mut pod = json!({"metadata": {"name": "my-app-v1-a"}, "spec": {
            "containers": list(containers), "initContainers": list(init)}});
        if let Some(d) = default {
            pod["metadata"]["annotations"] = json!({ DEFAULT_CONTAINER_ANNOTATION: d });
        }
        pod
    }

    #[test]
    fn the_container_whose_log_is_shown_is_chosen_as_kubectl_chooses() {
        let options = |container: Option<&str>, all: bool| LogOptions {
            container: container.map(str::to_owned),
            all_containers: all,
            ..LogOptions::default()
        };
        let injected = pod(&["istio-proxy", "my-app"], &["istio-init"], None);
        /// A pod, the options, and the containers read (or the refusal).
        type Case<'a> = (
            &'a serde_json::Value,
            LogOptions,
            Result<Vec<&'a str>, &'a str>,
        );
        let cases: [Case; 8] = [
            (
                &pod(&["my-app"], &[], None),
                options(None, false),
                Ok(vec!["my-app"]),
            ),
            (&injected, options(None, false), Ok(vec!["my-app"])),
            (
                &pod(&["my-app", "istio-proxy"], &[], Some("istio-proxy")),
                options(None, false),
                Ok(vec!["istio-proxy"]),
            ),
            // An annotation naming no container is ignored, as kubectl does.
            (
                &pod(&["istio-proxy", "my-app"], &[], Some("gone")),
                options(None, false),
                Ok(vec!["my-app"]),
            ),
            (
                &pod(&["istio-proxy"], &[], None),
                options(None, false),
                Ok(vec!["istio-proxy"]),
            ),
            (
                &injected,
                options(Some("istio-init"), false),
                Ok(vec!["istio-init"]),
            ),
            (
                &injected,
                options(None, true),
                Ok(vec!["istio-init", "istio-proxy", "my-app"]),
            ),
            (
                &injected,
                options(Some("app"), false),
                Err(
                    "container app is not valid for pod my-app-v1-a (it has: istio-init, istio-proxy, my-app)",
                ),
            ),
        ];
        for (pod, options, expected) in cases {
            let got = log_containers(pod, &options);
            let expected = expected
                .map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>())
                .map_err(str::to_owned);
            assert_eq!(got, expected, "{options:?}");
        }
        assert!(log_containers(&pod(&[], &[], None), &LogOptions::default()).is_err());
    }
}
