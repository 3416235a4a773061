//! How a request ended and what is recorded of it: Envoy's response
//! flags, Istio's request metrics and the access-log line.

use crate::endpoint::UpstreamEndpoint;
use std::time::SystemTime;

use http::header;
use http::{Method, Request, Response, Version};
use hyper::body::{Body, Incoming};
use tokio::time::Instant;

use crate::access_log::AccessLog;
use crate::headers::{X_FORWARDED_FOR, X_REQUEST_ID, authority_value};
use crate::metrics::{Metrics, RequestLabels};
use crate::snapshot::{Cluster, RouteDestination};

/// Envoy's response flags: why a request ended as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFlag {
    /// Answered by an upstream on the first attempt (`-`).
    None,
    /// No route matched (`NR`).
    NoRoute,
    /// The request was malformed (`DPE`).
    DownstreamProtocolError,
    /// Aborted by fault injection (`FI`).
    FaultInjected,
    /// The route's cluster does not exist (`NC`).
    NoCluster,
    /// The cluster has no ready endpoint (`UH`).
    NoHealthyUpstream,
    /// No connection could be made (`UF`).
    UpstreamConnectFailure,
    /// The connection closed before a response (`UC`).
    UpstreamConnectionTermination,
    /// The route's or the try's timeout fired (`UT`).
    UpstreamRequestTimeout,
    /// Answered after retries (`URX`).
    Retried,
}

impl ResponseFlag {
    /// The flag as Envoy prints it in logs and Istio's `response_flags`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::None => "-",
            ResponseFlag::NoRoute => "NR",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::NoCluster => "NC",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectFailure => "UF",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::Retried => "URX",
        }
    }
}

/// How a request ended, for the access log and metrics.
pub(crate) struct Outcome<'a> {
    pub(crate) flag: ResponseFlag,
    pub(crate) cluster: Option<&'a Cluster>,
    pub(crate) upstream: Option<&'a UpstreamEndpoint>,
    /// The endpoint's index in the cluster, for the resolved metrics of a 200.
    pub(crate) endpoint_index: Option<usize>,
    /// The rule destination it went through, for the rule's counters.
    pub(crate) destination: Option<&'a RouteDestination>,
}

impl Outcome<'_> {
    /// A reply made by the gateway itself, no cluster involved.
    pub(crate) fn local(flag: ResponseFlag) -> Self {
        Self {
            flag,
            cluster: None,
            upstream: None,
            endpoint_index: None,
            destination: None,
        }
    }
}

/// Where a request's record goes: Istio's metrics, the access log, and
/// the workload named as their source.
pub(crate) struct Recorders<'a> {
    pub(crate) metrics: &'a Metrics,
    pub(crate) access_log: Option<&'a AccessLog>,
    pub(crate) workload: &'a str,
}

/// What metrics and the access log need from the request, captured before
/// it is consumed; the access log's part only when there is an access log.
pub(crate) struct RequestLog {
    started: Instant,
    bytes_in: u64,
    detail: Option<Box<LogDetail>>,
}

/// The access log's fields of a request.
struct LogDetail {
    method: Method,
    path: String,
    version: Version,
    request_id: String,
    authority: String,
    user_agent: String,
    forwarded_for: String,
    start: SystemTime,
}

impl RequestLog {
    /// Captures what is needed of `req`, which arrived at `started`.
    pub(crate) fn new(req: &Request<Incoming>, started: Instant, logging: bool) -> Self {
        let header = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        Self {
            started,
            bytes_in: req.body().size_hint().exact().unwrap_or(0),
            detail: logging.then(|| {
                Box::new(LogDetail {
                    method: req.method().clone(),
                    path: req
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned(),
                    version: req.version(),
                    request_id: header(X_REQUEST_ID),
                    authority: authority_value(req).to_str().unwrap_or_default().to_owned(),
                    user_agent: header(header::USER_AGENT),
                    forwarded_for: header(X_FORWARDED_FOR),
                    start: SystemTime::now(),
                })
            }),
        }
    }
}

/// The ingress gateway's own identity in Istio's metrics: its workload
/// (`istio-ingressgateway` by default), namespace and labels as Istio's
/// installation gives them.
const SOURCE_NAMESPACE: &str = "istio-system";

/// Istio's labels for a request's metrics.
pub(crate) fn labels_for(
    recorders: &Recorders<'_>,
    cluster: Option<&Cluster>,
    upstream: Option<&UpstreamEndpoint>,
    code: u16,
    flags: &str,
) -> RequestLabels {
    let unknown = || "unknown".to_owned();
    let of_upstream =
        |f: fn(&UpstreamEndpoint) -> &str| upstream.map_or_else(unknown, |u| f(u).to_owned());
    RequestLabels {
        reporter: "source".to_owned(),
        source_workload: recorders.workload.to_owned(),
        source_workload_namespace: SOURCE_NAMESPACE.to_owned(),
        source_principal: unknown(),
        source_app: recorders.workload.to_owned(),
        source_version: unknown(),
        destination_workload: of_upstream(|u| &u.workload),
        destination_workload_namespace: match (cluster, upstream) {
            (Some(c), Some(_)) => c.service.0.clone(),
            _ => unknown(),
        },
        destination_principal: unknown(),
        destination_app: of_upstream(|u| &u.identity.app),
        destination_version: of_upstream(|u| &u.version),
        destination_service: cluster.map_or_else(unknown, |c| c.service_fqdn.clone()),
        destination_service_name: cluster.map_or_else(unknown, |c| c.service.1.clone()),
        destination_service_namespace: cluster.map_or_else(unknown, |c| c.service.0.clone()),
        request_protocol: "http".to_owned(),
        response_code: code,
        connection_security_policy: unknown(),
        response_flags: flags.to_owned(),
        source_canonical_service: recorders.workload.to_owned(),
        destination_canonical_service: of_upstream(|u| &u.identity.canonical_service),
        source_canonical_revision: "latest".to_owned(),
        destination_canonical_revision: of_upstream(|u| &u.identity.canonical_revision),
        source_cluster: "Kubernetes".to_owned(),
        destination_cluster: cluster.map_or_else(unknown, |_| "Kubernetes".to_owned()),
    }
}

/// Records metrics and the access-log line, and returns the response.
pub(crate) fn finish<B: Body>(
    recorders: &Recorders<'_>,
    log: &RequestLog,
    resp: Response<B>,
    outcome: Outcome<'_>,
) -> Response<B> {
    let elapsed = log.started.elapsed();
    let flags = outcome.flag.as_str();
    let code = resp.status().as_u16();
    let bytes_out = resp.body().size_hint().exact().unwrap_or(0);
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    match (outcome.cluster, outcome.endpoint_index) {
        // The common case records through handles resolved once per endpoint.
        (Some(cluster), Some(i)) if code == 200 && outcome.flag == ResponseFlag::None => cluster
            .ok_metrics[i]
            .get_or_init(|| {
                recorders.metrics.handles(&labels_for(
                    recorders,
                    outcome.cluster,
                    outcome.upstream,
                    code,
                    flags,
                ))
            })
            .record(duration_ms, log.bytes_in, bytes_out),
        _ => recorders.metrics.record(
            &labels_for(recorders, outcome.cluster, outcome.upstream, code, flags),
            duration_ms,
            log.bytes_in,
            bytes_out,
        ),
    }
    if let (Some(d), Some(u)) = (outcome.destination, outcome.upstream) {
        let server_error = code >= 500;
        let table = &recorders.metrics.rule_versions;
        match outcome
            .endpoint_index
            .and_then(|i| d.rule_counters.by_endpoint.get(i))
        {
            // Resolved once per endpoint; a failed attempt looks it up.
            Some(slot) => slot
                .get_or_init(|| table.stats(&d.rule_counters.key(&u.version)))
                .record(duration_ms, server_error),
            None => table
                .stats(&d.rule_counters.key(&u.version))
                .record(duration_ms, server_error),
        }
    }
    if let (Some(access_log), Some(detail)) = (recorders.access_log, &log.detail) {
        let upstream = outcome
            .upstream
            .map_or_else(|| "-".to_owned(), |u| u.addr.to_string());
        let cluster = outcome.cluster.map_or("-", |c| c.name.as_str());
        access_log.write(format!(
            "[{}] \"{} {} {:?}\" {} {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {}\n",
            humantime::format_rfc3339_millis(detail.start),
            detail.method,
            detail.path,
            detail.version,
            code,
            flags,
            log.bytes_in,
            bytes_out,
            elapsed.as_millis(),
            detail.forwarded_for,
            detail.user_agent,
            detail.request_id,
            detail.authority,
            upstream,
            cluster,
        ));
    }
    resp
}
