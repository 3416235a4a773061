//! The HorizontalPodAutoscaler controller: every sync period, each HPA's
//! target pods and their CPU usage go through Kubernetes' algorithm
//! ([`crate::hpa::reconcile`]); the result is the HPA's status and, when
//! it says so, a new replica count for the Deployment.

use std::collections::HashMap;
use std::time::Duration;

use weir_api::resource::{Kind, ObjectRef, Resource};

use super::{Action, Controller, Observed};
use crate::hpa::{self, HpaHistory, HpaSpec, HpaStatus, PodSample, Settings};
use crate::pods::{self, Phase};

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

impl Controller for HpaController {
    fn name(&self) -> &'static str {
        "hpa"
    }

    fn period(&self) -> Option<Duration> {
        Some(self.sync_period)
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
            let samples: Vec<PodSample> = observed
                .pods
                .iter()
                .filter(|(_, p)| p.id.namespace == hpa_ref.namespace && p.id.deployment == *target)
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
    use std::collections::BTreeMap;

    use tokio::time::Instant;

    use super::*;
    use crate::controllers::testing::{observed, pod};
    use crate::state::Objects;

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
        let actions = hpa.reconcile(&observed(&objects, &pods, &[], Instant::now()));
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
        assert!(
            hpa.reconcile(&observed(&objects, &pods, &[], Instant::now()))
                .is_empty()
        );
        assert!(hpa.histories.is_empty());
    }
}
