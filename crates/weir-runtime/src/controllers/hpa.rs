//! The HorizontalPodAutoscaler controller: every sync period, each HPA's
//! target pods and their CPU usage go through Kubernetes' algorithm
//! ([`crate::hpa::reconcile`]); the result is the HPA's status and, when
//! it says so, a new replica count for the Deployment.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use weir_api::resource::{Kind, ObjectRef, Resource};
use weir_api::rollout::{ROLE_ANNOTATION, WORKLOAD_ANNOTATION};

use super::contract::{Controller, Effect, Effects, World};
use crate::error::RuntimeError;
use crate::hpa::{self, HpaHistory, HpaSpec, HpaStatus, PodSample, Settings};
use crate::pods::{self, Phase, Pod, PodKey};
use crate::state::{HpaStatuses, Objects};
use crate::store::ObjectMeta;
use crate::usage::CpuHistory;

/// The HPA controller and what it remembers of each HPA between syncs.
pub struct HpaController {
    /// The sync period (15 s, as kube-controller-manager's default).
    pub sync_period: Duration,
    /// The window CPU usage is averaged over.
    pub metrics_window: Duration,
    /// The kernel's clock ticks per second (CPU samples are in ticks).
    pub ticks_per_second: u64,
    /// The controller's tunables.
    pub settings: Settings,
    /// Each HPA's history, by the HPA's uid (a re-created HPA starts afresh).
    pub histories: HashMap<String, HpaHistory>,
}

impl HpaController {
    /// A controller with Kubernetes' default settings.
    pub fn new(sync_period: Duration, metrics_window: Duration, ticks_per_second: u64) -> Self {
        Self {
            sync_period,
            metrics_window,
            ticks_per_second,
            settings: Settings::default(),
            histories: HashMap::new(),
        }
    }
}

/// What the HPA controller looks at.
pub struct Observed<'a> {
    /// The runtime's clock.
    pub now: Instant,
    /// The wall clock, for the status's last scale time.
    pub wall: SystemTime,
    /// The desired objects (HPAs and their Deployments).
    pub objects: &'a Objects,
    /// The objects' uids (a re-created HPA starts afresh).
    pub meta: &'a BTreeMap<ObjectRef, ObjectMeta>,
    /// The pods.
    pub pods: &'a BTreeMap<PodKey, Pod>,
    /// Their CPU samples.
    pub cpu: &'a CpuHistory,
    /// The HPAs' last status.
    pub hpa_status: &'a HpaStatuses,
    /// Replicas a Rollout raised ahead of traffic, by Deployment: when,
    /// and to what.
    pub scaled_ahead: &'a HashMap<ObjectRef, (Instant, i32)>,
}

/// What the HPA controller asks for.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Set a Deployment's replicas.
    Scale {
        /// The Deployment.
        deployment: ObjectRef,
        /// Its new replica count.
        replicas: i32,
    },
    /// An HPA's status after a sync.
    SetHpaStatus(ObjectRef, HpaStatus),
}

impl Effect for Action {
    async fn apply<E: Effects>(self, effects: &mut E) -> Result<(), RuntimeError> {
        match self {
            Action::Scale {
                deployment,
                replicas,
            } => effects.scale(&deployment, replicas).await,
            Action::SetHpaStatus(hpa, status) => effects.set_hpa_status(hpa, status),
        }
        Ok(())
    }
}

/// The Deployments whose pods an HPA on `target` measures: the target's,
/// or, when a Rollout releases it (`workloadRef`), its stable revision's,
/// which the HPA's replicas size.
fn measured_deployments(objects: &Objects, target: &ObjectRef) -> Vec<String> {
    if !objects.is_rollout_workload(target) {
        return vec![target.name.clone()];
    }
    objects
        .iter()
        .filter(|r| r.namespace() == target.namespace)
        .filter_map(|r| match r {
            Resource::Deployment(d) => {
                let a = d.metadata.annotations.as_ref()?;
                (a.get(WORKLOAD_ANNOTATION) == Some(&target.name)
                    && a.get(ROLE_ANNOTATION).map(String::as_str) == Some("stable"))
                .then(|| r.name().to_owned())
            }
            _ => None,
        })
        .collect()
}

impl Controller for HpaController {
    type Observed<'a> = Observed<'a>;
    type Action = Action;

    fn name(&self) -> &'static str {
        "hpa"
    }

    fn period(&self) -> Option<Duration> {
        Some(self.sync_period)
    }

    fn observe<'a>(&self, world: &World<'a>) -> Observed<'a> {
        let state = world.state;
        Observed {
            now: world.now,
            wall: world.wall,
            objects: &state.objects,
            meta: &state.meta,
            pods: &state.pods,
            cpu: &state.cpu,
            hpa_status: &state.hpa_status,
            scaled_ahead: &state.scaled_ahead,
        }
    }

    fn reconcile(&mut self, observed: &Observed<'_>) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut seen = Vec::new();
        for r in observed.objects.iter() {
            let (spec, target) = match r {
                Resource::HpaV1(h) => (HpaSpec::from_v1(h), &h.spec.scale_target_ref.name),
                Resource::HpaV2(h) => (
                    HpaSpec::from_v2(h, &self.settings),
                    &h.spec.scale_target_ref.name,
                ),
                _ => continue,
            };
            let hpa_ref = r.object_ref();
            let deployment = ObjectRef {
                kind: Kind::Deployment,
                namespace: hpa_ref.namespace.clone(),
                name: target.clone(),
            };
            let Some(Resource::Deployment(d)) = observed.objects.get(&deployment) else {
                continue;
            };
            let current = d.spec.replicas.unwrap_or(1);
            let measured = measured_deployments(observed.objects, &deployment);
            let samples: Vec<PodSample> = observed
                .pods
                .iter()
                .filter(|(_, p)| {
                    p.id.namespace == hpa_ref.namespace && measured.contains(&p.id.deployment)
                })
                .map(|(k, p)| PodSample {
                    name: p.id.name.clone(),
                    pending: p.phase == Phase::Pending,
                    gone: p.phase == Phase::Terminating,
                    started: p.started.map(|s| s.0),
                    ready: p.started.map(|_| (p.ready, p.ready_since)),
                    request_millis: p.cpu_request(),
                    usage: observed
                        .cpu
                        .usage(k, self.metrics_window, self.ticks_per_second),
                })
                .collect();
            let uid = observed
                .meta
                .get(&hpa_ref)
                .map_or_else(|| hpa_ref.to_string(), |m| m.uid.clone());
            seen.push(uid.clone());
            let history = self
                .histories
                .entry(uid)
                .or_insert_with(|| HpaHistory::first_seen(current, observed.now));
            if let Some(&(at, replicas)) = observed.scaled_ahead.get(&deployment) {
                history.hold(at, replicas);
            }
            let decision = hpa::reconcile(
                &spec,
                current,
                &samples,
                observed.now,
                history,
                &self.settings,
            );
            let status = HpaStatus::after(
                current,
                &decision,
                observed.hpa_status.get(&hpa_ref),
                &pods::humantime_rfc3339(observed.wall),
            );
            actions.push(Action::SetHpaStatus(hpa_ref, status));
            if decision.rescale {
                actions.push(Action::Scale {
                    deployment,
                    replicas: decision.desired,
                });
            }
        }
        self.histories.retain(|uid, _| seen.contains(uid));
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testing::pod;

    /// Observations of `objects` and `pods` with no CPU sample, no status
    /// and no uid yet.
    fn reconcile(
        hpa: &mut HpaController,
        objects: &Objects,
        pods: &BTreeMap<PodKey, Pod>,
    ) -> Vec<Action> {
        hpa.reconcile(&Observed {
            now: Instant::now(),
            wall: SystemTime::UNIX_EPOCH,
            objects,
            meta: &BTreeMap::new(),
            pods,
            cpu: &CpuHistory::default(),
            hpa_status: &HashMap::new(),
            scaled_ahead: &HashMap::new(),
        })
    }

    #[test]
    fn an_hpa_with_unmeasured_pods_reports_and_keeps_the_scale() {
        let m = weir_api::load::load_str(
            std::path::Path::new("h.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: d}}\n  template:\n    metadata: {labels: {app: d}}\n    spec: {containers: [{name: c, image: i, resources: {requests: {cpu: 100m}}}]}\n---\n\
             apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: d}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}\n  minReplicas: 1\n  maxReplicas: 5\n  targetCPUUtilizationPercentage: 50\n",
        )
        .unwrap();
        let mut objects = Objects::default();
        for o in m.objects {
            objects.insert(o.resource);
        }
        let mut pods = BTreeMap::new();
        for name in ["a", "b"] {
            let p = pod(name, "d", "h", Phase::Running);
            pods.insert(p.key(), p);
        }
        let mut hpa = HpaController::new(Duration::from_secs(15), Duration::from_secs(15), 100);
        let actions = reconcile(&mut hpa, &objects, &pods);
        let [Action::SetHpaStatus(hpa_ref, status)] = actions.as_slice() else {
            panic!("one status, no scale: {actions:?}");
        };
        assert_eq!(hpa_ref.name, "d");
        assert_eq!(status.current_replicas, 2);
        assert_eq!(status.desired_replicas, 2);
        assert_eq!(status.current_cpu_utilization_percentage, None);
        assert_eq!(hpa.histories.len(), 1);
        // The HPA deleted: its history goes.
        objects.remove(hpa_ref);
        assert!(reconcile(&mut hpa, &objects, &pods).is_empty());
        assert!(hpa.histories.is_empty());
    }
}
