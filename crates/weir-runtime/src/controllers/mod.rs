//! The controllers, as in kube-controller-manager and the kubelet: each
//! reads what the runtime observed and returns the actions it wants; none
//! does IO. The runtime's loop gathers the observations, calls each due
//! controller in turn, and carries out its actions before the next one
//! looks, so a pod created by one is seen by the next. A new controller
//! implements [`Controller`] and is added to the list the runtime builds;
//! no other controller changes.

pub mod deployment;
pub mod endpoints;
pub mod hpa;
pub mod kubelet;
pub mod rollout;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use weir_api::resource::ObjectRef;
use weir_api::version_stats::{VersionCounts, VersionKey};
use weir_gateway::{Endpoint, ServiceKey};

use crate::hpa::HpaStatus;
use crate::pods::Pod;
use crate::pods::PodKey;
use crate::state::{HpaStatuses, Objects, Published};
use crate::store::ObjectMeta;
use crate::usage::CpuHistory;
use weir_rollout::engine::{CommandIntent, RolloutStatus};
use weir_rollout::traffic::SyntheticRequest;

/// What the controllers see: the state at the start of their turn.
pub struct Observed<'a> {
    /// The runtime's clock.
    pub now: Instant,
    /// The wall clock, for timestamps shown to users.
    pub wall: SystemTime,
    /// The desired objects.
    pub objects: &'a Objects,
    /// Their creation times and uids.
    pub meta: &'a BTreeMap<ObjectRef, ObjectMeta>,
    /// The pods.
    pub pods: &'a BTreeMap<PodKey, Pod>,
    /// Containers that exited since the last pass, with their exit codes
    /// (`None`: killed by a signal).
    pub exits: &'a [(PodKey, Option<i32>)],
    /// CPU samples.
    pub cpu: &'a CpuHistory,
    /// The HPAs' last status.
    pub hpa_status: &'a HpaStatuses,
    /// What the gateway serves.
    pub published: Option<&'a Published>,
    /// Each rule's request counters per version, as the gateway counts
    /// them: keyed by the VirtualService (`namespace/name`), the rule's
    /// index and the version.
    pub versions: &'a HashMap<VersionKey, VersionCounts>,
    /// Each Rollout's status.
    pub rollout_status: &'a HashMap<ObjectRef, RolloutStatus>,
    /// Rollouts whose stored status could not be read, and why.
    pub rollout_status_unreadable: &'a HashMap<ObjectRef, String>,
    /// Commands waiting for Rollouts.
    pub rollout_commands: &'a HashMap<ObjectRef, CommandIntent>,
    /// Replicas raised ahead of traffic, by Deployment: when, and to what.
    pub scaled_ahead: &'a HashMap<ObjectRef, (Instant, i32)>,
}

/// Something a controller wants done; the runtime does it.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// A new pod of a Deployment, from its current template.
    CreatePod {
        /// The Deployment.
        deployment: ObjectRef,
        /// The template's `pod-template-hash`.
        template_hash: String,
    },
    /// Begin a pod's graceful termination (out of the endpoints first).
    Terminate(PodKey),
    /// A container exited: record it and when it may restart.
    RecordExit {
        /// The pod.
        pod: PodKey,
        /// Its exit code (`None`: a signal).
        code: Option<i32>,
        /// Crashes in a row, for the next backoff.
        crash_streak: u32,
        /// No restart before this.
        backoff_until: Instant,
    },
    /// Start a pod's container.
    Start(PodKey),
    /// SIGTERM a terminating pod's container (it is out of the endpoints).
    Stop(PodKey),
    /// SIGKILL a pod's container (grace period over).
    Kill(PodKey),
    /// A terminated pod is gone: drop it and its record.
    Forget(PodKey),
    /// Serve the current routes with these ready endpoints.
    Publish(HashMap<ServiceKey, Vec<Endpoint>>),
    /// Set a Deployment's replicas (the HPA's scale).
    Scale {
        /// The Deployment.
        deployment: ObjectRef,
        /// Its new replica count.
        replicas: i32,
    },
    /// Raise a Deployment's replicas ahead of traffic (a Rollout's
    /// capacity before traffic); its HPA holds them as one of its own
    /// recommendations, through its downscale stabilization window.
    ScaleAhead {
        /// The Deployment.
        deployment: ObjectRef,
        /// Its new replica count.
        replicas: i32,
    },
    /// An HPA's status after a sync.
    SetHpaStatus(ObjectRef, HpaStatus),
    /// Set a VirtualService rule's weights, as `weir route` does: stored,
    /// and served by the gateway before the next action.
    SetRouteWeights {
        /// The VirtualService.
        virtual_service: ObjectRef,
        /// The rule's index.
        rule_index: usize,
        /// `(subset, weight)`.
        weights: Vec<(String, u32)>,
    },
    /// Send (or stop sending) weir's own load through the gateway for a
    /// Rollout whose analysis gate lacks requests (`spec.traffic`).
    SetTraffic {
        /// The Rollout.
        rollout: ObjectRef,
        /// Requests per second, and the request its rule matches; `None`:
        /// stop.
        load: Option<(f64, SyntheticRequest)>,
    },
    /// A Rollout's status after a decision (stored when it changed).
    SetRolloutStatus {
        /// The Rollout.
        rollout: ObjectRef,
        /// Its status.
        status: Box<RolloutStatus>,
        /// Whether the decision took the waiting command.
        took_command: bool,
    },
}

/// A controller: a decision over observations.
pub trait Controller: Send {
    /// Its name, for log lines.
    fn name(&self) -> &'static str;

    /// How often it runs; `None`: on every pass of the loop (every 100 ms
    /// and on every change).
    fn period(&self) -> Option<Duration> {
        None
    }

    /// The actions it wants, given what is observed.
    fn reconcile(&mut self, observed: &Observed<'_>) -> Vec<Action>;
}

#[cfg(test)]
pub(crate) mod testing {
    //! Observations for the controllers' tests.

    use super::*;
    use crate::launch::Launch;
    use crate::pods::{Phase, Pod};

    /// A pod of `deployment` with `template_hash`, created `age_s` seconds
    /// before the epoch + 1000 s, in `phase`.
    pub fn pod(name: &str, deployment: &str, template_hash: &str, phase: Phase) -> Pod {
        let mut pod = Pod::fresh(
            crate::pods::PodIdentity {
                name: name.into(),
                namespace: "default".into(),
                deployment: deployment.into(),
                template_hash: template_hash.into(),
                labels: [("app".to_owned(), deployment.to_owned())].into(),
                annotations: BTreeMap::new(),
                ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 1, 0, 2)),
                container: Default::default(),
                grace: Duration::from_secs(30),
                launch: Launch::default(),
                created: SystemTime::UNIX_EPOCH,
                token: "t".into(),
                config_error: None,
            },
            Instant::now(),
        );
        pod.phase = phase;
        pod
    }

    /// Observations over `objects` and `pods` at `now`.
    pub fn observed<'a>(
        objects: &'a Objects,
        pods: &'a BTreeMap<PodKey, Pod>,
        exits: &'a [(PodKey, Option<i32>)],
        now: Instant,
    ) -> Observed<'a> {
        static META: std::sync::OnceLock<BTreeMap<ObjectRef, ObjectMeta>> =
            std::sync::OnceLock::new();
        static CPU: std::sync::OnceLock<CpuHistory> = std::sync::OnceLock::new();
        static HPA: std::sync::OnceLock<HpaStatuses> = std::sync::OnceLock::new();
        static VERSIONS: std::sync::OnceLock<HashMap<VersionKey, VersionCounts>> =
            std::sync::OnceLock::new();
        static ROLLOUTS: std::sync::OnceLock<HashMap<ObjectRef, RolloutStatus>> =
            std::sync::OnceLock::new();
        static UNREADABLE: std::sync::OnceLock<HashMap<ObjectRef, String>> =
            std::sync::OnceLock::new();
        static COMMANDS: std::sync::OnceLock<HashMap<ObjectRef, CommandIntent>> =
            std::sync::OnceLock::new();
        static AHEAD: std::sync::OnceLock<HashMap<ObjectRef, (Instant, i32)>> =
            std::sync::OnceLock::new();
        Observed {
            now,
            wall: SystemTime::UNIX_EPOCH,
            objects,
            meta: META.get_or_init(BTreeMap::new),
            pods,
            exits,
            cpu: CPU.get_or_init(CpuHistory::default),
            hpa_status: HPA.get_or_init(HashMap::new),
            published: None,
            versions: VERSIONS.get_or_init(HashMap::new),
            rollout_status: ROLLOUTS.get_or_init(HashMap::new),
            rollout_status_unreadable: UNREADABLE.get_or_init(HashMap::new),
            rollout_commands: COMMANDS.get_or_init(HashMap::new),
            scaled_ahead: AHEAD.get_or_init(HashMap::new),
        }
    }
}
