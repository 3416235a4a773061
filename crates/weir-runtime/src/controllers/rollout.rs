//! The Rollout controller: for each Rollout, what the gateway serves (its
//! rule's canary weight), the stable's and canary's request counters (the
//! versions their DestinationRule subsets select), and any waiting user
//! command go through the engine ([`crate::rollout::engine::step`]); a
//! weight it asks for becomes a route change, the status is kept.

use weir_api::istio::{DestinationRuleSpec, IstioObject, VirtualServiceSpec, service_for_host};
use weir_api::resource::{Kind, ObjectRef, Resource};
use weir_api::rollout::{RolloutSpec, rollout_target};
use weir_api::route::destination_label;
use weir_gateway::version_stats::VersionCounts;

use super::{Action, Controller, Observed};
use crate::rollout::engine::{self, Observation, RolloutAction};

/// Drives every Rollout.
pub struct RolloutController;

/// What a Rollout acts on, found from its VirtualService.
struct Targets {
    virtual_service: ObjectRef,
    rule_index: usize,
    served_weight: u32,
    stable: VersionCounts,
    canary: VersionCounts,
}

fn targets(observed: &Observed<'_>, ns: &str, spec: &RolloutSpec) -> Option<Targets> {
    let virtual_service = ObjectRef {
        kind: Kind::VirtualService,
        namespace: ns.to_owned(),
        name: spec.virtual_service.clone(),
    };
    let Some(Resource::VirtualService(vs)) = observed.objects.get(&virtual_service) else {
        return None;
    };
    let rule_index = rollout_target(spec, &vs.spec).ok()?.rule_index;
    let destinations = vs.spec.http[rule_index].route.clone().unwrap_or_default();
    let total: i64 = destinations
        .iter()
        .map(|d| d.weight.unwrap_or(0).max(0))
        .sum();
    let weight_of = |subset: &str| {
        destinations
            .iter()
            .find(|d| destination_label(d) == subset)
            .map_or(0, |d| d.weight.unwrap_or(0).max(0))
    };
    let served_weight = if total > 0 {
        ((weight_of(&spec.canary) * 100) as f64 / total as f64).round() as u32
    } else {
        0
    };
    let counts = |subset: &str| version_counts(observed, ns, vs, rule_index, subset);
    Some(Targets {
        virtual_service,
        rule_index,
        served_weight,
        stable: counts(&spec.stable),
        canary: counts(&spec.canary),
    })
}

/// A subset's counters: the version its DestinationRule subset selects
/// (its `version` label) on the rule's destination Service.
fn version_counts(
    observed: &Observed<'_>,
    ns: &str,
    vs: &IstioObject<VirtualServiceSpec>,
    rule_index: usize,
    subset: &str,
) -> VersionCounts {
    let Some(dest) = vs.spec.http[rule_index]
        .route
        .iter()
        .flatten()
        .find(|d| destination_label(d) == subset)
    else {
        return VersionCounts::default();
    };
    let (svc_ns, svc) = service_for_host(&dest.destination.host, ns);
    let subset_labels = observed.objects.iter().find_map(|r| match r {
        Resource::DestinationRule(dr)
            if service_for_host(&dr.spec.host, r.namespace()) == (svc_ns.clone(), svc.clone()) =>
        {
            subset_version(&dr.spec, subset)
        }
        _ => None,
    });
    let Some(version) = subset_labels else {
        return VersionCounts::default();
    };
    observed
        .versions
        .get(&(svc_ns, svc, version))
        .cloned()
        .unwrap_or_default()
}

fn subset_version(dr: &DestinationRuleSpec, subset: &str) -> Option<String> {
    let s = dr.subsets.iter().find(|s| s.name == subset)?;
    s.labels
        .get("version")
        .or_else(|| s.labels.get("app.kubernetes.io/version"))
        .cloned()
}

impl Controller for RolloutController {
    fn name(&self) -> &'static str {
        "rollout"
    }

    fn reconcile(&mut self, observed: &Observed<'_>) -> Vec<Action> {
        let mut actions = Vec::new();
        for r in observed.objects.iter() {
            let Resource::Rollout(ro) = r else { continue };
            let rollout = r.object_ref();
            let Some(t) = targets(observed, r.namespace(), &ro.spec) else {
                continue;
            };
            let command = observed.rollout_commands.get(&rollout).copied();
            let obs = Observation {
                now: observed.wall,
                served_weight: t.served_weight,
                canary: &t.canary,
                stable: &t.stable,
                command,
            };
            let (mut status, wanted) =
                engine::step(&ro.spec, observed.rollout_status.get(&rollout), &obs);
            for RolloutAction::SetCanaryWeight(w) in wanted {
                // Carried out (and served) before the status is stored; a
                // failed change ends the batch, and the status is not stored.
                status.canary_weight = w.min(100);
                actions.push(Action::SetRouteWeights {
                    virtual_service: t.virtual_service.clone(),
                    rule_index: t.rule_index,
                    weights: vec![
                        (ro.spec.stable.clone(), 100 - w.min(100)),
                        (ro.spec.canary.clone(), w.min(100)),
                    ],
                });
            }
            actions.push(Action::SetTraffic {
                rollout: rollout.clone(),
                rate: status.traffic_rate,
            });
            actions.push(Action::SetRolloutStatus {
                rollout,
                status: Box::new(status),
                took_command: command.is_some(),
            });
        }
        actions
    }
}
