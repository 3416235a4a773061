//! Endpoints from WorkloadEntries: the static form the standalone gateway,
//! its tests and the benchmarks use, in Istio's own terms (a Service selects
//! WorkloadEntries by labels, as it selects pods).

use std::collections::HashMap;
use std::net::IpAddr;

use weir_api::resource::Resource;

use crate::snapshot::{Endpoint, ServiceKey};

/// Every Service's endpoints among the WorkloadEntries of its namespace.
pub fn from_workload_entries<'a>(
    resources: impl IntoIterator<Item = &'a Resource> + Clone,
) -> HashMap<ServiceKey, Vec<Endpoint>> {
    let mut out = HashMap::new();
    for r in resources.clone() {
        let Resource::Service(service) = r else {
            continue;
        };
        let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        let ns = r.namespace();
        let members: Vec<Endpoint> = resources
            .clone()
            .into_iter()
            .filter_map(|w| match w {
                Resource::WorkloadEntry(we) if w.namespace() == ns => Some((w, we)),
                _ => None,
            })
            .filter(|(_, we)| {
                selector
                    .iter()
                    .all(|(k, v)| we.spec.labels.get(k) == Some(v))
            })
            .filter_map(|(w, we)| {
                Some(Endpoint {
                    ip: we.spec.address.parse::<IpAddr>().ok()?,
                    name: w.name().to_owned(),
                    workload: w.name().to_owned(),
                    labels: we.spec.labels.clone(),
                    ports: we
                        .spec
                        .ports
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), u16::try_from(*v).ok()?)))
                        .collect(),
                })
            })
            .collect();
        out.insert((ns.to_owned(), r.name().to_owned()), members);
    }
    out
}
