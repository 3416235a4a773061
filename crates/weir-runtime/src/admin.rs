//! The admin API: HTTP + JSON on a Unix socket in the state dir, so nothing
//! administrative listens on the network. [`serve`] is the runtime's side,
//! [`AdminClient`] the CLI's. Over 600 lines because both sides of the
//! protocol (routes, request and answer types, the client's calls) are
//! kept in one file so they cannot drift apart; each route's work is in
//! `api.rs`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use weir_api::backend::{ApplyOutcome, RouteChange, RuleSelector};
use weir_api::load::Source;
use weir_api::resource::{Kind, ObjectRef};

use crate::error::RuntimeError;
use crate::runtime::Runtime;
use weir_rollout::engine::CommandIntent;

/// The admin socket's file name in the state dir.
pub const SOCKET: &str = "admin.sock";

/// The largest request body the admin API reads (manifests for an apply:
/// Kubernetes' own limit on one object is 1.5 MiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long a client of the admin API has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the CLI waits for the runtime's answer by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stopping runtime lets requests in flight finish.
const FINISH_GRACE: Duration = Duration::from_secs(30);

/// `POST /apply`.
#[derive(Serialize, Deserialize)]
pub struct ApplyRequest {
    /// File paths and texts, as `weir apply` read them.
    pub sources: Vec<Source>,
}

/// `POST /delete`.
#[derive(Serialize, Deserialize)]
pub struct DeleteRequest {
    /// What to delete.
    pub objects: Vec<ObjectRef>,
}

/// `POST /route`.
#[derive(Serialize, Deserialize)]
pub struct RouteRequest {
    /// The VirtualService.
    pub virtual_service: ObjectRef,
    /// Which rule.
    pub rule: RuleSelector,
    /// `(subset, weight)` pairs.
    pub weights: Vec<(String, u32)>,
}

/// `POST /scale`: a Deployment's new replicas.
#[derive(Serialize, Deserialize)]
pub struct ScaleRequest {
    /// The Deployment.
    pub deployment: ObjectRef,
    /// Its replicas from now on.
    pub replicas: i32,
}

/// `POST /rollout`: a command for a Rollout.
#[derive(Serialize, Deserialize)]
pub struct RolloutRequest {
    /// The Rollout.
    pub rollout: ObjectRef,
    /// What to do.
    pub command: CommandIntent,
}

/// An error answer: the problems, one per line.
#[derive(Serialize, Deserialize, Debug)]
pub struct ErrorBody {
    /// Why.
    pub errors: Vec<String>,
    /// Bad input (exit 2) or not found (exit 2), or a runtime failure (exit 1).
    pub invalid: bool,
}

/// `GET /status`.
#[derive(Serialize, Deserialize, Debug)]
pub struct Status {
    /// Gateway port → local address.
    pub gateway: Vec<(u16, String)>,
    /// The node address `NodePort` Services are reached at.
    #[serde(default)]
    pub node_ip: Option<String>,
    /// The state dir.
    pub state_dir: PathBuf,
    /// The runtime's process id.
    pub pid: u32,
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn error(e: RuntimeError) -> Response<Full<Bytes>> {
    let invalid = matches!(e, RuntimeError::Invalid(_) | RuntimeError::NotFound(_));
    let errors = match &e {
        RuntimeError::Invalid(ds) => ds.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    };
    let status = if invalid {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    json(status, &ErrorBody { errors, invalid })
}

fn bad_request(message: String) -> Response<Full<Bytes>> {
    json(
        StatusCode::BAD_REQUEST,
        &ErrorBody {
            errors: vec![message],
            invalid: true,
        },
    )
}

fn query<'a>(req: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// The answer to a body over [`MAX_BODY_BYTES`].
fn too_large() -> Response<Full<Bytes>> {
    json(
        StatusCode::PAYLOAD_TOO_LARGE,
        &ErrorBody {
            errors: vec![too_large_message()],
            invalid: true,
        },
    )
}

fn too_large_message() -> String {
    format!(
        "request body over {} MiB: apply fewer manifests at once",
        MAX_BODY_BYTES >> 20
    )
}

async fn body_json<T: for<'de> Deserialize<'de>>(
    req: Request<Incoming>,
) -> Result<T, Response<Full<Bytes>>> {
    // A declared length over the limit is refused before a byte is read.
    if req
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let bytes = http_body_util::Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                bad_request(e.to_string())
            }
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| bad_request(format!("bad request body: {e}")))
}

async fn route(
    runtime: Arc<Runtime>,
    state_dir: PathBuf,
    stop: watch::Sender<bool>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/status") => {
            let gateway = runtime
                .gateway_listeners()
                .await
                .into_iter()
                .map(|(p, a)| (p, a.to_string()))
                .collect();
            json(
                StatusCode::OK,
                &Status {
                    gateway,
                    node_ip: runtime.node_ip().map(|ip| ip.to_string()),
                    state_dir,
                    pid: std::process::id(),
                },
            )
        }
        (Method::POST, "/apply") => match body_json::<ApplyRequest>(req).await {
            Ok(r) => match runtime.apply(&r.sources).await {
                Ok(outcomes) => json(StatusCode::OK, &outcomes),
                Err(e) => error(e),
            },
            Err(resp) => resp,
        },
        (Method::POST, "/delete") => match body_json::<DeleteRequest>(req).await {
            Ok(r) => match runtime.delete(&r.objects).await {
                Ok(outcomes) => json(StatusCode::OK, &outcomes),
                Err(e) => error(e),
            },
            Err(resp) => resp,
        },
        (Method::POST, "/route") => match body_json::<RouteRequest>(req).await {
            Ok(r) => match runtime
                .set_route_weights(&r.virtual_service, &r.rule, &r.weights)
                .await
            {
                Ok(change) => json(StatusCode::OK, &change),
                Err(e) => error(e),
            },
            Err(resp) => resp,
        },
        (Method::POST, "/scale") => match body_json::<ScaleRequest>(req).await {
            Ok(r) => match runtime.scale(&r.deployment, r.replicas).await {
                Ok(()) => json(StatusCode::OK, &serde_json::Value::Null),
                Err(e) => error(e),
            },
            Err(resp) => resp,
        },
        (Method::POST, "/rollout") => match body_json::<RolloutRequest>(req).await {
            Ok(r) => match runtime.rollout_command(&r.rollout, r.command).await {
                Ok(status) => json(StatusCode::OK, &status),
                Err(e) => error(e),
            },
            Err(resp) => resp,
        },
        (Method::GET, "/list") => {
            let kind = query(&req, "kind").and_then(|k| k.parse::<Kind>().ok());
            let ns = query(&req, "namespace").unwrap_or("default").to_owned();
            match kind {
                Some(kind) => json(StatusCode::OK, &runtime.list(kind, &ns).await),
                None => bad_request("unknown kind".into()),
            }
        }
        (Method::GET, "/logs") => {
            let ns = query(&req, "namespace").unwrap_or("default");
            let pod = query(&req, "pod").unwrap_or_default();
            match runtime.log_path(ns, pod).await {
                Some(path) => json(StatusCode::OK, &path),
                None => json(
                    StatusCode::NOT_FOUND,
                    &ErrorBody {
                        errors: vec![format!("pods \"{pod}\" not found")],
                        invalid: true,
                    },
                ),
            }
        }
        (Method::GET, "/events") => {
            let kind = query(&req, "kind").and_then(|k| k.parse::<Kind>().ok());
            match kind {
                Some(kind) => {
                    let object = ObjectRef {
                        kind,
                        namespace: query(&req, "namespace").unwrap_or("default").to_owned(),
                        name: query(&req, "name").unwrap_or_default().to_owned(),
                    };
                    json(StatusCode::OK, &runtime.events(&object).await)
                }
                None => bad_request("unknown kind".into()),
            }
        }
        (Method::GET, "/previous-template") => {
            let deployment = ObjectRef {
                kind: Kind::Deployment,
                namespace: query(&req, "namespace").unwrap_or("default").to_owned(),
                name: query(&req, "name").unwrap_or_default().to_owned(),
            };
            match runtime.previous_template(&deployment) {
                Ok(template) => json(StatusCode::OK, &template),
                Err(e) => bad_request(e.to_string()),
            }
        }
        (Method::GET, "/pod-cpu") => {
            let ns = query(&req, "namespace").unwrap_or("default");
            json(StatusCode::OK, &runtime.pod_cpu(ns).await)
        }
        (Method::GET, "/metrics") => {
            Response::new(Full::new(Bytes::from(runtime.gateway_metrics())))
        }
        (Method::POST, "/shutdown") => {
            let _ = stop.send(true);
            json(StatusCode::OK, &"shutting down")
        }
        _ => json(
            StatusCode::NOT_FOUND,
            &ErrorBody {
                errors: vec![format!("no such endpoint: {path}")],
                invalid: true,
            },
        ),
    }
}

/// Serves the admin API on the state dir's socket (0600) until `stop` turns
/// true (which `POST /shutdown` also does); requests in flight then get
/// their answers (bounded), so an apply that committed is never reported
/// as failed because the runtime was stopping. Only the holder of the state
/// dir's lock calls this, so a socket file found there is a dead one's.
pub async fn serve(
    runtime: Arc<Runtime>,
    state_dir: PathBuf,
    stop: watch::Sender<bool>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let socket = state_dir.join(SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    let mut stopped = stop.subscribe();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop_requested(&mut stopped) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (runtime, dir, stop) = (runtime.clone(), state_dir.clone(), stop.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (runtime, dir, stop) = (runtime.clone(), dir.clone(), stop.clone());
                async move { Ok::<_, Infallible>(route(runtime, dir, stop, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    let _ = tokio::time::timeout(FINISH_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}

/// Why a call to the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket (exit 3).
    #[error(
        "cannot reach the weir runtime at {0}: {1} (is `weir up` running with this state dir?)"
    )]
    Unreachable(PathBuf, String),
    /// The runtime rejected the request.
    #[error("{}", .0.errors.join("\n"))]
    Rejected(ErrorBody),
}

/// The CLI's side of the admin API.
pub struct AdminClient {
    socket: PathBuf,
    timeout: Duration,
}

impl AdminClient {
    /// A client for the runtime of `state_dir`, waiting at most
    /// [`DEFAULT_REQUEST_TIMEOUT`] for an answer.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            socket: state_dir.join(SOCKET),
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The same client with another answer timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let bytes = self.raw(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Unreachable(self.socket.clone(), format!("bad answer: {e}")))
    }

    /// The gateway's Istio metrics (Prometheus text).
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let bytes = self.raw(Method::GET, "/metrics", None).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        tokio::time::timeout(self.timeout, self.exchange(method, path, body))
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Unreachable(
                    self.socket.clone(),
                    format!(
                        "no answer within {} (a stopped or hung runtime?)",
                        humantime::format_duration(self.timeout)
                    ),
                ))
            })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        let unreachable = |e: String| ClientError::Unreachable(self.socket.clone(), e);
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "weir")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unreachable(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            Ok(bytes)
        } else {
            let body = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
                errors: vec![String::from_utf8_lossy(&bytes).into_owned()],
                invalid: false,
            });
            Err(ClientError::Rejected(body))
        }
    }

    /// The admin socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The runtime's status.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call(Method::GET, "/status", None).await
    }

    /// Applies file texts.
    pub async fn apply(
        &self,
        sources: Vec<Source>,
    ) -> Result<Vec<(ObjectRef, ApplyOutcome)>, ClientError> {
        let body = serde_json::to_vec(&ApplyRequest { sources }).unwrap_or_default();
        // The runtime would refuse it; say so without sending it.
        if body.len() > MAX_BODY_BYTES {
            return Err(ClientError::Rejected(ErrorBody {
                errors: vec![too_large_message()],
                invalid: true,
            }));
        }
        self.call(Method::POST, "/apply", Some(body)).await
    }

    /// Deletes objects.
    pub async fn delete(
        &self,
        objects: Vec<ObjectRef>,
    ) -> Result<Vec<(ObjectRef, bool)>, ClientError> {
        let body = serde_json::to_vec(&DeleteRequest { objects }).unwrap_or_default();
        self.call(Method::POST, "/delete", Some(body)).await
    }

    /// Lists a kind in a namespace.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: &str,
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        self.call(
            Method::GET,
            &format!("/list?kind={}&namespace={namespace}", kind.name()),
            None,
        )
        .await
    }

    /// An object's events, oldest first.
    pub async fn events(&self, object: &ObjectRef) -> Result<Vec<serde_json::Value>, ClientError> {
        self.call(
            Method::GET,
            &format!(
                "/events?kind={}&namespace={}&name={}",
                object.kind.name(),
                object.namespace,
                object.name
            ),
            None,
        )
        .await
    }

    /// The pod template a Deployment had before its current one, if any
    /// (`rollout undo`'s target).
    pub async fn previous_template(
        &self,
        deployment: &ObjectRef,
    ) -> Result<Option<serde_json::Value>, ClientError> {
        self.call(
            Method::GET,
            &format!(
                "/previous-template?namespace={}&name={}",
                deployment.namespace, deployment.name
            ),
            None,
        )
        .await
    }

    /// Each pod's CPU use in millicores.
    pub async fn pod_cpu(&self, namespace: &str) -> Result<BTreeMap<String, i64>, ClientError> {
        self.call(
            Method::GET,
            &format!("/pod-cpu?namespace={namespace}"),
            None,
        )
        .await
    }

    /// Changes route weights; returns once the gateway serves them.
    pub async fn route(&self, request: RouteRequest) -> Result<RouteChange, ClientError> {
        let body = serde_json::to_vec(&request).unwrap_or_default();
        self.call(Method::POST, "/route", Some(body)).await
    }

    /// Sets a Deployment's replicas.
    pub async fn scale(&self, request: ScaleRequest) -> Result<(), ClientError> {
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let _: serde_json::Value = self.call(Method::POST, "/scale", Some(body)).await?;
        Ok(())
    }

    /// Gives a Rollout a command; its status once the controller acted on it.
    pub async fn rollout(
        &self,
        request: RolloutRequest,
    ) -> Result<Option<serde_json::Value>, ClientError> {
        let body = serde_json::to_vec(&request).unwrap_or_default();
        self.call(Method::POST, "/rollout", Some(body)).await
    }

    /// The log file of a pod.
    pub async fn log_path(&self, namespace: &str, pod: &str) -> Result<PathBuf, ClientError> {
        self.call(
            Method::GET,
            &format!("/logs?namespace={namespace}&pod={pod}"),
            None,
        )
        .await
    }

    /// Asks the runtime to stop, then waits (bounded) until its process,
    /// having stopped every pod, has exited.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        let pid = self.status().await?.pid;
        let _: String = self.call(Method::POST, "/shutdown", None).await?;
        // Gone, or a zombie its parent has not reaped yet: either way it exited.
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
        while running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}
