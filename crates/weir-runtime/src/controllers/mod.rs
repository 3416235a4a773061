//! The controllers, as in kube-controller-manager and the kubelet: each
//! takes what it needs from the runtime's state ([`World`]), decides
//! without IO, and returns its own actions, which say how they are carried
//! out through the runtime's [`Effects`]. The runtime's loop calls each due
//! controller in turn and carries out its actions before the next one
//! looks. A new controller is a module here implementing [`Controller`],
//! added to the list the runtime builds; no other controller changes.

pub mod deployment;
pub mod endpoints;
pub mod hpa;
pub mod kubelet;
pub mod rollout;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use weir_api::resource::ObjectRef;
use weir_gateway::{Endpoint, Gateway, ServiceKey};

use crate::error::RuntimeError;
use crate::hpa::HpaStatus;
use crate::pods::PodKey;
use crate::state::State;
use weir_rollout::engine::RolloutStatus;
use weir_rollout::traffic::SyntheticRequest;

/// What the runtime holds at the start of a controller's turn, for the
/// controller to take what it needs from ([`Controller::observe`]).
pub struct World<'a> {
    /// The runtime's clock.
    pub now: Instant,
    /// The wall clock, for timestamps shown to users.
    pub wall: SystemTime,
    /// The runtime's state: objects, pods, statuses.
    pub state: &'a State,
    /// Containers that exited since the last pass, with their exit codes
    /// (`None`: killed by a signal).
    pub exits: &'a [(PodKey, Option<i32>)],
    /// The gateway, for what it counted.
    pub gateway: &'a Gateway,
}

/// A controller: what it observes, and a decision over it. The runtime
/// asks it for its observation, calls [`Controller::reconcile`], and
/// carries out the actions it returns ([`Effect`]) before the next
/// controller looks, so a pod created by one is seen by the next.
pub trait Controller: Send {
    /// What it reads, taken from the [`World`].
    type Observed<'a>;
    /// What it asks for.
    type Action: Effect;

    /// Its name, for log lines.
    fn name(&self) -> &'static str;

    /// How often it runs; `None`: on every pass of the loop (every 100 ms
    /// and on every change).
    fn period(&self) -> Option<Duration> {
        None
    }

    /// Takes what it needs from the runtime's state.
    fn observe<'a>(&self, world: &World<'a>) -> Self::Observed<'a>;

    /// The actions it wants, given what it observed.
    fn reconcile(&mut self, observed: &Self::Observed<'_>) -> Vec<Self::Action>;
}

/// A controller's actions, carried out in order through the runtime's
/// [`Effects`]; the first failure stops the rest (a pod is never signalled
/// after a failed gateway update).
pub trait Effect: Sized + Send {
    /// Does what `actions` ask.
    fn carry_out<E: Effects>(
        actions: Vec<Self>,
        effects: &mut E,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
}

/// What the runtime can do for a controller: the one place pods are
/// created and signalled, objects changed and the gateway told.
pub trait Effects: Send {
    /// Creates a pod of `deployment` from its template; `false` when it
    /// cannot (logged).
    fn create_pod(&mut self, deployment: &ObjectRef, template_hash: &str) -> bool;

    /// Runs the loop again soon (new pods' containers start on the next
    /// pass, after their records).
    fn wake(&mut self);

    /// Begins a pod's graceful termination (out of the endpoints first).
    fn terminate(&mut self, pod: &PodKey);

    /// Records a container's exit and when it may restart.
    fn record_exit(
        &mut self,
        pod: &PodKey,
        code: Option<i32>,
        crash_streak: u32,
        backoff_until: Instant,
    );

    /// Starts a pod's container.
    fn start(&mut self, pod: &PodKey);

    /// SIGTERMs a terminating pod's container (it is out of the endpoints).
    fn stop(&mut self, pod: &PodKey);

    /// SIGKILLs a pod's container (grace period over).
    fn kill(&mut self, pod: &PodKey);

    /// Drops a terminated pod and its record.
    fn forget(&mut self, pod: &PodKey);

    /// Serves the current routes with these ready endpoints.
    fn publish(
        &mut self,
        endpoints: HashMap<ServiceKey, Vec<Endpoint>>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Sets a Deployment's replicas (the HPA's scale).
    fn scale(&mut self, deployment: &ObjectRef, replicas: i32) -> impl Future<Output = ()> + Send;

    /// Raises a Deployment's replicas ahead of traffic; its HPA holds them
    /// as one of its own recommendations.
    fn scale_ahead(
        &mut self,
        deployment: &ObjectRef,
        replicas: i32,
    ) -> impl Future<Output = ()> + Send;

    /// Records an HPA's status after a sync.
    fn set_hpa_status(&mut self, hpa: ObjectRef, status: HpaStatus);

    /// Sets a VirtualService rule's weights, as `weir route` does: stored,
    /// and served by the gateway before the next action.
    fn set_route_weights(
        &mut self,
        virtual_service: &ObjectRef,
        rule_index: usize,
        weights: &[(String, u32)],
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Sends (or, with `None`, stops) weir's own load through the gateway
    /// for a Rollout: requests per second and the request its rule matches.
    fn set_traffic(
        &mut self,
        rollout: ObjectRef,
        load: Option<(f64, SyntheticRequest)>,
    ) -> impl Future<Output = ()> + Send;

    /// Records a Rollout's status after a decision (stored when it
    /// changed), and whether the decision took the waiting command.
    fn set_rollout_status(&mut self, rollout: ObjectRef, status: RolloutStatus, took_command: bool);
}

#[cfg(test)]
pub(crate) mod testing {
    //! Observations for the controllers' tests.

    use std::collections::BTreeMap;

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
}
