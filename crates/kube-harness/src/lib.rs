//! A real Kubernetes control plane for weir's cluster-backend tests: etcd,
//! kube-apiserver and, where a test needs Deployments to make ReplicaSets
//! and Pods, kube-controller-manager — Kubernetes' own programs, built from
//! their Go modules by `.ci/test-tools` (`tools/control-plane` pins the
//! release) — on loopback at free ports, with certificates generated for
//! the occasion, RBAC authorization on, an admin kubeconfig, namespaces
//! per test, Istio's CRDs (1.22 or 1.30) when asked, and a node stand-in
//! where pods must run. One more user's requests are kept in the API
//! server's audit log, so a test can read back the conversation a client
//! had with the real server ([`ControlPlane::recorded`]). Everything it
//! starts it stops.
//!
//! What cannot run here keeps a stand-in, and says so: there is no kubelet
//! (no container runtime on the test machines), so [`NodeStandIn`] does
//! what a kubelet's status updates would — binds pods to its node and
//! marks them Running and Ready through the status subresource, as kwok
//! does.

mod audit;
mod certs;
mod istio;
mod node;
mod process;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

pub use audit::Recorded;
pub use istio::IstioRelease;
pub use node::{NODE_IP, NodeStandIn};
use process::{Running, free_port};

/// What to start besides etcd and the API server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// kube-controller-manager, with the controllers Deployments need
    /// (deployment, replicaset, garbage collector, service accounts,
    /// namespaces, endpoint slices).
    pub controller_manager: bool,
    /// Istio's CRDs of this release, installed and established.
    pub istio: Option<IstioRelease>,
}

/// A running control plane. Dropping it stops everything it started.
pub struct ControlPlane {
    // Declared first: the processes stop before their files go.
    processes: Vec<Running>,
    url: String,
    ca_pem: String,
    admin_token: String,
    recorded_token: String,
    apiserver_pid: u32,
    dir: tempfile::TempDir,
}

/// The Services' cluster IPs: loopback, in a range nothing on the machine
/// listens in (see [`node::NODE_IP`]).
pub const SERVICE_RANGE: &str = "127.255.0.0/17";

/// How long the control plane may take to come up (a cold API server
/// installs its bootstrap RBAC and priority levels first).
const READY_WITHIN: Duration = Duration::from_secs(60);

impl ControlPlane {
    /// Starts etcd and kube-apiserver (and what `options` asks for), and
    /// returns once the API server is ready.
    pub async fn start(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("a temporary dir");
        let certs = certs::generate(dir.path());
        let (admin_token, recorded_token) = (random_token(), random_token());
        let tokens = dir.path().join("tokens.csv");
        std::fs::write(
            &tokens,
            format!(
                "{admin_token},weir-test-admin,weir-test-admin,system:masters\n\
                 {recorded_token},{user},{user},system:masters\n",
                user = audit::RECORDED_USER
            ),
        )
        .expect("the token file");
        let audit_policy = audit::write_policy(dir.path());

        let (client_port, peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Running::start(
            "etcd",
            &[
                "--name=test".into(),
                format!("--data-dir={}", dir.path().join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=test={peer_url}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            dir.path().join("etcd.log"),
        );

        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let apiserver = Running::start(
            "kube-apiserver",
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                // The kubernetes Service's endpoint would be this loopback
                // address, which the reconciler refuses.
                "--endpoint-reconciler-type=none".into(),
                format!("--secure-port={port}"),
                format!("--tls-cert-file={}", certs.serving_cert.display()),
                format!("--tls-private-key-file={}", certs.serving_key.display()),
                format!("--token-auth-file={}", tokens.display()),
                "--authorization-mode=RBAC".into(),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                format!(
                    "--service-account-key-file={}",
                    certs.service_account_public.display()
                ),
                format!(
                    "--service-account-signing-key-file={}",
                    certs.service_account_key.display()
                ),
                // Cluster IPs on loopback too, where nothing listens: a
                // client that tries one (`weir doctor`, `verify`) sends
                // nothing off the machine.
                format!("--service-cluster-ip-range={SERVICE_RANGE}"),
                format!(
                    "--cert-dir={}",
                    dir.path().join("apiserver-certs").display()
                ),
                "--profiling=false".into(),
                format!("--audit-policy-file={}", audit_policy.display()),
                format!("--audit-log-path={}", audit::log_path(dir.path()).display()),
                // Each event written before the request is served: what a
                // test reads after its call is complete.
                "--audit-log-mode=blocking".into(),
            ],
            dir.path().join("kube-apiserver.log"),
        );

        let mut plane = Self {
            apiserver_pid: apiserver.pid(),
            processes: vec![apiserver, etcd],
            url,
            ca_pem: certs.ca_pem,
            admin_token,
            recorded_token,
            dir,
        };
        plane.wait_ready().await;
        if options.controller_manager {
            plane.start_controller_manager();
        }
        if let Some(release) = options.istio {
            istio::install(&plane.client().await, release).await;
        }
        plane
    }

    fn start_controller_manager(&mut self) {
        let kubeconfig = self.kubeconfig_with_token(self.dir.path(), "default", "kcm", None);
        let kcm = Running::start(
            "kube-controller-manager",
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                "--controllers=deployment-controller,replicaset-controller,garbage-collector-controller,serviceaccount-controller,namespace-controller,endpointslice-controller".into(),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--concurrent-deployment-syncs=2".into(),
            ],
            self.dir.path().join("kube-controller-manager.log"),
        );
        self.processes.insert(0, kcm);
    }

    async fn wait_ready(&mut self) {
        let client = self.client().await;
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        loop {
            for p in &mut self.processes {
                p.assert_running();
            }
            let ready = client
                .request_text(http_get("/readyz").expect("a request"))
                .await;
            if matches!(ready.as_deref(), Ok("ok")) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "kube-apiserver not ready within {READY_WITHIN:?} ({ready:?}); the end of its log:\n{}",
                self.processes[0].log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The PIDs of the processes it started (gone once it is dropped).
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(Running::pid).collect()
    }

    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The release the API server reports (`/version`'s `gitVersion`).
    pub async fn version(&self) -> String {
        self.client()
            .await
            .apiserver_version()
            .await
            .expect("/version")
            .git_version
    }

    /// An admin kubeconfig (`system:masters`) in `dir`, its context's
    /// namespace `namespace`.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        self.kubeconfig_with_token(dir, namespace, "weir-test", None)
    }

    /// A kubeconfig in `dir` whose user authenticates with `token` (the
    /// admin's when `None`), context and file named `name`.
    pub fn kubeconfig_with_token(
        &self,
        dir: &Path,
        namespace: &str,
        name: &str,
        token: Option<&str>,
    ) -> PathBuf {
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": self.url,
                "certificate-authority-data": base64(self.ca_pem.as_bytes()),
            }}],
            "users": [{"name": name, "user": {"token": token.unwrap_or(&self.admin_token)}}],
            "contexts": [{"name": name, "context": {
                "cluster": "test", "user": name, "namespace": namespace,
            }}],
            "current-context": name,
        });
        let path = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&path, config.to_string()).expect("write the kubeconfig");
        path
    }

    /// An admin kubeconfig in `dir` (context and file `recorded`) whose
    /// every request the API server records in its audit log, read back
    /// with [`ControlPlane::recorded`]: the conversation a client had with
    /// the real server.
    pub fn recorded_kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        self.kubeconfig_with_token(dir, namespace, "recorded", Some(&self.recorded_token))
    }

    /// The requests made with [`ControlPlane::recorded_kubeconfig`]'s
    /// credentials so far, in the order the server received them.
    pub fn recorded(&self) -> Vec<Recorded> {
        audit::read(self.dir.path())
    }

    /// Stops the API server (SIGSTOP) until the guard is dropped: a server
    /// that accepts connections and answers nothing, as one stuck behind
    /// an overloaded etcd does.
    pub fn pause_api_server(&self) -> process::Paused {
        process::Paused::new(self.apiserver_pid)
    }

    /// An admin client.
    pub async fn client(&self) -> kube::Client {
        let path = self.kubeconfig(self.dir.path(), "default");
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("the kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("a client configuration");
        kube::Client::try_from(config).expect("a client")
    }

    /// Creates namespace `name` with its `default` service account (which
    /// the controller manager would make a moment later: pods cannot be
    /// admitted before it exists).
    pub async fn namespace(&self, name: &str) {
        let client = self.client().await;
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("a namespace");
        ignore_exists(
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &ns)
                .await,
        );
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "default"}}))
            .expect("a service account");
        ignore_exists(
            Api::<ServiceAccount>::namespaced(client, name)
                .create(&PostParams::default(), &sa)
                .await,
        );
    }

    /// A token for service account `namespace/name` (TokenRequest, an
    /// hour), for tests that act as a user with only that account's roles.
    pub async fn token_for(&self, namespace: &str, name: &str) -> String {
        let client = self.client().await;
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("a service account");
        let accounts = Api::<ServiceAccount>::namespaced(client, namespace);
        ignore_exists(accounts.create(&PostParams::default(), &sa).await);
        let request = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        }))
        .expect("a token request");
        accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .expect("a token")
            .status
            .expect("a token's status")
            .token
            .expect("a token")
    }

    /// The object at an API path as the admin reads it (`None` when the
    /// server answers 404), for tests to check what was stored.
    pub async fn object(&self, path: &str) -> Option<serde_json::Value> {
        let request = http_get(path).expect("a request");
        match self
            .client()
            .await
            .request::<serde_json::Value>(request)
            .await
        {
            Ok(object) => Some(object),
            Err(kube::Error::Api(status)) if status.code == 404 => None,
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// A JSON merge patch of the object (or subresource: `.../status`) at
    /// an API path, as the admin — what a controller's status update or
    /// another client's edit would write.
    pub async fn merge_patch(&self, path: &str, patch: &serde_json::Value) {
        let request = http::Request::patch(path)
            .header("content-type", "application/merge-patch+json")
            .body(serde_json::to_vec(patch).expect("a patch"))
            .expect("a request");
        self.client()
            .await
            .request::<serde_json::Value>(request)
            .await
            .unwrap_or_else(|e| panic!("PATCH {path}: {e}"));
    }

    /// Server-side applies every object of a YAML stream as the admin (the
    /// resource named by [`plural`], cluster-scoped when
    /// `metadata.namespace` is absent).
    pub async fn apply_yaml(&self, yaml: &str) {
        use kube::api::{DynamicObject, Patch, PatchParams};
        use kube::core::{ApiResource, GroupVersionKind};
        let client = self.client().await;
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(yaml).expect("the YAML parses");
        for document in documents.into_iter().filter(|d| d.is_object()) {
            let api_version = document["apiVersion"].as_str().expect("an apiVersion");
            let kind = document["kind"].as_str().expect("a kind");
            let name = document["metadata"]["name"].as_str().expect("a name");
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, kind),
                &plural(kind),
            );
            let api: Api<DynamicObject> = match document["metadata"]["namespace"].as_str() {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            api.patch(
                name,
                &PatchParams::apply("kube-harness").force(),
                &Patch::Apply(&document),
            )
            .await
            .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
        }
    }

    /// An Istio ingress gateway's Service `namespace/name` (the namespace
    /// created), labelled and selecting as Istio's charts do, a NodePort
    /// with its `http2` port 80. No pods: no data plane can run here.
    pub async fn install_gateway_service(&self, namespace: &str, name: &str) {
        self.namespace(namespace).await;
        self.apply_yaml(&format!(
            "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{app: {name}, istio: ingressgateway}}
spec:
  type: NodePort
  selector: {{app: {name}, istio: ingressgateway}}
  ports: [{{name: http2, port: 80, targetPort: 8080}}]
"
        ))
        .await;
    }

    /// Starts the node stand-in: pods are bound to its node and marked
    /// Running and Ready until it is dropped.
    pub async fn node(&self) -> NodeStandIn {
        NodeStandIn::start(self.kubeconfig(self.dir.path(), "default")).await
    }
}

fn http_get(path: &str) -> Result<http::Request<Vec<u8>>, http::Error> {
    http::Request::get(path).body(Vec::new())
}

/// A kind's resource name as the API names the kinds the tests apply
/// (`Service` → `services`, `ValidatingAdmissionPolicy` →
/// `validatingadmissionpolicies`, `Ingress` → `ingresses`).
pub fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

fn ignore_exists<T>(result: Result<T, kube::Error>) {
    match result {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("create: {e}"),
    }
}

/// A token no other process can guess.
fn random_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(std::process::id());
    let b = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{a:016x}{b:016x}")
}

fn base64(bytes: &[u8]) -> String {
    use k8s_openapi::ByteString;
    serde_json::to_value(ByteString(bytes.to_vec()))
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("base64")
}
