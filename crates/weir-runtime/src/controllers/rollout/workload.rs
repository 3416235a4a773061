//! A Rollout's workload in the embedded runtime: each revision of the
//! Deployment named by `spec.workloadRef` runs as a Deployment of its own
//! (`<workload>-<revision>`, annotated with the workload and its role, its
//! pods labelled `weir.dev/revision`), as Kubernetes runs a Deployment's
//! revisions as ReplicaSets; the DestinationRule's `stable` and `canary`
//! subsets select a revision each by that label. This module reads what
//! runs for [`weir_rollout::workload::step`] and turns its decision into
//! objects to write or delete; the workload Deployment itself runs no
//! pods (the Deployment controller skips it).

use std::collections::BTreeMap;

use weir_api::istio::{Destination, DestinationRuleSpec, IstioObject, service_for_host};
use weir_api::k8s_openapi::api::apps::v1::Deployment;
use weir_api::resource::{Kind, ObjectRef, Resource};
use weir_api::rollout::{
    REVISION_LABEL, ROLE_ANNOTATION, RolloutSpec, WORKLOAD_ANNOTATION, revision_name,
};
use weir_api::route::destination_label;
use weir_rollout::engine::{Observation, Prior, RevisionRole, RolloutAction, RolloutStatus};
use weir_rollout::workload::{RevisionAction, Running, WorkloadObservation, WorkloadStep};

use super::action::Action;
use super::route_edits::route_edit;
use crate::controllers::deployment::template_hash;
use crate::pods::{Phase, Pod, PodKey};
use crate::state::Objects;

/// One decision for a Rollout with `workloadRef`: its next status and
/// the actions, from what runs; `None` while its workload is not there.
pub fn decide(
    objects: &Objects,
    pods: &BTreeMap<PodKey, Pod>,
    spec: &RolloutSpec,
    rollout: &ObjectRef,
    prior: Prior<'_>,
    obs: &Observation<'_>,
    (rule, canary): ((&ObjectRef, usize), Option<&Destination>),
) -> Option<(RolloutStatus, Vec<Action>)> {
    let (workload_ref, d) = workload(objects, &rollout.namespace, spec)?;
    let (mut now_running, running) = running(objects, pods, &workload_ref);
    observe_workload(d, &mut now_running);
    // Its capacity is the workload's: the canary's replicas are its share
    // of the stable's, decided with the revisions.
    let obs = Observation {
        capacity: None,
        ..*obs
    };
    let decision = weir_rollout::workload::step(spec, prior, &obs, &now_running);
    let translate = Translate {
        objects,
        spec,
        workload: (&workload_ref, d),
        running: &running,
        rule,
        rollout,
        canary,
    };
    Some((decision.status, translate.actions(decision.actions)))
}

/// The next step of handing `workload` back to its Deployment after its
/// Rollout was deleted, without a moment with no pod serving: once the
/// Deployment's own pods are ready (it runs them again, no longer owned),
/// the DestinationRule's subsets stop selecting revisions, then the
/// revisions go.
pub fn hand_back(
    objects: &Objects,
    pods: &BTreeMap<PodKey, Pod>,
    workload: &ObjectRef,
    spec: &RolloutSpec,
) -> HandBack {
    let (_, revisions) = running(objects, pods, workload);
    if revisions.is_empty() {
        return HandBack::Done;
    }
    if let Some(Resource::Deployment(d)) = objects.get(workload) {
        let ready = pods
            .values()
            .filter(|p| {
                p.id.namespace == workload.namespace
                    && p.id.deployment == workload.name
                    && p.phase == Phase::Running
                    && p.ready
            })
            .count();
        let wanted = usize::try_from(d.spec.replicas.unwrap_or(1)).unwrap_or(0);
        if ready < wanted.max(1) {
            return HandBack::Wait;
        }
        let selecting = objects.iter().find_map(|r| match r {
            Resource::DestinationRule(dr)
                if r.namespace() == workload.namespace
                    && dr.spec.subsets.iter().any(|s| {
                        (s.name == spec.stable || s.name == spec.canary)
                            && s.labels.contains_key(REVISION_LABEL)
                    }) =>
            {
                Some(dr)
            }
            _ => None,
        });
        if let Some(dr) = selecting {
            let mut plain = dr.clone();
            for subset in &mut plain.spec.subsets {
                subset.labels.remove(REVISION_LABEL);
            }
            return HandBack::Do(Action::Write {
                resources: vec![Resource::DestinationRule(plain)],
            });
        }
    }
    HandBack::Do(Action::Delete {
        objects: revisions.values().map(|r| r.object.clone()).collect(),
    })
}

/// Where handing a workload back stands.
pub enum HandBack {
    /// Its Deployment's own pods are not ready yet.
    Wait,
    /// The next step.
    Do(Action),
    /// No revision left.
    Done,
}

/// The Deployment a Rollout's `workloadRef` names, when it exists.
pub fn workload<'a>(
    objects: &'a Objects,
    namespace: &str,
    spec: &RolloutSpec,
) -> Option<(ObjectRef, &'a Deployment)> {
    let wref = spec.workload_ref.as_ref()?;
    let r = ObjectRef {
        kind: Kind::Deployment,
        namespace: namespace.to_owned(),
        name: wref.name.clone(),
    };
    match objects.get(&r) {
        Some(Resource::Deployment(d)) => Some((r, d)),
        _ => None,
    }
}

/// A revision running now: its Deployment and what the decision reads.
pub struct RunningRevision<'a> {
    object: ObjectRef,
    deployment: &'a Deployment,
}

/// The revisions of `workload` running now, by template hash, with what
/// the decision reads of them.
pub fn running<'a>(
    objects: &'a Objects,
    pods: &BTreeMap<PodKey, Pod>,
    workload: &ObjectRef,
) -> (WorkloadObservation, BTreeMap<String, RunningRevision<'a>>) {
    let mut observation = WorkloadObservation::default();
    let mut found = BTreeMap::new();
    for r in objects.iter() {
        let Resource::Deployment(d) = r else { continue };
        let annotations = d.metadata.annotations.clone().unwrap_or_default();
        if r.namespace() != workload.namespace
            || annotations.get(WORKLOAD_ANNOTATION) != Some(&workload.name)
        {
            continue;
        }
        let Some(revision) = template_labels(d).get(REVISION_LABEL).cloned() else {
            continue;
        };
        let role = match annotations.get(ROLE_ANNOTATION).map(String::as_str) {
            Some("stable") => RevisionRole::Stable,
            Some("canary") => RevisionRole::Canary,
            _ => RevisionRole::Retiring,
        };
        let ready = pods
            .values()
            .filter(|p| {
                p.id.namespace == workload.namespace
                    && p.id.deployment == r.name()
                    && p.phase == Phase::Running
                    && p.ready
            })
            .count();
        observation.revisions.insert(
            revision.clone(),
            Running {
                role,
                replicas: d.spec.replicas.unwrap_or(1),
                ready: i32::try_from(ready).unwrap_or(i32::MAX),
            },
        );
        found.insert(
            revision,
            RunningRevision {
                object: r.object_ref(),
                deployment: d,
            },
        );
    }
    (observation, found)
}

/// The workload's own template hash and replicas, for the decision.
pub fn observe_workload(d: &Deployment, observation: &mut WorkloadObservation) {
    observation.template = template_hash(&d.spec.template);
    observation.replicas = d.spec.replicas.unwrap_or(1);
}

fn template_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

/// What the decision's steps need written or deleted, in its order; a
/// step that changes nothing asks for nothing.
pub struct Translate<'a> {
    /// The desired objects.
    pub objects: &'a Objects,
    /// The Rollout's spec.
    pub spec: &'a RolloutSpec,
    /// The workload and its Deployment.
    pub workload: (&'a ObjectRef, &'a Deployment),
    /// Its revisions running now.
    pub running: &'a BTreeMap<String, RunningRevision<'a>>,
    /// The VirtualService and rule index the weights go to.
    pub rule: (&'a ObjectRef, usize),
    /// The Rollout.
    pub rollout: &'a ObjectRef,
    /// The canary's destination in the rule.
    pub canary: Option<&'a Destination>,
}

impl Translate<'_> {
    /// The actions for `steps`.
    pub fn actions(&self, steps: Vec<WorkloadStep>) -> Vec<Action> {
        steps.into_iter().filter_map(|s| self.action(s)).collect()
    }

    fn action(&self, step: WorkloadStep) -> Option<Action> {
        match step {
            WorkloadStep::Rollout(RolloutAction::SetCanaryWeight(w)) => {
                let w = w.min(100);
                Some(Action::SetRouteWeights {
                    virtual_service: self.rule.0.clone(),
                    rule_index: self.rule.1,
                    weights: vec![
                        (self.spec.stable.clone(), 100 - w),
                        (self.spec.canary.clone(), w),
                    ],
                })
            }
            // Absorbed into the canary revision's replicas by the decision.
            WorkloadStep::Rollout(RolloutAction::ScaleCanary(_)) => None,
            WorkloadStep::Rollout(edit) => {
                route_edit(self.spec, self.rollout, self.rule, self.canary, edit)
            }
            WorkloadStep::Revision(RevisionAction::Run {
                revision,
                role,
                replicas,
            }) => {
                let existing = self.running.get(&revision).map(|r| r.deployment);
                let wanted =
                    revision_deployment(self.workload, &revision, role, replicas, existing)?;
                (existing != Some(&wanted)).then(|| Action::Write {
                    resources: vec![Resource::Deployment(Box::new(wanted))],
                })
            }
            WorkloadStep::Revision(RevisionAction::Remove { revision }) => {
                let r = self.running.get(&revision)?;
                Some(Action::Delete {
                    objects: vec![r.object.clone()],
                })
            }
            WorkloadStep::Revision(RevisionAction::Select { stable, canary }) => {
                let dr = self.destination_rule()?;
                let wanted = select(dr, self.spec, &stable, &canary);
                (wanted != *dr).then(|| Action::Write {
                    resources: vec![Resource::DestinationRule(wanted)],
                })
            }
        }
    }

    /// The DestinationRule defining both subsets for the rule's Service.
    fn destination_rule(&self) -> Option<&IstioObject<DestinationRuleSpec>> {
        let ns = &self.rule.0.namespace;
        let Some(Resource::VirtualService(vs)) = self.objects.get(self.rule.0) else {
            return None;
        };
        let dest = vs
            .spec
            .http
            .get(self.rule.1)?
            .route
            .iter()
            .flatten()
            .find(|d| destination_label(d) == self.spec.stable)?;
        let service = service_for_host(&dest.destination.host, ns);
        self.objects.iter().find_map(|r| match r {
            Resource::DestinationRule(dr)
                if service_for_host(&dr.spec.host, r.namespace()) == service
                    && [&self.spec.stable, &self.spec.canary]
                        .iter()
                        .all(|name| dr.spec.subsets.iter().any(|s| s.name == **name)) =>
            {
                Some(dr)
            }
            _ => None,
        })
    }
}

/// `dr` with the stable and canary subsets selecting those revisions.
fn select(
    dr: &IstioObject<DestinationRuleSpec>,
    spec: &RolloutSpec,
    stable: &str,
    canary: &str,
) -> IstioObject<DestinationRuleSpec> {
    let mut wanted = dr.clone();
    for subset in &mut wanted.spec.subsets {
        let revision = if subset.name == spec.stable {
            stable
        } else if subset.name == spec.canary {
            canary
        } else {
            continue;
        };
        subset
            .labels
            .insert(REVISION_LABEL.to_owned(), revision.to_owned());
    }
    wanted
}

/// A revision's Deployment with `replicas` in `role`: the running one
/// rescaled, or a new one from the workload's template when it is that
/// template's revision (`None` otherwise: a revision no longer in the
/// workload cannot be made again).
pub fn revision_deployment(
    (workload_ref, workload): (&ObjectRef, &Deployment),
    revision: &str,
    role: RevisionRole,
    replicas: i32,
    existing: Option<&Deployment>,
) -> Option<Deployment> {
    let mut d = match existing {
        Some(d) => d.clone(),
        None if template_hash(&workload.spec.template) == revision => {
            let mut d = Deployment {
                metadata: workload.metadata.clone(),
                spec: workload.spec.clone(),
                status: None,
            };
            d.metadata.name = Some(revision_name(&workload_ref.name, revision));
            d.metadata.resource_version = None;
            d.metadata.uid = None;
            d.metadata.generation = None;
            d.metadata.creation_timestamp = None;
            d.metadata.annotations =
                Some([(WORKLOAD_ANNOTATION.to_owned(), workload_ref.name.clone())].into());
            let label = (REVISION_LABEL.to_owned(), revision.to_owned());
            let labels = d
                .spec
                .template
                .metadata
                .get_or_insert_with(Default::default)
                .labels
                .get_or_insert_with(Default::default);
            labels.insert(label.0.clone(), label.1.clone());
            d.spec
                .selector
                .match_labels
                .get_or_insert_with(Default::default)
                .insert(label.0, label.1);
            d
        }
        None => return None,
    };
    d.spec.replicas = Some(replicas);
    let role = match role {
        RevisionRole::Stable => "stable",
        RevisionRole::Canary => "canary",
        RevisionRole::Retiring => "retiring",
    };
    d.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ROLE_ANNOTATION.to_owned(), role.to_owned());
    Some(d)
}
