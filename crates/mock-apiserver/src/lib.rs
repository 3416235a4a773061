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
//! apply (with `dryRun`), JSON patch (a failed `test` answers 422 without
//! causes), `/version`, discovery, and watches that stream given events and
//! stay open; refuses an object in a namespace that does not exist (404
//! naming it); and answers URLs it does not serve with a plain-text `404
//! page not found`. Field ownership, DELETE and subresources other than a
//! pod's log are left out: their tests run against the real server. Every
//! request is recorded (method, path, query, content type, body,
//! authorization), and rules can override answers for the failure paths.
//!
//! `state.rs` holds what the handlers share, `handle.rs` answers one
//! request, `store.rs` is the object store, `gateway.rs` the ingress
//! gateway's stand-in.

mod gateway;
mod handle;
mod state;
mod store;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

pub use gateway::GatewayReplica;
pub use state::{Recorded, Reply};
use state::{Rule, Shared, lock};
use store::{CRDS, NAMESPACES, istio_crd, storage_key};

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
                        async move { Ok::<_, Infallible>(handle::handle(&shared, req).await) }
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
    pub fn put(&self, path: &str, object: Value) {
        store::put(&self.shared, path, object);
    }

    /// The object stored at a path.
    pub fn object(&self, path: &str) -> Option<Value> {
        lock(&self.shared.objects).get(&storage_key(path)).cloned()
    }

    /// Answers `method path` (exact path, any query) with `reply`, `times`
    /// times (`None`: always), before the store is consulted.
    pub fn on(&self, method: &str, path: &str, reply: Reply, times: Option<usize>) {
        lock(&self.shared.rules).push(Rule {
            method: method.parse().unwrap_or(http::Method::GET),
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

    /// Installs the gateway Service and one Running pod per name in
    /// `replicas`, each with an Envoy admin stand-in at port 15000.
    pub async fn istio_gateway(&self, replicas: &[&str]) -> Vec<GatewayReplica> {
        gateway::install(&self.shared, replicas).await
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
