//! The mock's shared state (stored objects, the request log, scripted
//! answers, pod logs, port-forward targets) and the API server's shapes of
//! answer: JSON, a `Status`, the plain-text 404 of a URL not served.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// One request as the server received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The `Authorization` header.
    pub authorization: String,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

impl Recorded {
    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `METHOD path`, for comparing whole conversations.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A `Status` failure as the API server sends it.
    Status {
        /// The HTTP code.
        code: u16,
        /// `NotFound`, `Conflict`, `Forbidden`, ...
        reason: String,
        /// The human message.
        message: String,
    },
    /// Any JSON.
    Json(u16, Value),
    /// Plain text (the pod proxy, logs).
    Text(u16, String),
    /// Watch events, one JSON object per line; the stream then stays open.
    Events(Vec<Value>),
    /// Watch events, then the stream ends: a watch the server closed or
    /// whose connection dropped.
    EventsThenEnd(Vec<Value>),
    /// Never answers (for timeouts).
    Hang,
}

impl Reply {
    /// A `Status` failure.
    pub fn status(code: u16, reason: &str, message: &str) -> Self {
        Reply::Status {
            code,
            reason: reason.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// A scripted answer to `method path`, `remaining` more times (`None`:
/// always).
pub(crate) struct Rule {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) reply: Reply,
    pub(crate) remaining: Option<usize>,
}

/// Everything the server's handlers share.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) objects: Mutex<BTreeMap<String, Value>>,
    pub(crate) log: Mutex<Vec<Recorded>>,
    pub(crate) rules: Mutex<Vec<Rule>>,
    pub(crate) logs: Mutex<BTreeMap<(String, String), String>>,
    pub(crate) bump_unchanged_custom: std::sync::atomic::AtomicBool,
    pub(crate) forwards: Mutex<BTreeMap<(String, u16), SocketAddr>>,
    pub(crate) version: AtomicU64,
}

/// A lock, whatever a panicking holder left.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The body of every answer.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// A whole body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON answer.
pub(crate) fn json_response(code: u16, value: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(full(value.to_string()))
        .unwrap_or_default()
}

/// A `Status` failure, as the API server sends one.
pub(crate) fn status_response(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

/// The API server's answer to a URL it does not serve: plain text, not a
/// `Status` (what kube's client cannot read as "not found").
pub(crate) fn page_not_found() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header("content-type", "text/plain; charset=utf-8")
        .body(full("404 page not found\n"))
        .unwrap_or_default()
}

/// A 404 `Status` naming the object of `path`.
pub(crate) fn not_found(path: &str) -> Response<Body> {
    let mut segments = path.rsplit('/');
    let name = segments.next().unwrap_or_default();
    let plural = segments.next().unwrap_or_default();
    status_response(404, "NotFound", &format!("{plural} \"{name}\" not found"))
}
