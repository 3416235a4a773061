//! What a Rollout acts on, found from its VirtualService: the rule, the
//! canary weight it serves, and each subset's counters (the rule's own,
//! under the revision or version its DestinationRule subset selects) and
//! the labels its pods carry.

use std::collections::{BTreeMap, HashMap};

use weir_api::istio::{Destination, IstioObject, VirtualServiceSpec, service_for_host};
use weir_api::resource::{Kind, ObjectRef, Resource};
use weir_api::rollout::{REVISION_LABEL, RolloutSpec, header_rule_name, rollout_target};
use weir_api::route::destination_label;
use weir_api::version_stats::{VersionCounts, VersionKey};

use crate::state::Objects;

/// What a Rollout acts on, found from its VirtualService.
pub struct Targets {
    /// The VirtualService.
    pub virtual_service: ObjectRef,
    /// The rule's index.
    pub rule_index: usize,
    /// The canary's weight it serves, percent.
    pub served_weight: u32,
    /// The stable subset's counters.
    pub stable: VersionCounts,
    /// The canary subset's.
    pub canary: VersionCounts,
    /// The labels the stable's pods carry.
    pub stable_selector: Option<BTreeMap<String, String>>,
    /// The canary's.
    pub canary_selector: Option<BTreeMap<String, String>>,
    /// The canary's destination in the rule (where a header route and a
    /// mirror send requests).
    pub canary_destination: Option<Destination>,
    /// The `setHeaderRoute` step whose match the Rollout's header rule
    /// carries.
    pub header_route: Option<usize>,
    /// The share (percent) of the rule's requests mirrored to the canary.
    pub mirror: u32,
}

/// The rule `spec` drives and its subsets' counters and labels; `None`
/// when its VirtualService or rule is not there.
pub fn targets(
    objects: &Objects,
    versions: &HashMap<VersionKey, VersionCounts>,
    rollout: &ObjectRef,
    spec: &RolloutSpec,
) -> Option<Targets> {
    let ns = rollout.namespace.as_str();
    let virtual_service = ObjectRef {
        kind: Kind::VirtualService,
        namespace: ns.to_owned(),
        name: spec.virtual_service.clone(),
    };
    let Some(Resource::VirtualService(vs)) = objects.get(&virtual_service) else {
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
    let stable = subset(objects, versions, ns, vs, rule_index, &spec.stable);
    let mut canary = subset(objects, versions, ns, vs, rule_index, &spec.canary);
    let canary_destination = destinations
        .iter()
        .find(|d| destination_label(d) == spec.canary)
        .map(|d| d.destination.clone());
    // The header rule's requests are the canary's too.
    let header_name = header_rule_name(&rollout.name);
    let header_index = vs
        .spec
        .http
        .iter()
        .position(|r| r.name.as_deref() == Some(header_name.as_str()));
    let header_route = header_index.and_then(|i| {
        let matches = vs.spec.http[i].matches.clone().unwrap_or_default();
        spec.steps.iter().position(|s| {
            s.set_header_route
                .as_ref()
                .is_some_and(|h| !h.matches.is_empty() && h.matches == matches)
        })
    });
    if let Some(i) = header_index {
        let via_header = subset(objects, versions, ns, vs, i, &spec.canary);
        canary.counts = canary.counts.plus(&via_header.counts);
    }
    let rule = &vs.spec.http[rule_index];
    let mirror = match (&rule.mirror, &canary_destination) {
        (Some(m), Some(c)) if m.subset == c.subset && m.host == c.host => {
            rule.mirror_percentage
                .as_ref()
                .map(|p| p.value)
                .or(rule.mirror_percent.map(f64::from))
                .unwrap_or(100.0)
                .round()
                .clamp(0.0, 100.0) as u32
        }
        _ => 0,
    };
    Some(Targets {
        virtual_service,
        rule_index,
        served_weight,
        stable: stable.counts,
        canary: canary.counts,
        stable_selector: stable.selector,
        canary_selector: canary.selector,
        canary_destination,
        header_route,
        mirror,
    })
}

/// A subset's counters and the labels its pods carry.
#[derive(Default)]
struct SubsetCounts {
    counts: VersionCounts,
    selector: Option<BTreeMap<String, String>>,
}

/// A subset of the rule's destination Service: its counters (under the
/// version its DestinationRule subset selects, its `version` label) and
/// its pods' labels (the Service's selector and the subset's labels).
fn subset(
    objects: &Objects,
    versions: &HashMap<VersionKey, VersionCounts>,
    ns: &str,
    vs: &IstioObject<VirtualServiceSpec>,
    rule_index: usize,
    name: &str,
) -> SubsetCounts {
    let Some(dest) = vs.spec.http[rule_index]
        .route
        .iter()
        .flatten()
        .find(|d| destination_label(d) == name)
    else {
        return SubsetCounts::default();
    };
    let (svc_ns, svc) = service_for_host(&dest.destination.host, ns);
    let labels = objects.iter().find_map(|r| match r {
        Resource::DestinationRule(dr)
            if service_for_host(&dr.spec.host, r.namespace()) == (svc_ns.clone(), svc.clone()) =>
        {
            dr.spec
                .subsets
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.labels.clone())
        }
        _ => None,
    });
    let Some(labels) = labels else {
        return SubsetCounts::default();
    };
    let service = ObjectRef {
        kind: Kind::Service,
        namespace: svc_ns.clone(),
        name: svc.clone(),
    };
    let selector = match objects.get(&service) {
        Some(Resource::Service(s)) => s.spec.as_ref().and_then(|s| s.selector.clone()),
        _ => None,
    };
    // The rule's own counts: requests other rules send this version (a
    // header rule for testers, say) do not dilute the verdict.
    let rule = (
        format!("{ns}/{}", vs.metadata.name.as_deref().unwrap_or_default()),
        rule_index.to_string(),
    );
    let counts = labels
        .get(REVISION_LABEL)
        .or_else(|| labels.get("version"))
        .or_else(|| labels.get("app.kubernetes.io/version"))
        .and_then(|version| versions.get(&(rule.0.clone(), rule.1.clone(), version.clone())))
        .cloned()
        .unwrap_or_default();
    SubsetCounts {
        counts,
        selector: selector.map(|mut selector| {
            selector.extend(labels);
            selector
        }),
    }
}
