//! What a Rollout refers to, checked among the objects beside it: its
//! VirtualService, the rule it shifts, and a DestinationRule subset for
//! its stable and its canary. Apart from `rollout.rs` (the Rollout's own
//! shape and rules), since it reads every kind of resource.

use crate::istio::{DestinationRuleSpec, service_for_host};
use crate::path::FieldPath;
use crate::resource::Resource;
use crate::rollout::{RolloutSpec, rollout_target};
use crate::route::destination_label;

/// A problem with what a Rollout refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceProblem {
    /// The Rollout's field.
    pub field: FieldPath,
    /// What is wrong.
    pub message: String,
    /// The referenced object is absent (rather than present and unusable):
    /// when checking manifests alone it may exist where they are applied.
    pub absent: bool,
}

/// Checks that the VirtualService, its rule, both subsets and the
/// workload exist among `objects`, that the rule routes to both subsets,
/// and that no other Rollout (than the one named `name`) drives the same
/// rule or releases the same workload: one owner each.
pub fn check_references<'a>(
    namespace: &str,
    name: &str,
    spec: &RolloutSpec,
    objects: impl Iterator<Item = &'a Resource> + Clone,
) -> Vec<ReferenceProblem> {
    let at = FieldPath::root().key("spec");
    let mut problems = Vec::new();
    problems.extend(workload_problems(namespace, name, spec, objects.clone()));
    let vs = objects.clone().find_map(|r| match r {
        Resource::VirtualService(vs)
            if r.namespace() == namespace && r.name() == spec.virtual_service =>
        {
            Some(vs)
        }
        _ => None,
    });
    let Some(vs) = vs else {
        problems.push(ReferenceProblem {
            field: at.key("virtualService"),
            message: format!(
                "VirtualService {:?} not found in namespace {namespace:?}",
                spec.virtual_service
            ),
            absent: true,
        });
        return problems;
    };
    let target = match rollout_target(spec, &vs.spec) {
        Ok(t) => t,
        Err(message) => {
            let field = if spec.route.is_some() {
                at.key("route")
            } else {
                at.key("virtualService")
            };
            problems.push(ReferenceProblem {
                field,
                message,
                absent: false,
            });
            return problems;
        }
    };
    let owner = objects.clone().find(|r| match r {
        Resource::Rollout(other) => {
            r.namespace() == namespace
                && r.name() != name
                && other.spec.virtual_service == spec.virtual_service
                && rollout_target(&other.spec, &vs.spec)
                    .is_ok_and(|t| t.rule_index == target.rule_index)
        }
        _ => false,
    });
    if let Some(owner) = owner {
        problems.push(ReferenceProblem {
            field: at.key("virtualService"),
            message: format!(
                "http rule {} of VirtualService {:?} is driven by Rollout {:?} already: one Rollout per rule",
                target.rule_index,
                spec.virtual_service,
                owner.name()
            ),
            absent: false,
        });
    }
    for (field, subset) in [("stable", &spec.stable), ("canary", &spec.canary)] {
        let Some(dest) = vs.spec.http[target.rule_index]
            .route
            .iter()
            .flatten()
            .find(|d| destination_label(d) == *subset)
        else {
            continue;
        };
        let service = service_for_host(&dest.destination.host, namespace);
        let rules: Vec<&DestinationRuleSpec> = objects
            .clone()
            .filter_map(|r| match r {
                Resource::DestinationRule(dr)
                    if service_for_host(&dr.spec.host, r.namespace()) == service =>
                {
                    Some(&dr.spec)
                }
                _ => None,
            })
            .collect();
        if rules.is_empty() {
            problems.push(ReferenceProblem {
                field: at.key(field),
                message: format!(
                    "no DestinationRule for host {:?} defines subset {subset:?}",
                    dest.destination.host
                ),
                absent: true,
            });
        } else if !rules
            .iter()
            .any(|dr| dr.subsets.iter().any(|s| s.name == *subset))
        {
            problems.push(ReferenceProblem {
                field: at.key(field),
                message: format!(
                    "the DestinationRule for host {:?} has no subset {subset:?}",
                    dest.destination.host
                ),
                absent: false,
            });
        }
    }
    problems
}

/// The workload a Rollout releases exists, and no other Rollout releases it.
fn workload_problems<'a>(
    namespace: &str,
    name: &str,
    spec: &RolloutSpec,
    objects: impl Iterator<Item = &'a Resource> + Clone,
) -> Vec<ReferenceProblem> {
    let at = FieldPath::root().key("spec");
    let mut problems = Vec::new();
    let Some(wref) = &spec.workload_ref else {
        return problems;
    };
    let exists = objects.clone().any(|r| {
        matches!(r, Resource::Deployment(_)) && r.namespace() == namespace && r.name() == wref.name
    });
    if !exists {
        problems.push(ReferenceProblem {
            field: at.key("workloadRef").key("name"),
            message: format!(
                "Deployment {:?} not found in namespace {namespace:?}",
                wref.name
            ),
            absent: true,
        });
    }
    let releasing = objects.clone().find(|r| match r {
        Resource::Rollout(other) => {
            r.namespace() == namespace
                && r.name() != name
                && other
                    .spec
                    .workload_ref
                    .as_ref()
                    .is_some_and(|w| w.name == wref.name)
        }
        _ => false,
    });
    if let Some(owner) = releasing {
        problems.push(ReferenceProblem {
            field: at.key("workloadRef").key("name"),
            message: format!(
                "Deployment {:?} is released by Rollout {:?} already: one Rollout per workload",
                wref.name,
                owner.name()
            ),
            absent: false,
        });
    }
    problems
}
