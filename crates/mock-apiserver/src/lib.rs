//! A stand-in for the Kubernetes API server, for what the real
//! kube-apiserver the tests start (`kube-harness`) cannot show on the
//! test machines: pod logs (no kubelet), port-forward to an ingress
//! gateway's Envoy admin port and the pod proxy to a pod's metrics (the
//! real server refuses loopback pod addresses), metrics.k8s.io answers
//! (no metrics-server), Istio's validating webhook (no istiod), a server
//! before Kubernetes 1.31, and a watch that drops or expires on demand.
//! It speaks real HTTP on a loopback port, so the code under test — kube's
//! client, the `weir` binary with a kubeconfig — runs unchanged.
//!
//! Honest where it models the real server: it keeps one object per
//! resource whichever API version names it (Istio's three, HPA's two);
//! serves a custom resource's group only at the versions its stored CRDs
//! serve ([`MockApiServer::install_istio_crds`]); honours equality-based
//! `labelSelector`s, in a namespace or across all; answers server-side
//! apply (with `dryRun` and field managers' conflicts), JSON patch (RFC
//! 6902, a failed `test` answers 422 without causes), DELETE, `/version`,
//! discovery, and watches that stream given events and stay open; refuses
//! an object in a namespace that does not exist (404 naming it); and
//! answers URLs it does not serve with a plain-text `404 page not found`.
//! Every request is recorded (method, path, query, content type, body,
//! authorization), and rules can override answers for the failure paths.
//!
//! Over 600 lines because it is one small server whose parts — object
//! store, apply and patch, watch, the recorded conversation, the override
//! rules — share one state and lock.

use std::collections::{BTreeMap, BTreeSet};
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

mod gateway;
pub use gateway::GatewayReplica;

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

struct Rule {
    method: Method,
    path: String,
    reply: Reply,
    remaining: Option<usize>,
}

#[derive(Default)]
struct Shared {
    objects: Mutex<BTreeMap<String, Value>>,
    log: Mutex<Vec<Recorded>>,
    rules: Mutex<Vec<Rule>>,
    logs: Mutex<BTreeMap<(String, String), String>>,
    bump_unchanged_custom: std::sync::atomic::AtomicBool,
    managers: Mutex<BTreeMap<String, Managers>>,
    forwards: Mutex<BTreeMap<(String, u16), SocketAddr>>,
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
const COLLECTIONS: [&str; 12] = [
    "pods",
    "services",
    "deployments",
    "horizontalpodautoscalers",
    "ingresses",
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
        {
            // The namespaces every cluster has (and Istio's).
            let mut objects = lock(&shared.objects);
            for ns in NAMESPACES {
                objects.insert(
                    format!("/api/v1/namespaces/{ns}"),
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "resourceVersion": "1"}}),
                );
            }
        }
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
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
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

    /// Installs the CRDs of Istio's kinds weir uses (Gateway,
    /// VirtualService, DestinationRule): until then the mock, like a
    /// cluster without Istio, does not serve `networking.istio.io`.
    pub fn install_istio_crds(&self) {
        for plural in ["gateways", "virtualservices", "destinationrules"] {
            self.put(
                &format!("{CRDS}{plural}.networking.istio.io"),
                istio_crd(plural),
            );
        }
    }

    /// The log of one container of the pod stored at `pod_path`, served
    /// at `POD_PATH/log?container=NAME`.
    pub fn set_log(&self, pod_path: &str, container: &str, text: &str) {
        lock(&self.shared.logs)
            .insert((pod_path.to_owned(), container.to_owned()), text.to_owned());
    }

    /// Makes an apply that changes nothing in a custom resource still bump
    /// its resourceVersion, as API servers before Kubernetes 1.31 did (the
    /// managedFields timestamp changed).
    pub fn bump_unchanged_custom_resources(&self) {
        self.shared
            .bump_unchanged_custom
            .store(true, Ordering::SeqCst);
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

async fn handle(shared: &Shared, mut req: Request<Incoming>) -> Response<Body> {
    let upgrade = hyper::upgrade::on(&mut req);
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
            Reply::EventsThenEnd(events) => {
                let lines = futures::stream::iter(
                    events
                        .into_iter()
                        .map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{e}\n"))))),
                );
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
    if let Some(pod) = recorded.path.strip_suffix("/portforward") {
        return gateway::port_forward(
            shared,
            pod,
            recorded.param("ports"),
            parts
                .headers
                .get(http::header::SEC_WEBSOCKET_KEY)
                .and_then(|k| k.to_str().ok()),
            upgrade,
        );
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

/// The API groups and versions every cluster serves (the mock's subset);
/// a custom resource's group is served at the versions its stored CRDs
/// serve ([`served`]). Others answer the plain-text 404 of a cluster that
/// lacks them (metrics.k8s.io without metrics-server).
const BUILT_IN: [&str; 6] = [
    "/api/v1/",
    "/apis/apps/v1/",
    "/apis/autoscaling/v1/",
    "/apis/autoscaling/v2/",
    "/apis/networking.k8s.io/v1/",
    "/apis/apiextensions.k8s.io/v1/",
];

/// Where CRDs are stored.
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/";

/// The prefixes served now: the built-in APIs, and `/apis/GROUP/VERSION/`
/// for each version a stored CRD of that group serves — as a real API
/// server serves a custom resource only once its CRD is installed.
fn served(objects: &BTreeMap<String, Value>) -> Vec<String> {
    let mut prefixes: Vec<String> = BUILT_IN.iter().map(|p| (*p).to_owned()).collect();
    for (key, crd) in objects.range(CRDS.to_owned()..) {
        if !key.starts_with(CRDS) {
            break;
        }
        let Some(group) = crd["spec"]["group"].as_str() else {
            continue;
        };
        let versions = crd["spec"]["versions"].as_array().into_iter().flatten();
        for version in versions.filter(|v| v["served"] != false) {
            if let Some(name) = version["name"].as_str() {
                let prefix = format!("/apis/{group}/{name}/");
                if !prefixes.contains(&prefix) {
                    prefixes.push(prefix);
                }
            }
        }
    }
    prefixes
}

/// A CRD of Istio's networking group for `plural`, serving the three
/// versions Istio 1.22 and later serve (v1 stored).
fn istio_crd(plural: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.networking.istio.io")},
        "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                 "names": {"plural": plural},
                 "versions": [{"name": "v1alpha3", "served": true, "storage": false},
                              {"name": "v1beta1", "served": true, "storage": false},
                              {"name": "v1", "served": true, "storage": true}]}
    })
}

/// Who set which fields of one object, as the API server's managedFields
/// record it: by (manager, operation, subresource), the leaf field paths
/// (`.spec.replicas`). Lists are atomic, as Istio's CRDs make `spec.http`:
/// a list is one field.
type Managers = BTreeMap<Owner, BTreeSet<String>>;

/// A field manager with its operation (`Apply`, `Update`) and subresource
/// (`scale`, or empty): an apply and an update by the same name are two
/// owners, as on a cluster.
type Owner = (String, String, String);

/// Fields no manager owns on an object's behalf.
const UNOWNED: [&str; 4] = [
    ".apiVersion",
    ".kind",
    ".metadata.name",
    ".metadata.namespace",
];

/// The leaf fields of `value` under `at`: maps are walked, everything else
/// (scalars, lists, empty maps) is one field.
fn leaves(value: &Value, at: &str, out: &mut BTreeSet<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(v, &format!("{at}.{k}"), out);
            }
        }
        _ if !UNOWNED.contains(&at) && !at.is_empty() => {
            out.insert(at.to_owned());
        }
        _ => {}
    }
}

fn fields_of(value: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    leaves(value, "", &mut out);
    out.retain(|f| !f.starts_with(".status"));
    out
}

fn value_at<'a>(value: &'a Value, field: &str) -> Option<&'a Value> {
    field
        .split('.')
        .filter(|k| !k.is_empty())
        .try_fold(value, |v, k| v.get(k))
}

fn remove_at(value: &mut Value, field: &str) {
    let Some((parents, last)) = field.rsplit_once('.') else {
        return;
    };
    let parent = parents
        .split('.')
        .filter(|k| !k.is_empty())
        .try_fold(value, |v, k| v.get_mut(k));
    if let Some(map) = parent.and_then(Value::as_object_mut) {
        map.remove(last);
    }
}

/// Merges an applied configuration into an object: maps field by field,
/// lists and scalars replaced whole.
fn merge(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(t), Some(a)) => {
            for (k, v) in a {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        _ => *target = applied.clone(),
    }
}

fn overlaps(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}."))
}

/// `apps/v1` of `/apis/apps/v1/...`, `v1` of `/api/v1/...`.
fn group_version(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["api", version, ..] => (*version).to_owned(),
        ["apis", group, version, ..] => format!("{group}/{version}"),
        _ => String::new(),
    }
}

/// The fields an apply by `manager` would take from other owners with a
/// different value: the API server's 409, unless forced.
fn conflicts(
    managers: &Managers,
    manager: &str,
    current: &Value,
    applied: &Value,
) -> Vec<(Owner, String)> {
    let mut out = Vec::new();
    for field in fields_of(applied) {
        for (owner, owned) in managers {
            if owner.0 == manager && owner.1 == "Apply" {
                continue;
            }
            let taken = owned.iter().any(|o| overlaps(o, &field));
            if taken && value_at(current, &field) != value_at(applied, &field) {
                out.push((owner.clone(), field.clone()));
            }
        }
    }
    out
}

fn conflict_response(path: &str, found: &[(Owner, String)]) -> Response<Body> {
    let gv = group_version(path);
    let cause = |(owner, field): &(Owner, String)| {
        let subresource = if owner.2.is_empty() {
            String::new()
        } else {
            format!(" with subresource \"{}\"", owner.2)
        };
        (
            format!("conflict with \"{}\"{subresource} using {gv}", owner.0),
            field.clone(),
        )
    };
    let causes: Vec<(String, String)> = found.iter().map(cause).collect();
    let listed: Vec<String> = causes.iter().map(|(m, f)| format!("{m}: {f}")).collect();
    let message = format!(
        "Apply failed with {} conflict{}: {}",
        causes.len(),
        if causes.len() == 1 { "" } else { "s" },
        listed.join("; ")
    );
    let causes: Vec<Value> = causes
        .into_iter()
        .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": m, "field": f}))
        .collect();
    json_response(
        409,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": "Conflict", "details": {"causes": causes}, "code": 409}),
    )
}

/// Records an update by `owner`: every field whose value it changed is
/// now its alone.
fn record_update(managers: &mut Managers, owner: Owner, before: &Value, after: &Value) {
    let changed: Vec<String> = fields_of(before)
        .union(&fields_of(after))
        .filter(|f| value_at(before, f) != value_at(after, f))
        .cloned()
        .collect();
    if changed.is_empty() {
        return;
    }
    for owned in managers.values_mut() {
        owned.retain(|o| !changed.iter().any(|c| overlaps(o, c)));
    }
    managers
        .entry(owner)
        .or_default()
        .extend(changed.into_iter().filter(|f| value_at(after, f).is_some()));
    managers.retain(|_, owned| !owned.is_empty());
}

/// Namespaces that exist from the start.
const NAMESPACES: [&str; 5] = [
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "istio-system",
];

/// The API server's answer to a URL it does not serve: plain text, not a
/// `Status` (what kube's client cannot read as "not found").
fn page_not_found() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header("content-type", "text/plain; charset=utf-8")
        .body(full("404 page not found\n"))
        .unwrap_or_default()
}

/// Discovery of one group (`/apis/GROUP`) or of the core API (`/api`):
/// the versions served, or `None` when none is.
fn discovery(served: &[String], path: &str) -> Option<Value> {
    let prefix = format!("{}/", path.trim_end_matches('/'));
    let versions: Vec<&str> = served
        .iter()
        .filter_map(|p| p.strip_prefix(prefix.as_str()))
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|v| !v.is_empty() && !v.contains('/'))
        .collect();
    if versions.is_empty() {
        return None;
    }
    if path == "/api" {
        return Some(json!({"kind": "APIVersions", "versions": versions}));
    }
    let group = path.trim_start_matches("/apis/");
    let listed: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": listed, "preferredVersion": listed[0]}),
    )
}

/// The namespace of a namespaced object's path, when it is one.
fn namespace_of(path: &str) -> Option<&str> {
    let (_, rest) = path.split_once("/namespaces/")?;
    let (namespace, rest) = rest.split_once('/')?;
    (!rest.is_empty()).then_some(namespace)
}

/// Istio serves v1alpha3, v1beta1 and v1 of one stored object, as a real
/// API server does for a CRD with several versions: they share a key.
/// One object per resource whichever version names it, as a real API
/// server stores one object and converts it per request (the mock does not
/// convert: an object reads back in the shape it was written).
fn storage_key(path: &str) -> String {
    path.replace("/networking.istio.io/v1alpha3/", "/networking.istio.io/v1/")
        .replace("/networking.istio.io/v1beta1/", "/networking.istio.io/v1/")
        .replace("/autoscaling/v2/", "/autoscaling/v1/")
}

/// Stores `patched` over `object` as an Update by `manager` (on
/// `subresource`, or none): a new resourceVersion when anything changed, a
/// new generation when the spec did, the changed fields recorded as that
/// owner's. Returns what was stored.
fn update(
    shared: &Shared,
    key: &str,
    object: &mut Value,
    mut patched: Value,
    manager: &str,
    subresource: &str,
    next_version: impl Fn() -> String,
) -> Value {
    if patched != *object {
        if patched["spec"] != object["spec"] {
            let g = object["metadata"]["generation"].as_i64().unwrap_or(1);
            patched["metadata"]["generation"] = (g + 1).into();
        }
        patched["metadata"]["resourceVersion"] = next_version().into();
    }
    let owner = (
        manager.to_owned(),
        "Update".to_owned(),
        subresource.to_owned(),
    );
    record_update(
        lock(&shared.managers).entry(key.to_owned()).or_default(),
        owner,
        object,
        &patched,
    );
    *object = patched.clone();
    patched
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// A namespaced collection's path as the all-namespaces list names it
/// (`/api/v1/namespaces/NS/services` → `/api/v1/services`).
fn without_namespace(collection: &str) -> String {
    let segments: Vec<&str> = collection.split('/').collect();
    match segments.iter().position(|s| *s == "namespaces") {
        Some(i) if i + 2 < segments.len() => {
            [&segments[..i], &segments[i + 2..]].concat().join("/")
        }
        _ => collection.to_owned(),
    }
}

/// Whether an equality-based label selector (`k=v,k2=v2`, as a list's
/// `labelSelector`) selects an object with `labels`.
fn selects(selector: &str, labels: &Value) -> bool {
    selector
        .split(',')
        .filter(|term| !term.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k.trim_end_matches('=')] == v,
            None => !labels[term].is_null(),
        })
}

fn not_found(path: &str) -> Response<Body> {
    let mut segments = path.rsplit('/');
    let name = segments.next().unwrap_or_default();
    let plural = segments.next().unwrap_or_default();
    status_response(404, "NotFound", &format!("{plural} \"{name}\" not found"))
}

/// A pod's log as the API server serves it: a pod of several containers
/// needs `container` (400 otherwise, `pkg/registry/core/pod/strategy.go`),
/// and a name that is none of its containers is refused.
fn pod_log(shared: &Shared, pod_key: &str, pod: &Value, container: Option<&str>) -> Response<Body> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|field| pod["spec"][field].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    let main: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let chosen = match container {
        Some(c) if containers.contains(&c) => c,
        Some(c) => {
            return status_response(
                400,
                "BadRequest",
                &format!("container {c} is not valid for pod {name}"),
            );
        }
        None if main.len() > 1 => {
            return status_response(
                400,
                "BadRequest",
                &format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                ),
            );
        }
        None => main.first().copied().unwrap_or_default(),
    };
    let text = lock(&shared.logs)
        .get(&(pod_key.to_owned(), chosen.to_owned()))
        .cloned()
        .unwrap_or_default();
    Response::builder()
        .header("content-type", "text/plain")
        .body(full(text))
        .unwrap_or_default()
}

fn store(shared: &Shared, method: &Method, r: &Recorded) -> Response<Body> {
    if r.path == "/version" {
        return json_response(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"}),
        );
    }
    let served = served(&lock(&shared.objects));
    if method == Method::GET
        && (r.path == "/api"
            || (r.path.starts_with("/apis/") && r.path[6..].split('/').count() == 1))
    {
        return discovery(&served, &r.path).map_or_else(page_not_found, |v| json_response(200, &v));
    }
    if !served
        .iter()
        .any(|prefix| r.path.starts_with(prefix.as_str()))
    {
        return page_not_found();
    }
    let key = storage_key(&r.path);
    let is_collection = key
        .rsplit('/')
        .next()
        .is_some_and(|last| COLLECTIONS.contains(&last));
    let next_version = || (shared.version.fetch_add(1, Ordering::SeqCst) + 1).to_string();
    let mut objects = lock(&shared.objects);
    match (method.as_str(), is_collection) {
        ("GET", true) => {
            let selector = r.param("labelSelector").unwrap_or_default();
            let items: Vec<Value> = objects
                .iter()
                .filter(|(k, _)| parent(k) == key || without_namespace(parent(k)) == key)
                .filter(|(_, v)| selects(selector, &v["metadata"]["labels"]))
                .map(|(_, v)| v.clone())
                .collect();
            let version = shared.version.load(Ordering::SeqCst).to_string();
            json_response(
                200,
                &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": version}, "items": items}),
            )
        }
        ("GET", false) if key.ends_with("/log") => {
            let pod_key = parent(&key);
            let Some(pod) = objects.get(pod_key) else {
                return not_found(pod_key);
            };
            pod_log(shared, pod_key, pod, r.param("container"))
        }
        ("GET", false) => {
            let Some(object) = objects.get_mut(&key) else {
                return not_found(&r.path);
            };
            json_response(200, object)
        }
        ("DELETE", false) => match objects.remove(&key) {
            Some(_) => {
                lock(&shared.managers).remove(&key);
                json_response(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                )
            }
            None => not_found(&r.path),
        },
        ("PATCH", false) if r.content_type.starts_with("application/apply-patch") => {
            let existing = objects.get(&key).cloned();
            if existing.is_none()
                && let Some(namespace) = namespace_of(&key)
                && !objects.contains_key(&format!("/api/v1/namespaces/{namespace}"))
            {
                return json_response(
                    404,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": format!("namespaces \"{namespace}\" not found"), "reason": "NotFound",
                            "details": {"name": namespace, "kind": "namespaces"}, "code": 404}),
                );
            }
            // What a manifest saved from `kubectl get -o yaml` carries: the
            // API server refuses managedFields in an apply and treats a
            // resourceVersion as a precondition.
            if r.body["metadata"]["managedFields"]
                .as_array()
                .is_some_and(|m| !m.is_empty())
            {
                return status_response(400, "BadRequest", "metadata.managedFields must be nil");
            }
            if let Some(wanted) = r.body["metadata"]["resourceVersion"].as_str()
                && existing.as_ref().map(|e| &e["metadata"]["resourceVersion"])
                    != Some(&Value::from(wanted))
            {
                return status_response(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            let manager = r.param("fieldManager").unwrap_or_default().to_owned();
            let mut all_managers = lock(&shared.managers);
            let mut managers = all_managers.get(&key).cloned().unwrap_or_default();
            let mut merged = existing.clone().unwrap_or_else(|| json!({"metadata": {}}));
            let found = conflicts(&managers, &manager, &merged, &r.body);
            if !found.is_empty() && r.param("force") != Some("true") {
                return conflict_response(&r.path, &found);
            }
            for (owner, field) in &found {
                if let Some(owned) = managers.get_mut(owner) {
                    owned.retain(|o| !overlaps(o, field));
                }
            }
            merge(&mut merged, &r.body);
            // Fields this manager applied before and no longer does are
            // removed, unless another owner keeps them.
            let own = (manager.clone(), "Apply".to_owned(), String::new());
            let applied = fields_of(&r.body);
            for dropped in managers.get(&own).cloned().unwrap_or_default() {
                let kept = applied.contains(&dropped)
                    || managers
                        .iter()
                        .any(|(o, owned)| *o != own && owned.iter().any(|f| overlaps(f, &dropped)));
                if !kept {
                    remove_at(&mut merged, &dropped);
                }
            }
            managers.insert(own, applied);
            managers.retain(|_, owned| !owned.is_empty());
            let custom = key.starts_with("/apis/networking.istio.io/");
            let bump = custom && shared.bump_unchanged_custom.load(Ordering::SeqCst);
            if existing.as_ref() != Some(&merged) || bump {
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
                all_managers.insert(key.clone(), managers);
            }
            json_response(if existing.is_some() { 200 } else { 201 }, &merged)
        }
        // `kubectl scale`: a merge patch of a Deployment's scale subresource.
        ("PATCH", false)
            if key.ends_with("/scale") && r.content_type.starts_with("application/merge-patch") =>
        {
            let deployment = parent(&key).to_owned();
            let Some(object) = objects.get_mut(&deployment) else {
                return not_found(&deployment);
            };
            let Some(replicas) = r.body["spec"]["replicas"].as_i64() else {
                return status_response(422, "Invalid", "spec.replicas: Required value");
            };
            let mut patched = object.clone();
            patched["spec"]["replicas"] = replicas.into();
            let manager = r.param("fieldManager").unwrap_or("unknown");
            let patched = update(
                shared,
                &deployment,
                object,
                patched,
                manager,
                "scale",
                next_version,
            );
            json_response(
                200,
                &json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                        "metadata": {"name": patched["metadata"]["name"], "namespace": patched["metadata"]["namespace"]},
                        "spec": {"replicas": replicas}, "status": {"replicas": replicas}}),
            )
        }
        // `kubectl patch --type merge`, and its default strategic merge
        // taken as a JSON merge (the same for maps; the mock's tests patch
        // maps only).
        ("PATCH", false)
            if r.content_type.starts_with("application/merge-patch")
                || r.content_type
                    .starts_with("application/strategic-merge-patch") =>
        {
            let Some(object) = objects.get_mut(&key) else {
                return not_found(&r.path);
            };
            let mut patched = object.clone();
            json_patch::merge(&mut patched, &r.body);
            let manager = r.param("fieldManager").unwrap_or("unknown");
            let updated = update(shared, &key, object, patched, manager, "", next_version);
            json_response(200, &updated)
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
            let manager = r.param("fieldManager").unwrap_or("unknown");
            let updated = update(shared, &key, object, patched, manager, "", next_version);
            json_response(200, &updated)
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
