//! An Istio ingress gateway stand-in, for `weir route`'s confirmation from
//! the gateway's own Envoy configuration: the `istio-system/istio-ingressgateway`
//! Service, a Running pod per replica, the API server's port-forward to
//! those pods (a WebSocket speaking `v4.channel.k8s.io`), and behind it,
//! per replica, an HTTP server standing in for the pod's Envoy admin API
//! (Envoy cannot be installed here). Its `/config_dump` renders the
//! VirtualServices stored in the mock as Istio's `route.go` translates them
//! — the same reading of Istio as weir's own, so a shared misreading passes
//! both; the real-cluster test is what checks it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::state::{Body, Shared, full, lock, status_response};
use crate::store::put;

/// The port-forward subprotocol the mock speaks (kube offers v5 and v4).
const PORT_FORWARD_PROTOCOL: &str = "v4.channel.k8s.io";

/// One gateway replica: its pod name and its Envoy admin stand-in.
pub struct GatewayReplica {
    /// The pod's name.
    pub name: String,
    lag: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl GatewayReplica {
    /// The next `reads` reads of the config dump answer what the replica
    /// served before (xDS not yet delivered), then it catches up.
    pub fn lag(&self, reads: usize) {
        self.lag.store(reads, Ordering::SeqCst);
    }
}

impl Drop for GatewayReplica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Installs the gateway Service and one Running pod per name in
/// `replicas`, each with an Envoy admin stand-in at port 15000 that
/// port-forwards reach.
pub(crate) async fn install(shared: &Arc<Shared>, replicas: &[&str]) -> Vec<GatewayReplica> {
    put(
        shared,
        "/api/v1/namespaces/istio-system/services/istio-ingressgateway",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system",
                            "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}},
               "spec": {"selector": {"app": "istio-ingressgateway", "istio": "ingressgateway"}, "clusterIP": "10.96.0.10",
                        "ports": [{"name": "http2", "port": 80, "targetPort": 8080}]}}),
    );
    let mut out = Vec::new();
    for name in replicas {
        let pod = format!("/api/v1/namespaces/istio-system/pods/{name}");
        put(
            shared,
            &pod,
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": "istio-system", "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}},
                   "spec": {"containers": [{"name": "istio-proxy"}]},
                   "status": {"phase": "Running"}}),
        );
        let (addr, lag, task) = envoy_admin(shared.clone()).await;
        lock(&shared.forwards).insert((pod, 15000), addr);
        out.push(GatewayReplica {
            name: (*name).to_owned(),
            lag,
            task,
        });
    }
    out
}

/// Starts an Envoy admin stand-in over the mock's stored objects.
async fn envoy_admin(
    shared: Arc<Shared>,
) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let lag = Arc::new(AtomicUsize::new(0));
    let served: Arc<Mutex<Value>> = Arc::new(Mutex::new(render(&lock(&shared.objects))));
    let lagging = lag.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (shared, served, lag) = (shared.clone(), served.clone(), lagging.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    let dump = if req.uri().path() != "/config_dump" {
                        None
                    } else if lag
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        Some(lock(&served).clone())
                    } else {
                        let fresh = render(&lock(&shared.objects));
                        *lock(&served) = fresh.clone();
                        Some(fresh)
                    };
                    let response = match dump {
                        Some(dump) => Response::new(full(dump.to_string())),
                        None => Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(full("invalid path"))
                            .unwrap_or_default(),
                    };
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, lag, task)
}

/// The gateway's route configuration for the stored VirtualServices, as
/// `config_dump?resource=dynamic_route_configs` lists it.
fn render(objects: &BTreeMap<String, Value>) -> Value {
    let mut hosts = Vec::new();
    for (path, vs) in objects {
        if !path.contains("/virtualservices/") {
            continue;
        }
        let namespace = vs["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = vs["metadata"]["name"].as_str().unwrap_or_default();
        let tag =
            format!("/apis/networking.istio.io/v1/namespaces/{namespace}/virtual-service/{name}");
        let mut routes = Vec::new();
        'rules: for rule in vs["spec"]["http"].as_array().into_iter().flatten() {
            let blocks = match rule["match"].as_array() {
                Some(blocks) if !blocks.is_empty() => blocks.clone(),
                _ => vec![Value::Null],
            };
            for block in &blocks {
                routes.push(
                    json!({"match": {"prefix": "/"}, "route": action(rule, namespace),
                                   "metadata": {"filter_metadata": {"istio": {"config": tag}}}}),
                );
                let takes_all = block.is_null() || *block == json!({"uri": {"prefix": "/"}});
                if takes_all {
                    break 'rules;
                }
            }
        }
        for host in vs["spec"]["hosts"].as_array().into_iter().flatten() {
            let host = host.as_str().unwrap_or_default();
            hosts.push(json!({"name": format!("{host}:80"), "domains": [host], "routes": routes}));
        }
    }
    json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump.DynamicRouteConfig",
        "route_config": {"name": "http.8080", "virtual_hosts": hosts}}]})
}

/// Istio's route action: weight-0 destinations dropped when there are
/// others, one destination left routed to alone.
fn action(rule: &Value, namespace: &str) -> Value {
    let destinations = rule["route"].as_array().cloned().unwrap_or_default();
    let one = destinations.len() == 1;
    let clusters: Vec<Value> = destinations
        .iter()
        .filter(|d| one || d["weight"].as_u64().unwrap_or(0) > 0)
        .map(|d| {
            let host = d["destination"]["host"].as_str().unwrap_or_default();
            let fqdn = if host.contains('.') {
                host.to_owned()
            } else {
                format!("{host}.{namespace}.svc.cluster.local")
            };
            let subset = d["destination"]["subset"].as_str().unwrap_or_default();
            json!({"name": format!("outbound|80|{subset}|{fqdn}"), "weight": d["weight"].as_u64().unwrap_or(100)})
        })
        .collect();
    match clusters.as_slice() {
        [only] => json!({"cluster": only["name"]}),
        _ => json!({"weighted_clusters": {"clusters": clusters}}),
    }
}

/// Answers `GET .../pods/NAME/portforward?ports=PORT`: the WebSocket
/// upgrade, then each port's data and error channels, as the API server
/// does. A port nothing listens on gets the kubelet's error on its error
/// channel.
pub(crate) fn port_forward(
    shared: &Shared,
    pod_path: &str,
    port: Option<&str>,
    key: Option<&str>,
    upgrade: OnUpgrade,
) -> Response<Body> {
    if !lock(&shared.objects).contains_key(pod_path) {
        let name = pod_path.rsplit('/').next().unwrap_or_default();
        return status_response(404, "NotFound", &format!("pods \"{name}\" not found"));
    }
    let (Some(port), Some(key)) = (port.and_then(|p| p.parse::<u16>().ok()), key) else {
        return status_response(
            400,
            "BadRequest",
            "a port-forward needs one port and a WebSocket key",
        );
    };
    let target = lock(&shared.forwards)
        .get(&(pod_path.to_owned(), port))
        .copied();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        forward(socket, port, target).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::CONNECTION, "Upgrade")
        .header(
            http::header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .header(http::header::SEC_WEBSOCKET_PROTOCOL, PORT_FORWARD_PROTOCOL)
        .body(full(Bytes::new()))
        .unwrap_or_default()
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut frame = Vec::with_capacity(data.len() + 1);
    frame.push(channel);
    frame.extend_from_slice(data);
    Message::binary(frame)
}

async fn forward<S>(mut socket: WebSocketStream<S>, port: u16, target: Option<SocketAddr>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let port_bytes = port.to_le_bytes();
    for channel in [0, 1] {
        if socket.send(framed(channel, &port_bytes)).await.is_err() {
            return;
        }
    }
    let connected = match target {
        Some(addr) => tokio::net::TcpStream::connect(addr).await.ok(),
        None => None,
    };
    let Some(mut tcp) = connected else {
        let message = format!("error forwarding port {port} to pod: connection refused");
        let _ = socket.send(framed(1, message.as_bytes())).await;
        let _ = socket.close(None).await;
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(Message::Binary(data))) if data.len() > 1 && data[0] == 0 => {
                    if tcp.write_all(&data[1..]).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            read = tcp.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if socket.send(framed(0, &buf[..n])).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = socket.close(None).await;
}
