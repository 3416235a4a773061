//! How a request ended and what is recorded of it: Envoy's response
//! flags, Istio's request metrics, the per-rule counters a Rollout judges
//! and the access-log line — written when the response stream ends, as
//! Envoy writes them, not when its head is ready: a client that gives up
//! before the answer is recorded `0 DC` with the time it waited, a body the
//! upstream cuts after the head keeps its code and is flagged `UC`, and
//! every duration runs to the last byte handed to the client.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use http::header;
use http::{Method, Request, Response, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Instant;

use crate::endpoint::UpstreamEndpoint;
use crate::headers::{X_FORWARDED_FOR, X_REQUEST_ID, authority_value};
use crate::metrics::RequestLabels;
use crate::shared::Shared;
use crate::snapshot::{Cluster, Rule};

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
    /// The client went away before the response ended (`DC`).
    DownstreamConnectionTermination,
    /// No response head within the stream idle timeout (`SI`).
    StreamIdleTimeout,
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
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::StreamIdleTimeout => "SI",
        }
    }
}

/// Where a request went, by index into its rule: the destination picked,
/// the endpoint tried last, and how it ended so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) flag: ResponseFlag,
    /// The rule's destination, once picked.
    pub(crate) destination: Option<usize>,
    /// The endpoint of the destination's cluster tried last.
    pub(crate) endpoint: Option<usize>,
    /// Whether that endpoint answered: a 200 it answered records through
    /// the metric handles resolved once for it.
    pub(crate) answered: bool,
}

impl Outcome {
    /// A reply made by the gateway itself, no destination involved.
    pub(crate) fn local(flag: ResponseFlag) -> Self {
        Self {
            flag,
            destination: None,
            endpoint: None,
            answered: false,
        }
    }
}

/// What metrics and the access log need from the request, captured before
/// it is consumed; the access log's part only when there is an access log.
pub(crate) struct RequestLog {
    started: Instant,
    bytes_in: u64,
    /// A HEAD request: its response has a head only, whatever it declares.
    head_only: bool,
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
            head_only: req.method() == Method::HEAD,
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
    workload: &str,
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
        source_workload: workload.to_owned(),
        source_workload_namespace: SOURCE_NAMESPACE.to_owned(),
        source_principal: unknown(),
        source_app: workload.to_owned(),
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
        source_canonical_service: workload.to_owned(),
        destination_canonical_service: of_upstream(|u| &u.identity.canonical_service),
        source_canonical_revision: "latest".to_owned(),
        destination_canonical_revision: of_upstream(|u| &u.identity.canonical_revision),
        source_cluster: "Kubernetes".to_owned(),
        destination_cluster: cluster.map_or_else(unknown, |_| "Kubernetes".to_owned()),
    }
}

/// One request's record, written exactly once: when its response stream
/// ends, or — dropped before that — as the client's giving up. It owns
/// what it names (the shared recorders, the rule, by index what in it the
/// request reached), so it can travel with the response body.
pub(crate) struct Record {
    shared: Arc<Shared>,
    log: RequestLog,
    rule: Option<Arc<Rule>>,
    /// Where the request got to; the request path keeps it current, so a
    /// request abandoned mid-way names the endpoint that kept it waiting.
    progress: Outcome,
    /// The status sent, once the response head is on its way.
    code: Option<u16>,
    bytes_out: u64,
    written: bool,
}

impl Record {
    /// The record of a request that arrived at `log`'s start.
    pub(crate) fn new(shared: Arc<Shared>, log: RequestLog) -> Self {
        Self {
            shared,
            log,
            rule: None,
            progress: Outcome::local(ResponseFlag::None),
            code: None,
            bytes_out: 0,
            written: false,
        }
    }

    /// Keeps the rule the request matched (and with it its destinations'
    /// clusters) for as long as the record lives. Returns what the phases
    /// after routing need: the shared state, the rule, and the progress
    /// they keep current.
    pub(crate) fn route_to(&mut self, rule: Arc<Rule>) -> (&Arc<Shared>, &Rule, &mut Outcome) {
        (&self.shared, self.rule.insert(rule), &mut self.progress)
    }

    /// Sends `resp` on its way with this record: written when its body
    /// ends, or at once when there is no body to wait for — none to send,
    /// or one `whole` in memory already, handed to the connection as it is
    /// (most answers: the common case pays no box and no per-frame work).
    #[inline]
    pub(crate) fn respond<B: Body>(
        mut self,
        resp: Response<B>,
        outcome: Outcome,
        whole: bool,
    ) -> Response<RecordedBody<B>> {
        self.progress = outcome;
        self.code = Some(resp.status().as_u16());
        if self.log.head_only || whole || resp.body().is_end_stream() {
            self.bytes_out = resp.body().size_hint().exact().unwrap_or(0);
            self.write(self.progress.flag);
            return resp.map(|body| RecordedBody { body, record: None });
        }
        let record = Some(Box::new(self));
        resp.map(|body| RecordedBody { body, record })
    }

    /// Writes the metrics, the rule's counters and the access-log line.
    fn write(&mut self, flag: ResponseFlag) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        let elapsed = self.log.started.elapsed();
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        let code = self.code.unwrap_or(0);
        let progress = self.progress;
        let destination = self
            .rule
            .as_deref()
            .zip(progress.destination)
            .and_then(|(rule, d)| rule.destinations.get(d));
        let cluster = destination.and_then(|d| d.cluster.as_deref());
        let upstream = cluster
            .zip(progress.endpoint)
            .and_then(|(c, i)| c.endpoints.get(i))
            .map(|e| &**e);
        let metrics = &self.shared.metrics;
        let workload = self.shared.workload.as_str();
        let (bytes_in, bytes_out) = (self.log.bytes_in, self.bytes_out);
        match (cluster, progress.endpoint) {
            // The common case records through handles resolved once per endpoint.
            (Some(c), Some(i))
                if progress.answered && code == 200 && flag == ResponseFlag::None =>
            {
                if let Some(slot) = c.ok_metrics.get(i) {
                    slot.get_or_init(|| {
                        metrics.handles(&labels_for(
                            workload,
                            cluster,
                            upstream,
                            code,
                            flag.as_str(),
                        ))
                    })
                    .record(duration_ms, bytes_in, bytes_out);
                }
            }
            _ => metrics.record(
                &labels_for(workload, cluster, upstream, code, flag.as_str()),
                duration_ms,
                bytes_in,
                bytes_out,
            ),
        }
        if let (Some(d), Some(u)) = (destination, upstream) {
            // What a Rollout counts as failed: a 5xx, no answer before the
            // client gave up, an answer the upstream cut short.
            let failed =
                code >= 500 || code == 0 || flag == ResponseFlag::UpstreamConnectionTermination;
            let table = &metrics.rule_versions;
            let resolved = progress
                .endpoint
                .filter(|_| progress.answered)
                .and_then(|i| d.rule_counters.by_endpoint.get(i));
            match resolved {
                // Resolved once per endpoint; a failed attempt looks it up.
                Some(slot) => slot
                    .get_or_init(|| table.stats(&d.rule_counters.key(&u.counted_as)))
                    .record(duration_ms, failed),
                None => table
                    .stats(&d.rule_counters.key(&u.counted_as))
                    .record(duration_ms, failed),
            }
        }
        if let (Some(access_log), Some(detail)) = (&self.shared.access_log, &self.log.detail) {
            let upstream = upstream.map_or_else(|| "-".to_owned(), |u| u.addr.to_string());
            let cluster = cluster.map_or("-", |c| c.name.as_str());
            access_log.write(format!(
                "[{}] \"{} {} {:?}\" {} {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {}\n",
                humantime::format_rfc3339_millis(detail.start),
                detail.method,
                detail.path,
                detail.version,
                code,
                flag.as_str(),
                bytes_in,
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
    }
}

impl Drop for Record {
    /// Not written by now: the client went away — before the head (`0`),
    /// or while the body was still on its way (the code sent).
    fn drop(&mut self) {
        self.write(ResponseFlag::DownstreamConnectionTermination);
    }
}

/// A response body that writes its request's record when it ends: at its
/// last frame (as it was), at an error from the upstream (`UC`, the code
/// kept, as Envoy's `200 UC`), or dropped unfinished (`DC`).
pub struct RecordedBody<B> {
    body: B,
    /// The record still to write (boxed: the body is moved through hyper's
    /// layers, the record stays put); `None` once written.
    record: Option<Box<Record>>,
}

impl<B: Body + Unpin> Body for RecordedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        use bytes::Buf;
        let this = self.get_mut();
        let Some(record) = this.record.as_mut() else {
            return Pin::new(&mut this.body).poll_frame(cx);
        };
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    record.bytes_out += data.remaining() as u64;
                }
                if this.body.is_end_stream() {
                    let flag = record.progress.flag;
                    record.write(flag);
                }
            }
            Some(Err(_)) => record.write(ResponseFlag::UpstreamConnectionTermination),
            None => {
                let flag = record.progress.flag;
                record.write(flag);
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
