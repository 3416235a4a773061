//! The request path, as named phases over one request's context (the shape
//! pingora gives a proxy): [`route`] (host and rule), [`fault`] (delay,
//! abort), [`pick`] (destination and cluster), [`forward`] (headers,
//! mirrors, attempts with retries within the timeout), [`respond`] (the
//! response or a local reply), then the response goes out with the
//! request's [`Record`], written when its stream ends ([`crate::report`]).
//! Each phase either hands the next what it needs or ends the request with
//! a local reply and its response flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::{Body, Incoming};
use smallvec::SmallVec;
use tokio::time::Instant;

use crate::balance::{HashInput, cookie_value};
use crate::canary::CanaryChoice;
use crate::endpoint::{RequestBody, UpstreamBody};
use crate::head_wait::{Bound, wait_for_head};
use crate::headers::{
    Peer, apply_request_ops, apply_response_ops, authority_value, build_upstream,
    ensure_request_id, is_idempotent, normalize_host, prepare_upstream_headers, strip_hop_by_hop,
    strip_port,
};
use crate::matcher::RequestView;
use crate::report::{Outcome, Record, RecordedBody, RequestLog, ResponseFlag, labels_for};
use crate::retry::{Failure, backoff, should_retry};
use crate::shared::Shared;
use crate::snapshot::{Cluster, Entry, Mirror, RouteDestination, Rule, Snapshot, WaitBound};
use crate::upstream::{self, PooledBody, SendError};

/// The body a phase answers with: the upstream's, streamed, or a local reply.
type ReplyBody = Either<PooledBody, Full<Bytes>>;

/// The body returned downstream: the reply, carrying the request's record.
pub type DownstreamBody = RecordedBody<ReplyBody>;

/// What every phase of one request reads.
struct RequestContext<'a> {
    shared: &'a Arc<Shared>,
    peer: &'a Peer,
    started: Instant,
    /// The request's authority (Host), as an owned value sharing its bytes.
    authority: HeaderValue,
}

impl RequestContext<'_> {
    fn authority(&self) -> &str {
        self.authority.to_str().unwrap_or_default()
    }
}

/// Handles one request that arrived on `entry` from `peer`.
pub async fn handle(
    shared: Arc<Shared>,
    entry: Entry,
    peer: Peer,
    mut req: Request<Incoming>,
) -> Response<DownstreamBody> {
    let started = Instant::now();
    let snapshot = shared.snapshot.load_full();
    ensure_request_id(req.headers_mut());
    let log = RequestLog::new(&req, started, shared.access_log.is_some());
    let mut record = Record::new(shared, log);
    let (rule, authority) = match route(&snapshot, entry, &mut req) {
        Ok(routed) => routed,
        Err(flag) => return record.respond(reply_for(flag), Outcome::local(flag), true),
    };
    let (shared, rule, progress) = record.route_to(rule);
    let ctx = RequestContext {
        shared,
        peer: &peer,
        started,
        authority,
    };
    let (resp, outcome) = serve(&ctx, rule, progress, req).await;
    let whole = match resp.body() {
        Either::Left(upstream) => upstream.is_whole(),
        Either::Right(_) => true,
    };
    record.respond(resp, outcome, whole)
}

/// The phases after routing; where the request got to is kept current in
/// `progress`, which the request's record reads if it is abandoned.
async fn serve(
    ctx: &RequestContext<'_>,
    rule: &Rule,
    progress: &mut Outcome,
    req: Request<Incoming>,
) -> (Response<ReplyBody>, Outcome) {
    if let Err(status) = fault(rule).await {
        return (
            local_reply(status, "fault filter abort"),
            Outcome::local(ResponseFlag::FaultInjected),
        );
    }
    let picked = match pick(rule, req.headers()) {
        Ok(picked) => picked,
        Err((flag, destination)) => {
            let outcome = Outcome {
                destination: Some(destination),
                ..Outcome::local(flag)
            };
            return (reply_for(flag), outcome);
        }
    };
    progress.destination = Some(picked.index);
    let forwarded = forward(ctx, rule, &picked, req, progress).await;
    respond(rule, picked, forwarded)
}

/// route: the first matching rule of the most specific virtual host of
/// the port's listener, and the request's authority; a request without
/// exactly one authority is malformed.
#[inline(always)]
fn route(
    snapshot: &Snapshot,
    entry: Entry,
    req: &mut Request<Incoming>,
) -> Result<(Arc<Rule>, HeaderValue), ResponseFlag> {
    normalize_host(req).map_err(|()| ResponseFlag::DownstreamProtocolError)?;
    let listener = snapshot.listener(entry).ok_or(ResponseFlag::NoRoute)?;
    let value = authority_value(req);
    let authority = value.to_str().unwrap_or_default();
    let uri = req.uri();
    let view = RequestView {
        path: uri.path(),
        query: uri.query(),
        method: req.method().as_str(),
        scheme: "http",
        authority,
        headers: req.headers(),
        port: entry.port(),
        gateway: listener
            .gateways
            .first()
            .map(String::as_str)
            .unwrap_or_default(),
    };
    let rule = listener
        .route(strip_port(authority), &view)
        .cloned()
        .ok_or(ResponseFlag::NoRoute)?;
    Ok((rule, value))
}

/// fault: delay, then maybe abort (with this status), as Envoy's fault
/// filter does.
#[inline(always)]
async fn fault(rule: &Rule) -> Result<(), StatusCode> {
    let Some(fault) = &rule.fault else {
        return Ok(());
    };
    if let Some((delay, pct)) = fault.delay
        && roll(pct)
    {
        tokio::time::sleep(delay).await;
    }
    if let Some((status, pct)) = fault.abort
        && roll(pct)
    {
        return Err(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE));
    }
    Ok(())
}

/// Where [`pick`] sends a request.
struct Picked<'r> {
    /// The destination's index in the rule.
    index: usize,
    destination: &'r RouteDestination,
    cluster: &'r Cluster,
    /// The version-affinity cookie to set, when one was chosen now.
    affinity_cookie: Option<String>,
}

/// pick: the destination (affinity cookie, else the shared smooth split)
/// and its cluster, which must exist (else NC) and have a ready endpoint
/// (else UH); a failure names the destination it picked.
#[inline(always)]
fn pick<'r>(rule: &'r Rule, headers: &HeaderMap) -> Result<Picked<'r>, (ResponseFlag, usize)> {
    let (index, affinity_cookie) = pick_destination(rule, headers);
    let destination = &rule.destinations[index];
    let Some(cluster) = destination.cluster.as_deref() else {
        return Err((ResponseFlag::NoCluster, index));
    };
    if cluster.endpoints.is_empty() {
        return Err((ResponseFlag::NoHealthyUpstream, index));
    }
    Ok(Picked {
        index,
        destination,
        cluster,
        affinity_cookie,
    })
}

/// How the last attempt ended. Answered is the common case and by far the
/// largest; boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    /// Answered by the endpoint of this index.
    Answered(Response<PooledBody>, usize),
    /// Failed at the endpoint of this index.
    Failed(ResponseFlag, usize),
    /// The client's body could not be read: its error, not the destination's.
    Malformed,
}

/// What [`forward`] hands [`respond`].
struct Forwarded {
    attempt: Attempt,
    /// Attempts made, the resend of a stale connection not counted.
    attempts: u32,
    /// The consistent-hash cookie to set, when the policy chose one.
    hash_cookie: Option<String>,
    /// The route's deadline, which the response body keeps to.
    deadline: Option<Instant>,
}

/// forward: upstream headers, mirrors, then attempts with the rule's retry
/// policy (retries only for body-less requests) within the route timeout.
async fn forward<'r>(
    ctx: &RequestContext<'_>,
    rule: &Rule,
    picked: &Picked<'r>,
    mut req: Request<Incoming>,
    progress: &mut Outcome,
) -> Forwarded {
    let cluster = picked.cluster;
    prepare_upstream_headers(req.headers_mut(), ctx.peer, ctx.authority());
    apply_request_ops(req.headers_mut(), &rule.headers);
    apply_request_ops(req.headers_mut(), &picked.destination.headers);

    let body_is_empty = req.body().is_end_stream();
    if body_is_empty {
        send_mirrors(ctx, rule, &req);
    }

    let (parts, body) = req.into_parts();
    let body_failed = Arc::new(AtomicBool::new(false));
    let mut body = (!body_is_empty).then(|| RequestBody::new(body, body_failed.clone()));
    let deadline = rule.timeout.map(|t| ctx.started + t);
    let hash_input = HashInput {
        headers: &parts.headers,
        client: ctx.peer.addr().ip(),
        query: parts.uri.query(),
    };
    let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
    let mut hash_cookie = None;
    let max_attempts = if body_is_empty {
        1 + rule.retry.attempts
    } else {
        1
    };
    let mut attempts = 0;
    // One resend, not counted as a retry, when a pooled connection closed
    // under an idempotent body-less request (as nginx does for idempotent
    // requests): the server never saw it through.
    let mut may_resend = body_is_empty && is_idempotent(&parts.method);
    let attempt = loop {
        attempts += 1;
        let pick = cluster.policy.pick(&cluster.endpoints, &hash_input);
        let mut index = pick.index;
        if rule.retry.ignore_previous_hosts
            && !cluster.is_consistent_hash()
            && tried.contains(&index)
            && let Some(other) = (0..cluster.endpoints.len()).find(|i| !tried.contains(i))
        {
            index = other;
        }
        if hash_cookie.is_none() {
            hash_cookie = pick.set_cookie;
        }
        tried.push(index);
        progress.endpoint = Some(index);
        let endpoint = &cluster.endpoints[index];
        let upstream_body: UpstreamBody = match body.take() {
            Some(b) => Either::Left(b),
            None => Either::Right(Empty::new()),
        };
        let upstream_req = build_upstream(&parts, upstream_body);
        let (bound, bound_by_read) =
            attempt_bound(ctx, rule, deadline, body_is_empty, parts.version);
        let bound_by_idle = matches!(bound, Bound::IdleTimer(_) | Bound::IdleClock(_));
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        let sent = upstream::send(endpoint, ctx.shared.upstream, upstream_req);
        let outcome = wait_for_head(ctx.peer.clock(), sent, bound).await;
        endpoint.active.fetch_sub(1, Ordering::Relaxed);
        let can_retry = attempts < max_attempts && deadline.is_none_or(|d| Instant::now() < d);
        // A body the client sent malformed is its error, whatever the
        // upstream made of the cut-off request.
        if !matches!(outcome, Ok(Ok(_))) && body_failed.load(Ordering::Relaxed) {
            break Attempt::Malformed;
        }
        let (failure, flag) = match outcome {
            Ok(Ok(resp)) => {
                let failure = Failure::Status(resp.status().as_u16());
                if can_retry && should_retry(&rule.retry.on, failure) {
                    tokio::time::sleep(backoff(rule.retry.backoff, attempts)).await;
                    continue;
                }
                break Attempt::Answered(resp, index);
            }
            Ok(Err(SendError::Stale(_))) if may_resend => {
                may_resend = false;
                attempts -= 1;
                continue;
            }
            Ok(Err(SendError::Connect(_))) => (
                Failure::ConnectFailure,
                ResponseFlag::UpstreamConnectFailure,
            ),
            Ok(Err(SendError::Connection(_) | SendError::Stale(_))) => {
                (Failure::Reset, ResponseFlag::UpstreamConnectionTermination)
            }
            Err(()) if bound_by_read => {
                break Attempt::Failed(ResponseFlag::UpstreamRequestTimeout, index);
            }
            Err(()) if bound_by_idle => {
                break Attempt::Failed(ResponseFlag::StreamIdleTimeout, index);
            }
            // The route's own deadline is never retried, only a try's.
            Err(()) if deadline.is_none_or(|d| Instant::now() < d) => {
                (Failure::PerTryTimeout, ResponseFlag::UpstreamRequestTimeout)
            }
            Err(()) => break Attempt::Failed(ResponseFlag::UpstreamRequestTimeout, index),
        };
        if can_retry && should_retry(&rule.retry.on, failure) {
            if failure == Failure::ConnectFailure {
                tokio::time::sleep(backoff(rule.retry.backoff, attempts)).await;
            }
            continue;
        }
        break Attempt::Failed(flag, index);
    };
    Forwarded {
        attempt,
        attempts,
        hash_cookie,
        deadline,
    }
}

/// Sends the rule's mirrors of a body-less request, each at its percent.
#[inline(always)]
fn send_mirrors(ctx: &RequestContext<'_>, rule: &Rule, req: &Request<Incoming>) {
    for mirror in &rule.mirrors {
        if let Some(m) = &mirror.cluster
            && !m.endpoints.is_empty()
            && roll(mirror.percent)
        {
            send_mirror(ctx, m, mirror, req);
        }
    }
}

/// What bounds one attempt's wait for the response head, and whether it
/// is an Ingress's read timeout: the tighter of the route's deadline and
/// the try's; for an Ingress, ingress-nginx's read timeout when nothing
/// tighter bounds it; else, for a body-less request, Envoy's stream idle
/// timeout — on the connection's one clock over HTTP/1.1 (a timer per
/// request cost 3 % of the path), a timer of its own over h2, whose
/// streams wait side by side. (A request still sending its body is bounded
/// by the connection's idle timeout.)
#[inline(always)]
fn attempt_bound(
    ctx: &RequestContext<'_>,
    rule: &Rule,
    deadline: Option<Instant>,
    body_is_empty: bool,
    version: Version,
) -> (Bound, bool) {
    let limit = match (deadline, rule.retry.per_try_timeout) {
        (Some(d), Some(p)) => Some(d.min(Instant::now() + p)),
        (Some(d), None) => Some(d),
        (None, Some(p)) => Some(Instant::now() + p),
        (None, None) => None,
    };
    let read_bound = (rule.waits_as == WaitBound::IngressNginx)
        .then(|| Instant::now() + ctx.shared.upstream.ingress_read_timeout);
    let (limit, bound_by_read) = match (limit, read_bound) {
        (Some(l), Some(r)) if r < l => (Some(r), true),
        (None, Some(r)) => (Some(r), true),
        (limit, _) => (limit, false),
    };
    let bound = match limit {
        Some(limit) => Bound::Timer(Box::pin(tokio::time::sleep_until(limit))),
        None if !body_is_empty => Bound::None,
        None => {
            // From the request's start: no clock read of its own.
            let at = ctx.started + ctx.shared.upstream.stream_idle_timeout;
            if version == Version::HTTP_2 {
                Bound::IdleTimer(Box::pin(tokio::time::sleep_until(at)))
            } else {
                Bound::IdleClock(at)
            }
        }
    };
    (bound, bound_by_read)
}

/// respond: the upstream's response with the route's header operations
/// (or the local reply for a failure), plus the cookies picking chose.
#[inline(always)]
fn respond(
    rule: &Rule,
    picked: Picked<'_>,
    forwarded: Forwarded,
) -> (Response<ReplyBody>, Outcome) {
    let (mut resp, outcome) = match forwarded.attempt {
        Attempt::Answered(resp, index) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            apply_response_ops(&mut parts.headers, &rule.headers);
            apply_response_ops(&mut parts.headers, &picked.destination.headers);
            parts.version = Version::HTTP_11;
            let body = match forwarded.deadline {
                Some(d) => body.with_deadline(d),
                None => body,
            };
            let outcome = Outcome {
                flag: if forwarded.attempts > 1 {
                    ResponseFlag::Retried
                } else {
                    ResponseFlag::None
                },
                destination: Some(picked.index),
                endpoint: Some(index),
                answered: true,
            };
            (Response::from_parts(parts, Either::Left(body)), outcome)
        }
        Attempt::Malformed => (
            reply_for(ResponseFlag::DownstreamProtocolError),
            Outcome::local(ResponseFlag::DownstreamProtocolError),
        ),
        Attempt::Failed(flag, index) => {
            let outcome = Outcome {
                flag,
                destination: Some(picked.index),
                endpoint: Some(index),
                answered: false,
            };
            (reply_for(flag), outcome)
        }
    };
    for cookie in [picked.affinity_cookie, forwarded.hash_cookie]
        .into_iter()
        .flatten()
    {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    (resp, outcome)
}

/// The destination index and, for version affinity, a cookie to set.
fn pick_destination(rule: &Rule, headers: &HeaderMap) -> (usize, Option<String>) {
    if let Some(canary) = &rule.canary {
        return match canary.choose(headers) {
            CanaryChoice::Canary => (1, None),
            CanaryChoice::Main => (0, None),
            CanaryChoice::ByWeight => (rule.split.pick(), None),
        };
    }
    let Some(cookie) = &rule.affinity else {
        return (rule.split.pick(), None);
    };
    if rule.destinations.len() > 1
        && let Some(value) = cookie_value(headers, cookie)
        && let Some(i) = rule
            .destinations
            .iter()
            .position(|d| d.label == value && d.weight > 0)
    {
        return (i, None);
    }
    let i = rule.split.pick();
    (
        i,
        Some(format!(
            "{cookie}={}; Path=/; HttpOnly",
            rule.destinations[i].label
        )),
    )
}

/// Whether a request falls in a `percent` share (0–100).
fn roll(percent: f64) -> bool {
    percent >= 100.0 || (percent > 0.0 && fastrand::f64() * 100.0 < percent)
}

/// Copies a body-less request to a mirror cluster, fire and forget, with
/// `-shadow` appended to the host as Istio does.
fn send_mirror(ctx: &RequestContext<'_>, cluster: &Cluster, m: &Mirror, req: &Request<Incoming>) {
    let input = HashInput {
        headers: req.headers(),
        client: ctx.peer.addr().ip(),
        query: req.uri().query(),
    };
    let endpoint = &cluster.endpoints[cluster.policy.pick(&cluster.endpoints, &input).index];
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = req.method().clone();
    parts.uri = req.uri().clone();
    parts.headers = req.headers().clone();
    let shadow_host = format!("{}-shadow", strip_port(ctx.authority()));
    if let Ok(v) = HeaderValue::from_str(&shadow_host) {
        parts.headers.insert(header::HOST, v);
    }
    let mirror = build_upstream(&parts, Either::Right(Empty::new()));
    let endpoint = endpoint.clone();
    let shared = ctx.shared.clone();
    let labels = labels_for(
        &shared.workload,
        Some(cluster),
        Some(&endpoint),
        0,
        ResponseFlag::None.as_str(),
    );
    // The copy's answer counts for the canary in the rule's counters, as a
    // routed request's does (failed: a 5xx or none).
    let key = m.key(&endpoint.counted_as);
    let counters = shared.metrics.rule_versions.stats(&key);
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let answer = upstream::send(&endpoint, shared.upstream, mirror).await;
        let failed = !matches!(&answer, Ok(r) if !r.status().is_server_error());
        counters.record(started.elapsed().as_secs_f64() * 1000.0, failed);
        if let Ok(resp) = answer {
            let mut labels = labels;
            labels.response_code = resp.status().as_u16();
            shared.metrics.record_mirror(&labels);
            // Read to the end, so the connection goes back to the pool.
            let mut body = resp.into_body();
            while body.frame().await.is_some_and(|f| f.is_ok()) {}
        }
    });
}

/// Envoy's local reply for a flag that ends a request here.
fn reply_for(flag: ResponseFlag) -> Response<ReplyBody> {
    match flag {
        ResponseFlag::NoRoute => local_reply(StatusCode::NOT_FOUND, ""),
        // 400, and the connection closes: what follows on it cannot be trusted.
        ResponseFlag::DownstreamProtocolError => {
            let mut resp = local_reply(StatusCode::BAD_REQUEST, "Bad Request");
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
        ResponseFlag::NoHealthyUpstream => {
            local_reply(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream")
        }
        ResponseFlag::UpstreamRequestTimeout => {
            local_reply(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout")
        }
        // The request was whole (only body-less ones are bounded so): 504,
        // as Envoy answers a stream idle timeout once the request is in.
        ResponseFlag::StreamIdleTimeout => {
            local_reply(StatusCode::GATEWAY_TIMEOUT, "stream timeout")
        }
        ResponseFlag::UpstreamConnectFailure => local_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        ),
        ResponseFlag::UpstreamConnectionTermination => local_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
        ),
        ResponseFlag::NoCluster
        | ResponseFlag::FaultInjected
        | ResponseFlag::None
        | ResponseFlag::Retried
        | ResponseFlag::DownstreamConnectionTermination => {
            local_reply(StatusCode::SERVICE_UNAVAILABLE, "")
        }
    }
}

/// An Envoy-style local reply.
fn local_reply(status: StatusCode, text: &'static str) -> Response<ReplyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *resp.status_mut() = status;
    if !text.is_empty() {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp
}
