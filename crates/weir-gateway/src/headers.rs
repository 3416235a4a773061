//! The header rules a gateway applies, as Envoy applies them: one
//! authority per request, `x-request-id`, hop-by-hop removal,
//! `x-forwarded-*`, a route's header operations, and the upstream request
//! in origin form.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use smallvec::SmallVec;

use crate::endpoint::UpstreamBody;
use crate::head_timer::HeadTimer;
use crate::snapshot::HeaderOps;

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

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a request knows of its downstream connection: the client's
/// address, formatted once for `x-forwarded-for` rather than on every
/// request, and the connection's clock. One pointer, so each request's
/// future (moved whole into place per request) carries 8 bytes of it.
#[derive(Clone)]
pub struct Peer(Arc<PeerInner>);

struct PeerInner {
    addr: SocketAddr,
    forwarded_for: HeaderValue,
    clock: HeadTimer,
}

impl Peer {
    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// The connection's clock, for the wait for a response head.
    pub fn clock(&self) -> &HeadTimer {
        &self.0.clock
    }

    /// The peer at `addr`, on a connection whose clock is `clock`.
    pub fn new(addr: SocketAddr, clock: HeadTimer) -> Self {
        let forwarded_for = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self(Arc::new(PeerInner {
            addr,
            forwarded_for,
            clock,
        }))
    }
}

/// One authority per request, as RFC 9112 §3.2 asks: an absolute-form
/// target's (or h2's `:authority`) replaces any Host header; otherwise an
/// HTTP/1.1 request must carry exactly one Host, and no request two.
/// `Err` is a 400 for the client.
pub(crate) fn normalize_host<B>(req: &mut Request<B>) -> Result<(), ()> {
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
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The request's authority as an owned header value: the Host header's
/// (shared, not copied), or an absolute-form URI's.
pub(crate) fn authority_value<B>(req: &Request<B>) -> HeaderValue {
    let empty = HeaderValue::from_static("");
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).unwrap_or(empty),
        None => req.headers().get(header::HOST).cloned().unwrap_or(empty),
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
pub(crate) fn strip_port(authority: &str) -> &str {
    let bytes = authority.as_bytes();
    match bytes.iter().rposition(|&b| b == b':') {
        Some(i) if !bytes[i..].contains(&b']') => &authority[..i],
        _ => authority,
    }
}

/// Envoy's `x-request-id`: kept when the client sent one, else a random
/// UUID v4, formatted on the stack.
pub(crate) fn ensure_request_id(headers: &mut HeaderMap) {
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
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
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
pub(crate) fn prepare_upstream_headers(headers: &mut HeaderMap, peer: &Peer, authority: &str) {
    strip_hop_by_hop(headers);
    if let header::Entry::Vacant(host) = headers.entry(header::HOST)
        && let Ok(v) = HeaderValue::from_str(authority)
    {
        host.insert(v);
    }
    match headers.entry(X_FORWARDED_FOR) {
        header::Entry::Vacant(xff) => {
            xff.insert(peer.0.forwarded_for.clone());
        }
        header::Entry::Occupied(mut xff) => {
            // A value that is not text is replaced by the client's address.
            let appended = xff
                .get()
                .to_str()
                .ok()
                .and_then(|prev| {
                    HeaderValue::from_str(&format!("{prev}, {}", peer.0.addr.ip())).ok()
                })
                .unwrap_or_else(|| peer.0.forwarded_for.clone());
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

pub(crate) fn apply_request_ops(headers: &mut HeaderMap, ops: &HeaderOps) {
    apply_ops(
        headers,
        &ops.request_remove,
        &ops.request_set,
        &ops.request_add,
    );
}

pub(crate) fn apply_response_ops(headers: &mut HeaderMap, ops: &HeaderOps) {
    apply_ops(
        headers,
        &ops.response_remove,
        &ops.response_set,
        &ops.response_add,
    );
}

/// The upstream request: HTTP/1.1 in origin form (the Host header names
/// the service), same method, path, headers.
pub(crate) fn build_upstream(
    parts: &http::request::Parts,
    body: UpstreamBody,
) -> Request<UpstreamBody> {
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
pub(crate) fn origin_form(uri: &Uri) -> http::uri::PathAndQuery {
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
        let client = Peer::new("10.1.2.3:5555".parse().unwrap(), HeadTimer::new());
        let mut headers = HeaderMap::new();
        prepare_upstream_headers(&mut headers, &client, "example.com");
        assert_eq!(headers[&X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(headers[header::HOST], "example.com");
        let v6 = Peer::new("[2001:db8::1]:80".parse().unwrap(), HeadTimer::new());
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
