//! The Rollout controller, the embedded runtime's adapter to the engine
//! (`weir_rollout::engine::step`): for each Rollout, what the gateway
//! serves (its rule's canary weight), the stable's and canary's counts in
//! the current analysis window (the requests its rule sent the versions
//! their DestinationRule subsets select; the window starts when the
//! status' step does, from a baseline of the gateway's cumulative counters
//! kept here), the canary's pod
//! template hash and any waiting user command; a weight it asks for becomes
//! a route change, the status is kept. For capacity before traffic it also
//! measures what the estimate needs: the rule's recent request rate, the
//! CPU a request costs on the stable's pods, and the canary Deployment with
//! its HPA and ready pods. A Rollout deleted mid-way leaves its rule as
//! `spec.revertOnDeletion` says (by default all to the stable).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use weir_api::k8s_openapi::api::apps::v1::Deployment;
use weir_api::quantity;
use weir_api::resource::{Kind, ObjectRef, Resource};
use weir_api::rollout::RolloutSpec;
use weir_api::version_stats::{VersionCounts, VersionKey};

mod action;
mod hook_calls;
mod route_edits;
mod targets;
pub mod workload;

pub use action::Action;

use super::contract::{Controller, World};
use crate::controllers::deployment::template_hash;
use crate::hpa::{HpaSpec, Settings, Target};
use crate::pods::{Phase, Pod, PodKey};
use crate::state::Objects;
use crate::store::ObjectMeta;
use crate::usage::CpuHistory;
use crate::webhooks::{HookKey, HookState};
use hook_calls::hook_calls;
use route_edits::route_edit;
use targets::{Targets, targets};
use weir_rollout::capacity::{CanaryHpa, CapacityInputs, CpuTarget};
use weir_rollout::engine::{
    self, CommandIntent, Observation, Prior, RolloutAction, RolloutStatus, Window,
};
use weir_rollout::hooks::HookAnswer;
use weir_rollout::traffic::synthetic_request;

/// Request-count samples kept per Rollout, at most.
const MAX_SAMPLES: usize = 256;

/// Drives every Rollout, remembering each one's recent request counts.
pub struct RolloutController {
    /// The window rates and CPU are measured over (the HPA's).
    pub window: Duration,
    /// The kernel's clock ticks per second (CPU samples are in ticks).
    pub ticks_per_second: u64,
    /// `(when, stable requests, canary requests)`, oldest first, per Rollout.
    samples: HashMap<ObjectRef, VecDeque<(Instant, u64, u64)>>,
    /// Per Rollout, the counters when its analysis window began.
    baselines: HashMap<ObjectRef, Baseline>,
    /// What each Rollout drove, to put back when it is deleted.
    driven: HashMap<ObjectRef, Driven>,
    /// Workloads whose Rollout was deleted, being handed back to their
    /// Deployment (`workload::hand_back`), with that Rollout's spec.
    handovers: Vec<(ObjectRef, RolloutSpec)>,
}

/// The gateway's cumulative counters when a window began.
struct Baseline {
    start: SystemTime,
    canary: VersionCounts,
    stable: VersionCounts,
}

impl Baseline {
    /// The counts of `t` since this baseline's start.
    fn window(&self, t: &Targets, now: SystemTime) -> Window {
        Window {
            start: self.start,
            end: now,
            canary: t.canary.since(&self.canary),
            stable: t.stable.since(&self.stable),
        }
    }
}

/// The rule a Rollout drove and what its deletion leaves there.
struct Driven {
    virtual_service: ObjectRef,
    rule_index: usize,
    spec: RolloutSpec,
}

impl RolloutController {
    /// A controller measuring over `window`.
    pub fn new(window: Duration, ticks_per_second: u64) -> Self {
        Self {
            window,
            ticks_per_second,
            samples: HashMap::new(),
            baselines: HashMap::new(),
            driven: HashMap::new(),
            handovers: Vec::new(),
        }
    }
}

/// What the Rollout controller looks at.
pub struct Observed<'a> {
    /// The runtime's clock.
    pub now: Instant,
    /// The wall clock: the engine's time, in its statuses.
    pub wall: SystemTime,
    /// The desired objects.
    pub objects: &'a Objects,
    /// Their generations.
    pub meta: &'a BTreeMap<ObjectRef, ObjectMeta>,
    /// The pods (the canary's ready ones, the stable's CPU).
    pub pods: &'a BTreeMap<PodKey, Pod>,
    /// CPU samples.
    pub cpu: &'a CpuHistory,
    /// Each rule's request counters per version, as the gateway counts
    /// them: keyed by the VirtualService (`namespace/name`), the rule's
    /// index and the version (read only when there is a Rollout).
    pub versions: HashMap<VersionKey, VersionCounts>,
    /// Each Rollout's status.
    pub rollout_status: &'a HashMap<ObjectRef, RolloutStatus>,
    /// Rollouts whose stored status could not be read, and why.
    pub rollout_status_unreadable: &'a HashMap<ObjectRef, String>,
    /// Commands waiting for Rollouts.
    pub rollout_commands: &'a HashMap<ObjectRef, CommandIntent>,
    /// Each Rollout's webhooks: latest answers, calls in flight.
    pub hooks: HashMap<HookKey, HookState>,
}

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Σ `resources.requests.cpu` of a Deployment's pod template, millicores;
/// `None` when a container has none.
fn template_cpu_request(d: &Deployment) -> Option<i64> {
    let containers = &d.spec.template.spec.as_ref()?.containers;
    containers
        .iter()
        .map(|c| {
            let q = c.resources.as_ref()?.requests.as_ref()?.get("cpu")?;
            quantity::cpu_millis(&q.0).ok()
        })
        .sum()
}

impl RolloutController {
    /// Records the counters now and gives the rule's recent rates,
    /// `(stable + canary, stable)` requests per second.
    fn rates(&mut self, rollout: &ObjectRef, now: Instant, t: &Targets) -> Option<(f64, f64)> {
        let samples = self.samples.entry(rollout.clone()).or_default();
        samples.push_back((now, t.stable.requests, t.canary.requests));
        while samples.len() > MAX_SAMPLES
            || samples
                .front()
                .is_some_and(|(at, ..)| now.duration_since(*at) > self.window)
        {
            samples.pop_front();
        }
        let &(oldest_at, s0, c0) = samples.front()?;
        let span = now.duration_since(oldest_at).as_secs_f64();
        if span < 1.0 {
            return None;
        }
        let stable = t.stable.requests.saturating_sub(s0) as f64 / span;
        let canary = t.canary.requests.saturating_sub(c0) as f64 / span;
        Some((stable + canary, stable))
    }

    /// What the canary's capacity is estimated from; `None` when its
    /// Deployment is not one known Deployment.
    fn capacity(
        &mut self,
        observed: &Observed<'_>,
        rollout: &ObjectRef,
        t: &Targets,
    ) -> Option<(ObjectRef, CapacityInputs)> {
        let rates = self.rates(rollout, observed.now, t);
        let ns = &rollout.namespace;
        let canary_selector = t.canary_selector.as_ref()?;
        let mut deployments = observed.objects.iter().filter_map(|r| match r {
            Resource::Deployment(d)
                if r.namespace() == ns
                    && d.spec
                        .template
                        .metadata
                        .as_ref()
                        .and_then(|m| m.labels.as_ref())
                        .is_some_and(|labels| matches(canary_selector, labels)) =>
            {
                Some((r.object_ref(), d))
            }
            _ => None,
        });
        let (deployment, d) = deployments.next()?;
        if deployments.next().is_some() {
            return None;
        }
        let hpa = observed.objects.iter().find_map(|r| {
            let (spec, kind, name) = match r {
                Resource::HpaV1(h) => (
                    HpaSpec::from_v1(h),
                    &h.spec.scale_target_ref.kind,
                    &h.spec.scale_target_ref.name,
                ),
                Resource::HpaV2(h) => (
                    HpaSpec::from_v2(h, &Settings::default()),
                    &h.spec.scale_target_ref.kind,
                    &h.spec.scale_target_ref.name,
                ),
                _ => return None,
            };
            (r.namespace() == ns && kind == "Deployment" && *name == deployment.name).then_some(
                CanaryHpa {
                    min: spec.min,
                    max: spec.max,
                    targets: spec
                        .targets
                        .iter()
                        .map(|t| match *t {
                            Target::Utilization(p) => CpuTarget::Utilization(p),
                            Target::AverageMillis(m) => CpuTarget::AverageMillis(m),
                        })
                        .collect(),
                },
            )
        });
        let ready = observed
            .pods
            .values()
            .filter(|p| {
                p.id.namespace == *ns
                    && p.id.deployment == deployment.name
                    && p.phase == Phase::Running
                    && p.ready
            })
            .count();
        let stable_cpu: Option<f64> = t.stable_selector.as_ref().and_then(|selector| {
            observed
                .pods
                .iter()
                .filter(|(_, p)| {
                    p.id.namespace == *ns
                        && p.phase == Phase::Running
                        && matches(selector, &p.id.labels)
                })
                .map(|(k, _)| {
                    observed
                        .cpu
                        .usage(k, self.window, self.ticks_per_second)
                        .map(|u| u.millis as f64)
                })
                .sum()
        });
        let cpu_per_request = match (stable_cpu, rates) {
            (Some(millis), Some((_, stable_rate))) if stable_rate > 0.0 => {
                Some(millis / stable_rate)
            }
            _ => None,
        };
        let inputs = CapacityInputs {
            rate: rates.map(|(all, _)| all),
            cpu_per_request,
            hpa,
            cpu_request: template_cpu_request(d),
            replicas: d.spec.replicas.unwrap_or(1),
            ready: i32::try_from(ready).unwrap_or(i32::MAX),
        };
        Some((deployment, inputs))
    }
}

/// Each of the Rollout's webhooks' latest answer.
fn latest_answers(
    rollout: &ObjectRef,
    spec: &RolloutSpec,
    hooks: &HashMap<HookKey, HookState>,
) -> Vec<HookAnswer> {
    spec.webhooks
        .iter()
        .filter_map(|h| {
            hooks
                .get(&(rollout.clone(), h.name.clone()))?
                .answer
                .clone()
        })
        .collect()
}

/// The engine's asks as actions: carried out (and served) before the
/// status is stored; a failed change ends the batch, and the status is
/// not stored.
fn engine_actions(
    spec: &RolloutSpec,
    rollout: &ObjectRef,
    t: &Targets,
    capacity: Option<&(ObjectRef, CapacityInputs)>,
    wanted: Vec<RolloutAction>,
) -> Vec<Action> {
    wanted
        .into_iter()
        .filter_map(|action| match action {
            RolloutAction::SetCanaryWeight(w) => Some(Action::SetRouteWeights {
                virtual_service: t.virtual_service.clone(),
                rule_index: t.rule_index,
                weights: vec![
                    (spec.stable.clone(), 100 - w.min(100)),
                    (spec.canary.clone(), w.min(100)),
                ],
            }),
            RolloutAction::ScaleCanary(replicas) => {
                capacity.map(|(deployment, _)| Action::ScaleAhead {
                    deployment: deployment.clone(),
                    replicas,
                })
            }
            edit => route_edit(
                spec,
                rollout,
                (&t.virtual_service, t.rule_index),
                t.canary_destination.as_ref(),
                edit,
            ),
        })
        .collect()
}

impl RolloutController {
    /// For each Rollout gone since the last pass, what its deletion leaves
    /// on its rule (`spec.revertOnDeletion`): all weight to the stable, its
    /// mirror and header rule removed.
    fn revert_deleted(&mut self, observed: &Observed<'_>, seen: &[ObjectRef]) -> Vec<Action> {
        let mut actions = Vec::new();
        let gone: Vec<ObjectRef> = self
            .driven
            .keys()
            .filter(|r| !seen.contains(r) && observed.objects.get(r).is_none())
            .cloned()
            .collect();
        for rollout in gone {
            let Some(driven) = self.driven.remove(&rollout) else {
                continue;
            };
            if let Some(w) = &driven.spec.workload_ref {
                let workload = ObjectRef {
                    kind: Kind::Deployment,
                    namespace: rollout.namespace.clone(),
                    name: w.name.clone(),
                };
                self.handovers.push((workload, driven.spec.clone()));
            }
            if driven.spec.revert_on_deletion.unwrap_or(true)
                && observed.objects.get(&driven.virtual_service).is_some()
            {
                actions.push(Action::SetRouteWeights {
                    virtual_service: driven.virtual_service.clone(),
                    rule_index: driven.rule_index,
                    weights: vec![
                        (driven.spec.stable.clone(), 100),
                        (driven.spec.canary.clone(), 0),
                    ],
                });
                // Its mirror and header rule go with it (the header rule
                // last: removing it shifts the rule's index).
                let rule = (&driven.virtual_service, driven.rule_index);
                for edit in [
                    RolloutAction::SetMirror(0),
                    RolloutAction::SetHeaderRoute(None),
                ] {
                    actions.extend(route_edit(&driven.spec, &rollout, rule, None, edit));
                }
            }
        }
        // Handed back once the Deployment's own pods are ready (or it is
        // gone), a step a pass; a Rollout releasing it again takes over.
        self.handovers.retain(|(workload, spec)| {
            if observed.objects.is_rollout_workload(workload) {
                return false;
            }
            match workload::hand_back(observed.objects, observed.pods, workload, spec) {
                workload::HandBack::Wait => true,
                workload::HandBack::Do(action) => {
                    actions.push(action);
                    true
                }
                workload::HandBack::Done => false,
            }
        });
        actions
    }
}

impl Controller for RolloutController {
    type Observed<'a> = Observed<'a>;
    type Action = Action;

    fn name(&self) -> &'static str {
        "rollout"
    }

    fn observe<'a>(&self, world: &World<'a>) -> Observed<'a> {
        let state = world.state;
        // Only Rollouts read the per-rule counters: no copy without one.
        let versions = if state.objects.iter().any(|r| r.kind() == Kind::Rollout) {
            world.gateway.rule_version_counts().into_iter().collect()
        } else {
            HashMap::new()
        };
        Observed {
            now: world.now,
            wall: world.wall,
            objects: &state.objects,
            meta: &state.meta,
            pods: &state.pods,
            cpu: &state.cpu,
            versions,
            rollout_status: &state.rollout_status,
            rollout_status_unreadable: &state.rollout_status_unreadable,
            rollout_commands: &state.rollout_commands,
            hooks: state.hook_calls.snapshot(),
        }
    }

    fn reconcile(&mut self, observed: &Observed<'_>) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut seen = Vec::new();
        for r in observed.objects.iter() {
            let Resource::Rollout(ro) = r else { continue };
            let rollout = r.object_ref();
            let Some(t) = targets(observed.objects, &observed.versions, &rollout, &ro.spec) else {
                continue;
            };
            seen.push(rollout.clone());
            let capacity = self.capacity(observed, &rollout, &t);
            let command = observed.rollout_commands.get(&rollout);
            let baseline = self.baselines.entry(rollout.clone()).or_insert(Baseline {
                start: observed.wall,
                canary: t.canary.clone(),
                stable: t.stable.clone(),
            });
            let window = baseline.window(&t, observed.wall);
            let revision = capacity.as_ref().and_then(|(deployment, _)| {
                match observed.objects.get(deployment) {
                    Some(Resource::Deployment(d)) => Some(template_hash(&d.spec.template)),
                    _ => None,
                }
            });
            let answers = latest_answers(&rollout, &ro.spec, &observed.hooks);
            let obs = Observation {
                now: observed.wall,
                served_weight: t.served_weight,
                window: Some(&window),
                command,
                capacity: capacity.as_ref().map(|(_, inputs)| inputs),
                canary_revision: revision.as_deref(),
                hooks: &answers,
                header_route: t.header_route,
                mirror: t.mirror,
                generation: observed.meta.get(&rollout).map(|m| m.generation),
            };
            let prior = match (
                observed.rollout_status.get(&rollout),
                observed.rollout_status_unreadable.get(&rollout),
            ) {
                (Some(status), _) => Prior::Known(status),
                (None, Some(why)) => Prior::Unreadable(why),
                (None, None) => Prior::New,
            };
            let (status, mut rollout_actions) = if ro.spec.workload_ref.is_some() {
                // A workload not (yet) there: nothing to release.
                let rule = (&t.virtual_service, t.rule_index);
                let Some(decided) = workload::decide(
                    observed.objects,
                    observed.pods,
                    &ro.spec,
                    &rollout,
                    prior,
                    &obs,
                    (rule, t.canary_destination.as_ref()),
                ) else {
                    continue;
                };
                decided
            } else {
                let (status, wanted) = engine::step(&ro.spec, prior, &obs);
                let actions = engine_actions(&ro.spec, &rollout, &t, capacity.as_ref(), wanted);
                (status, actions)
            };
            let mut status = status;
            if let Some(Action::SetRouteWeights { weights, .. }) = rollout_actions
                .iter()
                .rev()
                .find(|a| matches!(a, Action::SetRouteWeights { .. }))
            {
                status.canary_weight = weights.last().map_or(0, |(_, w)| *w);
            }
            actions.append(&mut rollout_actions);
            if status.step_started != baseline.start {
                *baseline = Baseline {
                    start: observed.wall,
                    canary: t.canary.clone(),
                    stable: t.stable.clone(),
                };
            }
            self.driven.insert(
                rollout.clone(),
                Driven {
                    virtual_service: t.virtual_service.clone(),
                    rule_index: t.rule_index,
                    spec: ro.spec.clone(),
                },
            );
            let load = status.traffic_rate.and_then(|rate| {
                let Some(Resource::VirtualService(vs)) = observed.objects.get(&t.virtual_service)
                else {
                    return None;
                };
                synthetic_request(&vs.spec, t.rule_index, &rollout.name)
                    .ok()
                    .map(|request| (rate, request))
            });
            actions.extend(hook_calls(
                &rollout,
                &ro.spec,
                &status,
                &answers,
                &observed.hooks,
                observed.wall,
            ));
            actions.push(Action::SetTraffic {
                rollout: rollout.clone(),
                load,
            });
            actions.push(Action::SetRolloutStatus {
                rollout,
                status: Box::new(status),
                took_command: command.is_some(),
            });
        }
        self.samples.retain(|r, _| seen.contains(r));
        self.baselines.retain(|r, _| seen.contains(r));
        actions.extend(self.revert_deleted(observed, &seen));
        actions
    }
}
