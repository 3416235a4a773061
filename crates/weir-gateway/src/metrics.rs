//! Istio's standard metrics, with its names, labels and buckets:
//! `istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes`, reported as an ingress
//! gateway reports them (`reporter="source"`). Mirrored copies are not
//! requests any client made, and Istio reports none for them; weir counts
//! them apart (`weir_mirror_requests_total`), so whatever reads the Istio
//! metrics sees what clients saw.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use weir_api::version_stats::{ENVOY_DURATION_EDGES_MS, VersionTable};

/// The labels of every request metric: Istio's standard labels, in the
/// order Istio's stats plugin writes them. weir has no mTLS and one
/// cluster, so principals and the security policy are `unknown` (what Istio
/// reports without mTLS and, for `reporter="source"`, always) and the
/// clusters `Kubernetes` (Istio's default cluster ID).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Always `source`: a gateway reports as the client side.
    pub reporter: String,
    /// The gateway's workload name.
    pub source_workload: String,
    /// The gateway's namespace.
    pub source_workload_namespace: String,
    /// `unknown`: no mTLS.
    pub source_principal: String,
    /// The gateway's `app` label.
    pub source_app: String,
    /// The gateway's `version` label (`unknown`).
    pub source_version: String,
    /// The destination pod's workload (Deployment), or `unknown`.
    pub destination_workload: String,
    /// The destination workload's namespace, or `unknown`.
    pub destination_workload_namespace: String,
    /// `unknown`: no mTLS.
    pub destination_principal: String,
    /// The destination pod's `app` label, or `unknown`.
    pub destination_app: String,
    /// The destination pod's `version` label, or `unknown`.
    pub destination_version: String,
    /// FQDN of the destination Service, or `unknown`.
    pub destination_service: String,
    /// The destination Service's name.
    pub destination_service_name: String,
    /// The destination Service's namespace.
    pub destination_service_namespace: String,
    /// `http` or `http2`... as Istio writes it (`http`, `grpc`).
    pub request_protocol: String,
    /// The response status.
    pub response_code: u16,
    /// `unknown`: what Istio reports on the source side.
    pub connection_security_policy: String,
    /// Envoy's response flags (`-` when none).
    pub response_flags: String,
    /// The gateway's canonical service.
    pub source_canonical_service: String,
    /// The destination's canonical service, or `unknown`.
    pub destination_canonical_service: String,
    /// The gateway's canonical revision (`latest`).
    pub source_canonical_revision: String,
    /// The destination's canonical revision, or `unknown`.
    pub destination_canonical_revision: String,
    /// `Kubernetes`.
    pub source_cluster: String,
    /// `Kubernetes`, or `unknown` without a destination.
    pub destination_cluster: String,
}

#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// Istio's duration buckets (milliseconds).
const DURATION_MS: &[f64] = ENVOY_DURATION_EDGES_MS;
/// Istio's size buckets (bytes).
const SIZE_BYTES: &[f64] = &[
    1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1e6, 1e7, 1e8, 1e9,
];

/// The labels naming one Rollout.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub rollout: String,
}

/// A Rollout and what it drives (`weir_rollout_info`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutInfoLabels {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub rollout: String,
    /// The VirtualService.
    pub virtual_service: String,
    /// The stable subset.
    pub stable: String,
    /// The canary subset.
    pub canary: String,
}

/// A Rollout in one phase (`weir_rollout_phase`, 1 for the current one).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutPhaseLabels {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub rollout: String,
    /// The phase.
    pub phase: String,
}

/// A Rollout's verdicts of one kind for one goal (`weir_rollout_verdicts_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutVerdictLabels {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub rollout: String,
    /// The goal (`success-rate`, `latency-p99`, ...).
    pub metric: String,
    /// Pass, Fail or Inconclusive.
    pub verdict: String,
}

/// The runtime's Rollout metrics, served with the gateway's.
#[derive(Default)]
pub struct RolloutMetrics {
    /// `weir_rollout_info`: 1 per Rollout.
    pub info: Family<RolloutInfoLabels, Gauge>,
    /// `weir_rollout_phase`: 1 for the current phase, 0 for the others.
    pub phase: Family<RolloutPhaseLabels, Gauge>,
    /// `weir_rollout_canary_weight`: the weight the gateway serves the canary.
    pub canary_weight: Family<RolloutLabels, Gauge>,
    /// `weir_rollout_step`: the current step's index.
    pub step: Family<RolloutLabels, Gauge>,
    /// `weir_rollout_verdicts`: verdicts given, by goal and kind.
    pub verdicts: Family<RolloutVerdictLabels, Counter>,
}

/// The gateway's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    /// Per rule and version (`namespace/name` of the VirtualService, the
    /// rule's index, the version): what a Rollout judges its rule by.
    pub rule_versions: VersionTable,
    /// The runtime's Rollout metrics.
    pub rollouts: RolloutMetrics,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram, Buckets>,
    request_bytes: Family<RequestLabels, Histogram, Buckets>,
    response_bytes: Family<RequestLabels, Histogram, Buckets>,
    mirrors: Family<RequestLabels, Counter>,
    /// Connections a Service listener refused at its cap.
    pub service_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::new_with_constructor(Buckets(DURATION_MS));
        let request_bytes = Family::new_with_constructor(Buckets(SIZE_BYTES));
        let response_bytes = Family::new_with_constructor(Buckets(SIZE_BYTES));
        registry.register(
            "istio_requests",
            "Requests through the gateway",
            requests.clone(),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Time from request start to the response's last byte",
            duration.clone(),
        );
        registry.register(
            "istio_request_bytes",
            "Request body sizes",
            request_bytes.clone(),
        );
        registry.register(
            "istio_response_bytes",
            "Response body sizes",
            response_bytes.clone(),
        );
        let mirrors = Family::<RequestLabels, Counter>::default();
        registry.register(
            "weir_mirror_requests",
            "Mirrored copies of requests (not counted as requests)",
            mirrors.clone(),
        );
        let service_refused = Counter::default();
        registry.register(
            "weir_service_connections_refused",
            "Connections a Service listener refused at its cap",
            service_refused.clone(),
        );
        let rollouts = RolloutMetrics::default();
        registry.register(
            "weir_rollout_info",
            "A Rollout and what it drives",
            rollouts.info.clone(),
        );
        registry.register(
            "weir_rollout_phase",
            "1 for a Rollout's current phase, 0 for the others",
            rollouts.phase.clone(),
        );
        registry.register(
            "weir_rollout_canary_weight",
            "The weight the gateway serves a Rollout's canary, percent",
            rollouts.canary_weight.clone(),
        );
        registry.register(
            "weir_rollout_step",
            "A Rollout's current step",
            rollouts.step.clone(),
        );
        registry.register(
            "weir_rollout_verdicts",
            "Verdicts a Rollout's analysis gave, by goal",
            rollouts.verdicts.clone(),
        );
        Self {
            registry,
            rollouts,
            rule_versions: VersionTable::default(),
            mirrors,
            service_refused,
            requests,
            duration,
            request_bytes,
            response_bytes,
        }
    }
}

/// The four metrics of one label set, resolved once so the request path
/// records without hashing labels (see `Cluster::ok_metrics`).
#[derive(Debug)]
pub struct Handles {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

impl Handles {
    /// Records one request.
    pub fn record(&self, duration_ms: f64, request_bytes: u64, response_bytes: u64) {
        self.requests.inc();
        self.duration.observe(duration_ms);
        self.request_bytes.observe(request_bytes as f64);
        self.response_bytes.observe(response_bytes as f64);
    }
}

impl Metrics {
    /// The metrics of one label set.
    pub fn handles(&self, labels: &RequestLabels) -> Handles {
        Handles {
            requests: self.requests.get_or_create(labels).clone(),
            duration: self.duration.get_or_create(labels).clone(),
            request_bytes: self.request_bytes.get_or_create(labels).clone(),
            response_bytes: self.response_bytes.get_or_create(labels).clone(),
        }
    }

    /// Records one request.
    pub fn record(
        &self,
        labels: &RequestLabels,
        duration_ms: f64,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        self.handles(labels)
            .record(duration_ms, request_bytes, response_bytes);
    }

    /// Records one mirrored copy's answer; the Istio metrics never see it.
    pub fn record_mirror(&self, labels: &RequestLabels) {
        self.mirrors.get_or_create(labels).inc();
    }

    /// Everything, in the Prometheus/OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
