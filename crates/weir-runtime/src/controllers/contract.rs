//! What a controller is ([`Controller`]: its own observation, decision and
//! actions), what the runtime offers it ([`World`] to observe, [`Effects`]
//! to act through), and how the loop runs any controller ([`Turn`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use weir_api::resource::{ObjectRef, Resource};
use weir_api::rollout::Webhook;
use weir_api::route::RouteEdit;
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

/// A controller's action, carried out through the runtime's [`Effects`].
pub trait Effect: Sized + Send + 'static {
    /// Does what the action asks.
    fn apply<E: Effects>(
        self,
        effects: &mut E,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Does what `actions` ask, in order; the first failure stops the rest
    /// (a pod is never signalled after a failed gateway update).
    fn carry_out<E: Effects>(
        actions: Vec<Self>,
        effects: &mut E,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        async move {
            for action in actions {
                action.apply(effects).await?;
            }
            Ok(())
        }
    }
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

    /// Writes objects a controller owns (a Rollout's revisions, the
    /// subsets that select them) through the runtime's one write path:
    /// taken in, served by the gateway and stored, or nothing changes.
    fn write_objects(
        &mut self,
        resources: Vec<Resource>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Edits a VirtualService as it is now (a Rollout's header rule or
    /// mirror), through the runtime's one write path.
    fn edit_route(
        &mut self,
        virtual_service: &ObjectRef,
        edit: &RouteEdit,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Calls a Rollout's webhook with `payload` (JSON) in a task of its
    /// own, unless a call of it is in flight; its answer is observed later.
    fn call_webhook(&mut self, rollout: ObjectRef, hook: Webhook, payload: Vec<u8>);

    /// Deletes objects a controller owns (a Rollout's revision); their
    /// pods go as an orphan's do.
    fn delete_objects(&mut self, objects: &[ObjectRef]) -> Result<(), RuntimeError>;
}

/// The runtime a controller runs in, as the loop's turn needs it: its
/// gateway (observed) and its [`Effects`] over its state at a time.
pub trait Host: Sync + 'static {
    /// The effects over one turn's state.
    type Effects<'e>: Effects
    where
        Self: 'e;

    /// Its gateway.
    fn gateway(&self) -> &Gateway;

    /// Its effects on `state` at `now`.
    fn effects<'e>(&'e self, state: &'e mut State, now: Instant) -> Self::Effects<'e>;
}

/// The future of one controller's turn.
pub type TurnFuture<'a> = Pin<Box<dyn Future<Output = Result<(), RuntimeError>> + Send + 'a>>;

/// Any controller, as the loop runs it on host `H`: observe, decide,
/// carry out.
pub trait Turn<H>: Send {
    /// The controller's name, for log lines.
    fn name(&self) -> &'static str;

    /// How often it runs; `None`: on every pass.
    fn period(&self) -> Option<Duration>;

    /// Observes `state` (and what exited), decides, and carries out the
    /// actions through the host's effects.
    fn turn<'a>(
        &'a mut self,
        host: &'a H,
        state: &'a mut State,
        exits: &'a [(PodKey, Option<i32>)],
        now: Instant,
    ) -> TurnFuture<'a>;
}

impl<C: Controller, H: Host> Turn<H> for C {
    fn name(&self) -> &'static str {
        Controller::name(self)
    }

    fn period(&self) -> Option<Duration> {
        Controller::period(self)
    }

    fn turn<'a>(
        &'a mut self,
        host: &'a H,
        state: &'a mut State,
        exits: &'a [(PodKey, Option<i32>)],
        now: Instant,
    ) -> TurnFuture<'a> {
        let actions = {
            let world = World {
                now,
                wall: SystemTime::now(),
                state,
                exits,
                gateway: host.gateway(),
            };
            let observed = self.observe(&world);
            self.reconcile(&observed)
        };
        Box::pin(async move {
            let mut effects = host.effects(state, now);
            C::Action::carry_out(actions, &mut effects).await
        })
    }
}
