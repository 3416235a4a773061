//! The request path: match a route, inject faults, pick a destination and
//! an endpoint, forward over a pooled connection with retries and timeout,
//! mirror, rewrite headers, and record metrics and the access log. Phases
//! in order: `route` → `fault` → `pick_destination` → `forward` → `respond`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::{Body, Incoming};
use smallvec::SmallVec;
use tokio::time::Instant;

use crate::access_log::AccessLog;
use crate::balance::{HashInput, UpstreamEndpoint, cookie_value};
use crate::config::{Cluster, HeaderOps, Rule, Snapshot};
use crate::matcher::RequestView;
use crate::metrics::{Metrics, RequestLabels};
use crate::upstream::{self, PooledBody, RequestBody, SendError, UpstreamBody, UpstreamSettings};

/// The body returned downstream: the upstream's, streamed, or a local reply.
pub type DownstreamBody = Either<PooledBody, Full<Bytes>>;

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

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How a request ended, for the access log and metrics.
struct Outcome<'a> {
    flags: &'static str,
    cluster: Option<&'a Cluster>,
    upstream: Option<(SocketAddr, &'a str, &'a str)>,
    /// The endpoint's index in the cluster, for the resolved metrics of a 200.
    endpoint_index: Option<usize>,
}

impl Outcome<'_> {
    fn local(flags: &'static str) -> Self {
        Self {
            flags,
            cluster: None,
            upstream: None,
            endpoint_index: None,
        }
    }
}

/// The client end of a downstream connection, its address formatted once
/// for `x-forwarded-for` rather than on every request.
#[derive(Clone, Debug)]
pub struct Peer {
    addr: SocketAddr,
    forwarded_for: HeaderValue,
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let forwarded_for = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            addr,
            forwarded_for,
        }
    }
}

/// Handles one request that arrived on Gateway port `port` from `peer`.
pub async fn handle(
    shared: Arc<Shared>,
    port: u16,
    peer: Peer,
    mut req: Request<Incoming>,
) -> Response<DownstreamBody> {
    let client = peer.addr;
    let started = Instant::now();
    let snapshot = shared.snapshot.load_full();
    ensure_request_id(req.headers_mut());
    let log = RequestLog::new(&req, shared.access_log.is_some());

    if normalize_host(&mut req).is_err() {
        return finish(
            &shared,
            &log,
            started,
            protocol_error(),
            Outcome::local("DPE"),
        );
    }
    let Some(listener) = snapshot.listeners.get(&port) else {
        return no_route(&shared, &log, started);
    };
    // Owned copies that share the request's buffers (no allocation), so the
    // headers can be changed while these are borrowed.
    let authority = authority_value(&req);
    let authority = authority.to_str().unwrap_or_default();
    let host = strip_port(authority);
    let uri = req.uri().clone();
    let (path, query) = (uri.path(), uri.query());
    let gateway = listener
        .gateways
        .first()
        .map(String::as_str)
        .unwrap_or_default();

    // route: the first matching rule of the most specific virtual host.
    let rule = {
        let view = RequestView {
            path,
            query,
            method: req.method().as_str(),
            scheme: "http",
            authority,
            headers: req.headers(),
            port,
            gateway,
        };
        listener.route(host, &view).cloned()
    };
    let Some(rule) = rule else {
        return no_route(&shared, &log, started);
    };

    // fault: delay, then maybe abort, as Envoy's fault filter does.
    if let Some(fault) = &rule.fault {
        if let Some((delay, pct)) = fault.delay
            && roll(pct)
        {
            tokio::time::sleep(delay).await;
        }
        if let Some((status, pct)) = fault.abort
            && roll(pct)
        {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return finish(
                &shared,
                &log,
                started,
                local_reply(status, "fault filter abort"),
                Outcome::local("FI"),
            );
        }
    }

    // pick_destination: affinity cookie, else the shared smooth split.
    let (dest_index, affinity_cookie) = pick_destination(&rule, req.headers());
    let dest = &rule.destinations[dest_index];
    let Some(cluster) = dest.cluster.as_deref() else {
        return finish(
            &shared,
            &log,
            started,
            local_reply(StatusCode::SERVICE_UNAVAILABLE, ""),
            Outcome::local("NC"),
        );
    };
    if cluster.endpoints.is_empty() {
        let outcome = Outcome {
            flags: "UH",
            cluster: Some(cluster),
            upstream: None,
            endpoint_index: None,
        };
        return finish(
            &shared,
            &log,
            started,
            local_reply(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream"),
            outcome,
        );
    }

    prepare_upstream_headers(req.headers_mut(), &peer, authority);
    apply_request_ops(req.headers_mut(), &rule.headers);
    apply_request_ops(req.headers_mut(), &dest.headers);

    let body_is_empty = req.body().is_end_stream();
    if body_is_empty {
        for mirror in &rule.mirrors {
            if let Some(m) = &mirror.cluster
                && !m.endpoints.is_empty()
                && roll(mirror.percent)
            {
                send_mirror(&shared, m, &req, authority, client);
            }
        }
    }

    // forward: attempts with retries, within the route timeout.
    let (parts, body) = req.into_parts();
    let body_failed = Arc::new(AtomicBool::new(false));
    let mut body = (!body_is_empty).then(|| RequestBody::new(body, body_failed.clone()));
    let deadline = rule.timeout.map(|t| started + t);
    let hash_input = HashInput {
        headers: &parts.headers,
        client: client.ip(),
        query,
    };
    let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
    let mut hash_cookie = None;
    let max_attempts = if body_is_empty {
        1 + rule.retry.attempts
    } else {
        1
    };
    let mut attempt = 0;
    // One resend, not counted as a retry, when a pooled connection closed
    // under an idempotent body-less request (as nginx does for idempotent
    // requests): the server never saw it through.
    let mut may_resend = body_is_empty && is_idempotent(&parts.method);
    let result = loop {
        attempt += 1;
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
        let endpoint = &cluster.endpoints[index];
        let upstream_body: UpstreamBody = match body.take() {
            Some(b) => Either::Left(b),
            None => Either::Right(Empty::new()),
        };
        let upstream_req = build_upstream(&parts, upstream_body);
        let per_try = rule.retry.per_try_timeout;
        let limit = match (deadline, per_try) {
            (Some(d), Some(p)) => Some(d.min(Instant::now() + p)),
            (Some(d), None) => Some(d),
            (None, Some(p)) => Some(Instant::now() + p),
            (None, None) => None,
        };
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        let sent = upstream::send(endpoint, shared.upstream, upstream_req);
        let outcome = match limit {
            Some(limit) => tokio::time::timeout_at(limit, sent).await.map_err(|_| ()),
            None => Ok(sent.await),
        };
        endpoint.active.fetch_sub(1, Ordering::Relaxed);
        let can_retry = attempt < max_attempts && deadline.is_none_or(|d| Instant::now() < d);
        let on = &rule.retry.on;
        // A body the client sent malformed is its error, whatever the
        // upstream made of the cut-off request.
        if !matches!(outcome, Ok(Ok(_))) && body_failed.load(Ordering::Relaxed) {
            break Attempt::Malformed;
        }
        match outcome {
            Ok(Ok(resp)) => {
                let code = resp.status().as_u16();
                let retry_status = (on.five_xx && code >= 500)
                    || (on.gateway_error && matches!(code, 502..=504))
                    || (on.unavailable && code == 503)
                    || on.statuses.contains(&code);
                if retry_status && can_retry {
                    tokio::time::sleep(backoff(rule.retry.backoff, attempt)).await;
                    continue;
                }
                break Attempt::Answered(resp, endpoint, index);
            }
            Ok(Err(SendError::Connect(_))) => {
                if on.connect_failure && can_retry {
                    tokio::time::sleep(backoff(rule.retry.backoff, attempt)).await;
                    continue;
                }
                break Attempt::Failed("UF", endpoint);
            }
            Ok(Err(SendError::Stale(_))) if may_resend => {
                may_resend = false;
                attempt -= 1;
                continue;
            }
            Ok(Err(SendError::Connection(_) | SendError::Stale(_))) => {
                if (on.reset || on.five_xx) && can_retry {
                    continue;
                }
                break Attempt::Failed("UC", endpoint);
            }
            Err(()) => {
                let per_try_expired = deadline.is_none_or(|d| Instant::now() < d);
                if per_try_expired && (on.five_xx || on.gateway_error) && can_retry {
                    continue;
                }
                break Attempt::Failed("UT", endpoint);
            }
        }
    };

    // respond.
    let (resp, outcome) = match result {
        Attempt::Answered(resp, endpoint, index) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            apply_response_ops(&mut parts.headers, &rule.headers);
            apply_response_ops(&mut parts.headers, &dest.headers);
            parts.version = Version::HTTP_11;
            let body = match deadline {
                Some(d) => body.with_deadline(d),
                None => body,
            };
            let resp = Response::from_parts(parts, Either::Left(body));
            let outcome = Outcome {
                flags: if attempt > 1 { "URX" } else { "-" },
                cluster: Some(cluster),
                upstream: Some((endpoint.addr, &endpoint.workload, &endpoint.version)),
                endpoint_index: Some(index),
            };
            (resp, outcome)
        }
        Attempt::Malformed => (protocol_error(), Outcome::local("DPE")),
        Attempt::Failed(flags, endpoint) => {
            let (status, text) = match flags {
                "UT" => (StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"),
                "UF" => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
                ),
                _ => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
                ),
            };
            let outcome = Outcome {
                flags,
                cluster: Some(cluster),
                upstream: Some((endpoint.addr, &endpoint.workload, &endpoint.version)),
                endpoint_index: None,
            };
            (local_reply(status, text), outcome)
        }
    };
    let mut resp = resp;
    for cookie in [affinity_cookie, hash_cookie].into_iter().flatten() {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    finish(&shared, &log, started, resp, outcome)
}

enum Attempt<'a> {
    Answered(Response<PooledBody>, &'a UpstreamEndpoint, usize),
    Failed(&'static str, &'a UpstreamEndpoint),
    /// The client's body could not be read: its error, not the destination's.
    Malformed,
}

/// One authority per request, as RFC 9112 §3.2 asks: an absolute-form
/// target's (or h2's `:authority`) replaces any Host header; otherwise an
/// HTTP/1.1 request must carry exactly one Host, and no request two.
/// `Err` is a 400 for the client.
fn normalize_host<B>(req: &mut Request<B>) -> Result<(), ()> {
    if let Some(authority) = req.uri().authority() {
        let value = HeaderValue::from_str(authority.as_str()).map_err(|_| ())?;
        req.headers_mut().insert(header::HOST, value);
        return Ok(());
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), None) => Ok(()),
        (None, _) if req.version() < Version::HTTP_11 => Ok(()),
        _ => Err(()),
    }
}

/// Methods whose requests may be sent twice (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Envoy's retry backoff: a random time up to base × 2^(attempt−1), capped at 10 × base.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = base.saturating_mul(10);
    let ceiling = base
        .saturating_mul(1 << (attempt.saturating_sub(1)).min(10))
        .min(cap);
    Duration::from_nanos(fastrand::u64(..=ceiling.as_nanos() as u64))
}

/// The destination index and, for version affinity, a cookie to set.
fn pick_destination(rule: &Rule, headers: &HeaderMap) -> (usize, Option<String>) {
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

/// The request's authority as an owned header value: the Host header's
/// (shared, not copied), or an absolute-form URI's.
fn authority_value<B>(req: &Request<B>) -> HeaderValue {
    let empty = HeaderValue::from_static("");
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).unwrap_or(empty),
        None => req.headers().get(header::HOST).cloned().unwrap_or(empty),
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(authority: &str) -> &str {
    let bytes = authority.as_bytes();
    match bytes.iter().rposition(|&b| b == b':') {
        Some(i) if !bytes[i..].contains(&b']') => &authority[..i],
        _ => authority,
    }
}

/// Envoy's `x-request-id`: kept when the client sent one, else a random
/// UUID v4, formatted on the stack.
fn ensure_request_id(headers: &mut HeaderMap) {
    if let header::Entry::Vacant(slot) = headers.entry(X_REQUEST_ID) {
        let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_ne_bytes()).into_uuid();
        let mut buf = uuid::Uuid::encode_buffer();
        if let Ok(v) = HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf)) {
            slot.insert(v);
        }
    }
}

/// Removes the hop-by-hop headers and those `Connection` names. Most
/// messages carry none or only `Connection: keep-alive`, so one pass over
/// the names finds which to remove instead of a lookup for each of them.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // `keep-alive` and `close` name no header beyond the list; a bare one is
    // what nearly every `Connection` header says, so it skips the parsing.
    let names_nothing =
        |n: &[u8]| n.eq_ignore_ascii_case(b"keep-alive") || n.eq_ignore_ascii_case(b"close");
    let connection = headers.get_all(header::CONNECTION);
    let named: SmallVec<[HeaderName; 2]> = if connection.iter().all(|v| names_nothing(v.as_bytes()))
    {
        SmallVec::new()
    } else {
        connection
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !names_nothing(n.as_bytes()))
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect()
    };
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    for name in &named {
        headers.remove(name);
    }
}

/// Hop-by-hop removal, the Host header for HTTP/1.1 upstreams, and the
/// x-forwarded-* headers a gateway sets.
fn prepare_upstream_headers(headers: &mut HeaderMap, peer: &Peer, authority: &str) {
    strip_hop_by_hop(headers);
    if let header::Entry::Vacant(host) = headers.entry(header::HOST)
        && let Ok(v) = HeaderValue::from_str(authority)
    {
        host.insert(v);
    }
    match headers.entry(X_FORWARDED_FOR) {
        header::Entry::Vacant(xff) => {
            xff.insert(peer.forwarded_for.clone());
        }
        header::Entry::Occupied(mut xff) => {
            // A value that is not text is replaced by the client's address.
            let appended = xff
                .get()
                .to_str()
                .ok()
                .and_then(|prev| HeaderValue::from_str(&format!("{prev}, {}", peer.addr.ip())).ok())
                .unwrap_or_else(|| peer.forwarded_for.clone());
            xff.insert(appended);
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

/// Remove, then set, then add: Envoy's order for header operations.
fn apply_ops(
    headers: &mut HeaderMap,
    remove: &[HeaderName],
    set: &[(HeaderName, HeaderValue)],
    add: &[(HeaderName, HeaderValue)],
) {
    for name in remove {
        headers.remove(name);
    }
    for (name, value) in set {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in add {
        headers.append(name.clone(), value.clone());
    }
}

fn apply_request_ops(headers: &mut HeaderMap, ops: &HeaderOps) {
    apply_ops(
        headers,
        &ops.request_remove,
        &ops.request_set,
        &ops.request_add,
    );
}

fn apply_response_ops(headers: &mut HeaderMap, ops: &HeaderOps) {
    apply_ops(
        headers,
        &ops.response_remove,
        &ops.response_set,
        &ops.response_add,
    );
}

/// The upstream request: HTTP/1.1 in origin form (the Host header names
/// the service), same method, path, headers.
fn build_upstream(parts: &http::request::Parts, body: UpstreamBody) -> Request<UpstreamBody> {
    let path = origin_form(&parts.uri);
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = Uri::from(path);
    *req.headers_mut() = parts.headers.clone();
    req
}

/// The target sent upstream (RFC 9112 §3.2.1): the path and query, and an
/// empty path is `/` (`*` stays `*`). An absolute-form target may have no
/// path (`http://h?q`, `http://h#fragment`); for those the `http` crate's
/// path reads `/` but the URI prints an empty target, which hyper's client
/// then wrote as a malformed request line (found by the listener fuzz
/// target). So an absolute-form target is rebuilt from its text; an
/// origin-form one (nearly every request) is shared as it is.
fn origin_form(uri: &Uri) -> http::uri::PathAndQuery {
    let slash = || http::uri::PathAndQuery::from_static("/");
    match uri.path_and_query() {
        Some(pq) if uri.authority().is_none() && pq.as_str().starts_with('/') => pq.clone(),
        Some(pq) if pq.as_str() == "*" => pq.clone(),
        Some(pq) => {
            let text = pq.as_str();
            let text = if text.starts_with('/') {
                text.to_owned()
            } else {
                format!("/{text}")
            };
            text.parse().unwrap_or_else(|_| slash())
        }
        None => slash(),
    }
}

/// Copies a body-less request to a mirror cluster, fire and forget, with
/// `-shadow` appended to the host as Istio does.
fn send_mirror(
    shared: &Arc<Shared>,
    cluster: &Cluster,
    req: &Request<Incoming>,
    authority: &str,
    client: SocketAddr,
) {
    let input = HashInput {
        headers: req.headers(),
        client: client.ip(),
        query: req.uri().query(),
    };
    let endpoint = &cluster.endpoints[cluster.policy.pick(&cluster.endpoints, &input).index];
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = req.method().clone();
    parts.uri = req.uri().clone();
    parts.headers = req.headers().clone();
    let shadow_host = format!("{}-shadow", strip_port(authority));
    if let Ok(v) = HeaderValue::from_str(&shadow_host) {
        parts.headers.insert(header::HOST, v);
    }
    let mirror = build_upstream(&parts, Either::Right(Empty::new()));
    let endpoint = endpoint.clone();
    let shared = shared.clone();
    let labels = labels_for(
        &shared,
        Some(cluster),
        Some((endpoint.addr, &endpoint.workload, &endpoint.version)),
        0,
        "-",
    );
    tokio::spawn(async move {
        if let Ok(resp) = upstream::send(&endpoint, shared.upstream, mirror).await {
            let mut labels = labels;
            labels.response_code = resp.status().as_u16();
            shared.metrics.record_mirror(&labels);
            // Read to the end, so the connection goes back to the pool.
            let mut body = resp.into_body();
            while body.frame().await.is_some_and(|f| f.is_ok()) {}
        }
    });
}

/// Envoy's answer when no route matches: 404 with flag NR.
fn no_route(shared: &Shared, log: &RequestLog, started: Instant) -> Response<DownstreamBody> {
    finish(
        shared,
        log,
        started,
        local_reply(StatusCode::NOT_FOUND, ""),
        Outcome::local("NR"),
    )
}

/// Envoy's answer to a downstream protocol error (flag DPE): 400, and the
/// connection closes, as what follows on it cannot be trusted.
fn protocol_error() -> Response<DownstreamBody> {
    let mut resp = local_reply(StatusCode::BAD_REQUEST, "Bad Request");
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// An Envoy-style local reply.
fn local_reply(status: StatusCode, text: &'static str) -> Response<DownstreamBody> {
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

/// What metrics and the access log need from the request, captured before
/// it is consumed; the access log's part only when there is an access log.
struct RequestLog {
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
    fn new(req: &Request<Incoming>, logging: bool) -> Self {
        let header = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        Self {
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

fn labels_for(
    shared: &Shared,
    cluster: Option<&Cluster>,
    upstream: Option<(SocketAddr, &str, &str)>,
    code: u16,
    flags: &str,
) -> RequestLabels {
    let unknown = || "unknown".to_owned();
    RequestLabels {
        reporter: "source".to_owned(),
        source_workload: shared.workload.clone(),
        destination_service: cluster.map_or_else(unknown, |c| c.service_fqdn.clone()),
        destination_service_name: cluster.map_or_else(unknown, |c| c.service.1.clone()),
        destination_service_namespace: cluster.map_or_else(unknown, |c| c.service.0.clone()),
        destination_workload: upstream.map_or_else(unknown, |u| u.1.to_owned()),
        destination_version: upstream.map_or_else(unknown, |u| u.2.to_owned()),
        request_protocol: "http".to_owned(),
        response_code: code,
        response_flags: flags.to_owned(),
    }
}

/// Records metrics and the access-log line, and returns the response.
fn finish(
    shared: &Shared,
    log: &RequestLog,
    started: Instant,
    resp: Response<DownstreamBody>,
    outcome: Outcome<'_>,
) -> Response<DownstreamBody> {
    let elapsed = started.elapsed();
    let code = resp.status().as_u16();
    let bytes_out = resp.body().size_hint().exact().unwrap_or(0);
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    match (outcome.cluster, outcome.endpoint_index) {
        // The common case records through handles resolved once per endpoint.
        (Some(cluster), Some(i)) if code == 200 && outcome.flags == "-" => cluster.ok_metrics[i]
            .get_or_init(|| {
                shared.metrics.handles(&labels_for(
                    shared,
                    outcome.cluster,
                    outcome.upstream,
                    code,
                    outcome.flags,
                ))
            })
            .record(duration_ms, log.bytes_in, bytes_out),
        _ => shared.metrics.record(
            &labels_for(
                shared,
                outcome.cluster,
                outcome.upstream,
                code,
                outcome.flags,
            ),
            duration_ms,
            log.bytes_in,
            bytes_out,
        ),
    }
    if let (Some(access_log), Some(detail)) = (&shared.access_log, &log.detail) {
        let upstream = outcome
            .upstream
            .map_or_else(|| "-".to_owned(), |u| u.0.to_string());
        let cluster = outcome.cluster.map_or("-", |c| c.name.as_str());
        access_log.write(format!(
            "[{}] \"{} {} {:?}\" {} {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {}\n",
            humantime::format_rfc3339_millis(detail.start),
            detail.method,
            detail.path,
            detail.version,
            code,
            outcome.flags,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4_and_a_clients_id_is_kept() {
        let mut headers = HeaderMap::new();
        ensure_request_id(&mut headers);
        let id = headers[&X_REQUEST_ID].to_str().unwrap().to_owned();
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{id}"
        );
        assert!(
            id.chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{id}"
        );
        assert!(groups[2].starts_with('4'), "version 4: {id}");
        assert!(
            matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "variant 10: {id}"
        );
        let mut again = HeaderMap::new();
        ensure_request_id(&mut again);
        assert_ne!(again[&X_REQUEST_ID], headers[&X_REQUEST_ID]);
        let mut sent = HeaderMap::new();
        sent.insert(X_REQUEST_ID, HeaderValue::from_static("from-the-client"));
        ensure_request_id(&mut sent);
        assert_eq!(sent[&X_REQUEST_ID], "from-the-client");
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "Keep-Alive, X-Private"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("x-private", "secret"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
            ("content-length", "2"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "x-kept"]);

        let mut plain = HeaderMap::new();
        plain.insert(header::HOST, HeaderValue::from_static("example.com"));
        let before = plain.clone();
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain, before);

        // The common case: a bare `Connection: keep-alive` goes, nothing else.
        let mut kept_alive = before.clone();
        kept_alive.insert(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        kept_alive.insert("x-private", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut kept_alive);
        let mut left: Vec<&str> = kept_alive.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "x-private"]);
    }

    #[test]
    fn the_port_is_stripped_from_names_and_addresses() {
        for (authority, host) in [
            ("example.com:8080", "example.com"),
            ("example.com", "example.com"),
            ("127.0.0.1:8150", "127.0.0.1"),
            ("[::1]:80", "[::1]"),
            ("[::1]", "[::1]"),
            ("", ""),
        ] {
            assert_eq!(strip_port(authority), host, "{authority}");
        }
    }

    #[test]
    fn the_upstream_target_is_never_empty() {
        for (target, sent) in [
            ("/a?b=1", "/a?b=1"),
            ("http://h", "/"),
            ("http://h?q=1", "/?q=1"),
            ("http://h/p", "/p"),
            ("hstp://abs.exa#ple:81~/p?q=1", "/"),
            // OPTIONS' asterisk form stays as it is.
            ("*", "*"),
        ] {
            let uri: Uri = target.parse().unwrap();
            assert_eq!(origin_form(&uri).as_str(), sent, "{target}");
            assert_eq!(Uri::from(origin_form(&uri)).to_string(), sent, "{target}");
        }
    }

    #[test]
    fn forwarded_for_appends_the_client() {
        let client = Peer::new("10.1.2.3:5555".parse().unwrap());
        let mut headers = HeaderMap::new();
        prepare_upstream_headers(&mut headers, &client, "example.com");
        assert_eq!(headers[&X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(headers[header::HOST], "example.com");
        let v6 = Peer::new("[2001:db8::1]:80".parse().unwrap());
        prepare_upstream_headers(&mut headers, &v6, "example.com");
        assert_eq!(headers[&X_FORWARDED_FOR], "10.1.2.3, 2001:db8::1");

        // A value that is not text is replaced by the client's address.
        let mut garbled = HeaderMap::new();
        garbled.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        prepare_upstream_headers(&mut garbled, &client, "example.com");
        assert_eq!(garbled[&X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(garbled.get_all(&X_FORWARDED_FOR).iter().count(), 1);
    }
}
