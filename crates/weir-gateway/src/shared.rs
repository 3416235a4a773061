//! What every request on every connection of a gateway shares: the
//! routes, the upstream settings and where requests are recorded. Its own
//! module so the request path ([`crate::proxy`]) and the record of a
//! request ([`crate::report`]), which outlives the path, both reach it.

use arc_swap::ArcSwap;

use crate::access_log::AccessLog;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::upstream::UpstreamSettings;

/// What the request path shares across connections.
pub struct Shared {
    /// The current routes and endpoints, swapped atomically.
    pub snapshot: ArcSwap<Snapshot>,
    /// How upstream connections are opened and kept.
    pub upstream: UpstreamSettings,
    /// Istio's metrics.
    pub metrics: Metrics,
    /// The access log, when enabled.
    pub access_log: Option<AccessLog>,
    /// `source_workload` in metrics.
    pub workload: String,
}
