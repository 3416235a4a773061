//! A stand-in for the Kubernetes API server, for tests: no cluster (nor a
//! container engine) can run on the machines weir is tested on. It speaks
//! real HTTP on a loopback port, so the code under test — kube's client,
//! the `weir` binary with a kubeconfig — runs unchanged.
//!
//! It keeps objects by their API path and implements what weir uses: GET
//! of an object or a collection, server-side apply (with `dryRun`), JSON
//! patch (RFC 6902, `test` failures answer 422), DELETE, `/version`, and watches that
//! stream given events and stay open. Every request is recorded (method,
//! path, query, content type, body, authorization) for the tests to check
//! the exact conversation, and rules can override answers (404, 409, 403,
//! a server that never answers) for the failure paths.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
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

struct Rule {
    method: Method,
    path: String,
    reply: Reply,
    remaining: Option<usize>,
}

type ReadHook = Box<dyn FnMut(&mut Value) + Send>;

#[derive(Default)]
struct Shared {
    objects: Mutex<BTreeMap<String, Value>>,
    log: Mutex<Vec<Recorded>>,
    rules: Mutex<Vec<Rule>>,
    hooks: Mutex<BTreeMap<String, ReadHook>>,
    version: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running mock API server; stops when dropped.
pub struct MockApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Collections the mock knows (the last path segment of a list).
const COLLECTIONS: [&str; 11] = [
    "pods",
    "services",
    "deployments",
    "horizontalpodautoscalers",
    "gateways",
    "virtualservices",
    "destinationrules",
    "workloadentries",
    "nodes",
    "namespaces",
    "customresourcedefinitions",
];

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(full(value.to_string()))
        .unwrap_or_default()
}

fn status_response(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

impl MockApiServer {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        shared.version.store(100, Ordering::SeqCst);
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig for this server into `dir`: context `mock`
    /// (current), namespace `namespace`, bearer token `test-token`.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: {}\nusers:\n- name: tester\n  user:\n    token: test-token\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: tester\n    namespace: {namespace}\ncurrent-context: mock\n",
            self.url()
        );
        std::fs::write(&path, text).expect("write the kubeconfig");
        path
    }

    /// Stores an object at its API path (e.g.
    /// `/apis/apps/v1/namespaces/default/deployments/my-app-v1`).
    pub fn put(&self, path: &str, mut object: Value) {
        let version = self.shared.version.fetch_add(1, Ordering::SeqCst) + 1;
        object["metadata"]["resourceVersion"] = version.to_string().into();
        if object["metadata"]["generation"].is_null() {
            object["metadata"]["generation"] = 1.into();
        }
        lock(&self.shared.objects).insert(storage_key(path), object);
    }

    /// The object stored at a path.
    pub fn object(&self, path: &str) -> Option<Value> {
        lock(&self.shared.objects).get(&storage_key(path)).cloned()
    }

    /// Answers `method path` (exact path, any query) with `reply`, `times`
    /// times (`None`: always), before the store is consulted.
    pub fn on(&self, method: &str, path: &str, reply: Reply, times: Option<usize>) {
        lock(&self.shared.rules).push(Rule {
            method: method.parse().unwrap_or(Method::GET),
            path: path.to_owned(),
            reply,
            remaining: times,
        });
    }

    /// Runs `hook` on the stored object each time it is read with GET
    /// (e.g. to make istiod "reconcile" after a few reads).
    pub fn on_read(&self, path: &str, hook: impl FnMut(&mut Value) + Send + 'static) {
        lock(&self.shared.hooks).insert(storage_key(path), Box::new(hook));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.log).clone()
    }

    /// The requests so far as `METHOD path` lines.
    pub fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Recorded::line).collect()
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    lock(&shared.log).push(recorded.clone());
    if let Some(reply) = scripted(shared, &parts.method, &recorded.path) {
        return match reply {
            Reply::Status {
                code,
                reason,
                message,
            } => status_response(code, &reason, &message),
            Reply::Json(code, value) => json_response(code, &value),
            Reply::Text(code, text) => Response::builder()
                .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
                .body(full(text))
                .unwrap_or_default(),
            Reply::Events(events) => {
                let lines = futures::stream::iter(
                    events
                        .into_iter()
                        .map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{e}\n"))))),
                )
                .chain(futures::stream::pending());
                Response::builder()
                    .header("content-type", "application/json")
                    .body(BodyExt::boxed(StreamBody::new(lines)))
                    .unwrap_or_default()
            }
            Reply::Hang => {
                futures::future::pending::<()>().await;
                Response::default()
            }
        };
    }
    store(shared, &parts.method, &recorded)
}

fn scripted(shared: &Shared, method: &Method, path: &str) -> Option<Reply> {
    let mut rules = lock(&shared.rules);
    let rule = rules
        .iter_mut()
        .find(|r| r.method == method && r.path == path && r.remaining != Some(0))?;
    if let Some(n) = rule.remaining.as_mut() {
        *n -= 1;
    }
    Some(rule.reply.clone())
}

/// The API groups and versions the mock serves; others answer 404 as on a
/// cluster that lacks them (metrics.k8s.io without metrics-server).
const SERVED: [&str; 6] = [
    "/api/v1/",
    "/apis/apps/v1/",
    "/apis/autoscaling/v1/",
    "/apis/autoscaling/v2/",
    "/apis/networking.istio.io/v1/",
    "/apis/apiextensions.k8s.io/v1/",
];

/// Istio serves v1alpha3, v1beta1 and v1 of one stored object, as a real
/// API server does for a CRD with several versions: they share a key.
fn storage_key(path: &str) -> String {
    path.replace("/networking.istio.io/v1alpha3/", "/networking.istio.io/v1/")
        .replace("/networking.istio.io/v1beta1/", "/networking.istio.io/v1/")
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn not_found(path: &str) -> Response<Body> {
    let mut segments = path.rsplit('/');
    let name = segments.next().unwrap_or_default();
    let plural = segments.next().unwrap_or_default();
    status_response(404, "NotFound", &format!("{plural} \"{name}\" not found"))
}

fn store(shared: &Shared, method: &Method, r: &Recorded) -> Response<Body> {
    if r.path == "/version" {
        return json_response(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"}),
        );
    }
    let key = storage_key(&r.path);
    if !SERVED.iter().any(|prefix| key.starts_with(prefix)) {
        return status_response(
            404,
            "NotFound",
            &format!(
                "the server could not find the requested resource ({method} {})",
                r.path
            ),
        );
    }
    let is_collection = key
        .rsplit('/')
        .next()
        .is_some_and(|last| COLLECTIONS.contains(&last));
    let next_version = || (shared.version.fetch_add(1, Ordering::SeqCst) + 1).to_string();
    let mut objects = lock(&shared.objects);
    match (method.as_str(), is_collection) {
        ("GET", true) => {
            let items: Vec<Value> = objects
                .iter()
                .filter(|(k, _)| parent(k) == key)
                .map(|(_, v)| v.clone())
                .collect();
            let version = shared.version.load(Ordering::SeqCst).to_string();
            json_response(
                200,
                &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": version}, "items": items}),
            )
        }
        ("GET", false) => {
            let Some(object) = objects.get_mut(&key) else {
                return not_found(&r.path);
            };
            if let Some(hook) = lock(&shared.hooks).get_mut(&key) {
                hook(object);
            }
            json_response(200, object)
        }
        ("DELETE", false) => match objects.remove(&key) {
            Some(_) => json_response(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            None => not_found(&r.path),
        },
        ("PATCH", false) if r.content_type.starts_with("application/apply-patch") => {
            let existing = objects.get(&key).cloned();
            let mut merged = existing.clone().unwrap_or_else(|| json!({"metadata": {}}));
            for (k, v) in r.body.as_object().into_iter().flatten() {
                if k == "metadata" {
                    for (mk, mv) in v.as_object().into_iter().flatten() {
                        merged["metadata"][mk] = mv.clone();
                    }
                } else {
                    merged[k] = v.clone();
                }
            }
            if existing.as_ref() != Some(&merged) {
                merged["metadata"]["resourceVersion"] = next_version().into();
                // A spec change bumps the generation, as the API server does.
                let generation = match &existing {
                    Some(e) => {
                        let g = e["metadata"]["generation"].as_i64().unwrap_or(1);
                        g + i64::from(e["spec"] != merged["spec"])
                    }
                    None => 1,
                };
                merged["metadata"]["generation"] = generation.into();
                if existing.is_none() {
                    merged["metadata"]["creationTimestamp"] = "2026-11-28T08:00:00Z".into();
                }
            }
            if r.param("dryRun") != Some("All") {
                objects.insert(key.clone(), merged.clone());
            }
            json_response(if existing.is_some() { 200 } else { 201 }, &merged)
        }
        ("PATCH", false) if r.content_type.starts_with("application/json-patch") => {
            let Some(object) = objects.get_mut(&key) else {
                return not_found(&r.path);
            };
            let patch: json_patch::Patch = match serde_json::from_value(r.body.clone()) {
                Ok(p) => p,
                Err(e) => return status_response(400, "BadRequest", &e.to_string()),
            };
            let mut patched = object.clone();
            if let Err(e) = json_patch::patch(&mut patched, &patch) {
                return status_response(
                    422,
                    "Invalid",
                    &format!("the server rejected our request due to an error in our request: {e}"),
                );
            }
            if patched != *object {
                if patched["spec"] != object["spec"] {
                    let g = object["metadata"]["generation"].as_i64().unwrap_or(1);
                    patched["metadata"]["generation"] = (g + 1).into();
                }
                patched["metadata"]["resourceVersion"] = next_version().into();
            }
            *object = patched.clone();
            json_response(200, &patched)
        }
        _ => status_response(
            404,
            "NotFound",
            &format!(
                "the server could not find the requested resource ({} {})",
                method, r.path
            ),
        ),
    }
}
