//! The Go app's Prometheus metrics, same names, labels and buckets:
//! `http_requests_total`, `request_duration_seconds`, `response_size_bytes`
//! (each labelled `code`, `method` and the constant `version`) and
//! `in_flight_requests` (no labels, as in the Go app).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::serve::{Handler, Resp};

/// The `code` and `method` labels, valued as `promhttp` values them
/// (`"200"`, `"get"`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeMethod {
    code: String,
    method: String,
}

#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// The app's metrics and the registry that renders them.
#[derive(Clone)]
pub struct AppMetrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    requests: Family<CodeMethod, Counter>,
    duration: Family<CodeMethod, Histogram, Buckets>,
    size: Family<CodeMethod, Histogram, Buckets>,
    in_flight: Gauge,
}

/// Proof that a request was counted in `in_flight_requests`; hand it back to
/// [`AppMetrics::request_finished`].
pub struct InFlight(());

impl AppMetrics {
    /// Registers the metrics with `version` as their constant label.
    pub fn new(version: &str) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<CodeMethod, Counter>::default();
        let duration = Family::new_with_constructor(Buckets(&[0.25, 0.5, 1.0, 2.5, 5.0, 10.0]));
        let size = Family::new_with_constructor(Buckets(&[200.0, 500.0, 900.0, 1500.0]));
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "A gauge of requests currently being served by the wrapped handler",
            in_flight.clone(),
        );
        let versioned =
            registry.sub_registry_with_label(("version".into(), version.to_owned().into()));
        versioned.register(
            "http_requests",
            "A counter for requests to the wrapped handler",
            requests.clone(),
        );
        versioned.register(
            "request_duration_seconds",
            "A histogram of latencies for requests",
            duration.clone(),
        );
        versioned.register(
            "response_size_bytes",
            "A histogram of response sizes for requests",
            size.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            requests,
            duration,
            size,
            in_flight,
        }))
    }

    /// Counts a request as in flight.
    pub fn request_started(&self) -> InFlight {
        self.0.in_flight.inc();
        InFlight(())
    }

    /// Records a finished request.
    pub fn request_finished(
        &self,
        _in_flight: InFlight,
        status: StatusCode,
        method: &Method,
        elapsed: Duration,
        size: u64,
    ) {
        let labels = CodeMethod {
            code: status.as_str().to_owned(),
            method: method.as_str().to_ascii_lowercase(),
        };
        self.0.requests.get_or_create(&labels).inc();
        self.0
            .duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.0.size.get_or_create(&labels).observe(size as f64);
        self.0.in_flight.dec();
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

impl Handler for AppMetrics {
    async fn handle(&self, req: Request<Incoming>) -> Resp {
        if req.uri().path() != "/metrics" {
            return crate::serve::not_found();
        }
        Response::builder()
            .header(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .body(Full::new(Bytes::from(self.render())))
            .unwrap_or_default()
    }
}
