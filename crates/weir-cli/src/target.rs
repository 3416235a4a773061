//! Which backend a command drives: the embedded runtime of a state dir
//! (the default), or a Kubernetes cluster chosen like kubectl chooses one.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use weir_api::backend::{
    ApplyOutcome, Backend, BackendError, LiveObject, LogOptions, LogStream, RouteChange,
    RuleSelector, WatchStream,
};
use weir_api::load::Manifests;
use weir_api::resource::{Kind, ObjectRef};
use weir_kube::{ApplyOptions, ClusterTarget, ConfirmOptions, KubeBackend};
use weir_runtime::backend::LocalBackend;

use crate::state_dir::{self, StateArgs};

/// Where a command sends its work. A cluster is chosen by `--kubeconfig`
/// or `--context` (flags first, then `WEIR_KUBECONFIG` / `WEIR_CONTEXT`);
/// without either, the embedded runtime of the state dir.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The embedded runtime's state dir.
    #[command(flatten)]
    pub state: StateArgs,
    /// Drive the Kubernetes cluster of this kubeconfig context.
    #[arg(long, global = true, env = weir_kube::cluster::CONTEXT_ENV)]
    pub context: Option<String>,
    /// Drive the cluster of this kubeconfig file (its current context unless --context).
    #[arg(long, global = true, env = weir_kube::cluster::KUBECONFIG_ENV)]
    pub kubeconfig: Option<PathBuf>,
    /// On a cluster: the ingress gateway's Service, NAMESPACE/NAME (by
    /// default the one labelled istio=ingressgateway; Istio's default
    /// istio-system/istio-ingressgateway when there are several).
    #[arg(long, global = true, env = "WEIR_GATEWAY", value_parser = parse_gateway)]
    pub gateway: Option<weir_kube::ingress::ServiceName>,
    /// The longest wait for one answer from the runtime or the cluster's API.
    #[arg(long, global = true, default_value = "30s", value_parser = weir_api::duration::parse)]
    pub request_timeout: Duration,
}

impl TargetArgs {
    /// The embedded runtime of `state_dir`.
    pub fn local(state_dir: PathBuf) -> Self {
        Self {
            state: StateArgs {
                state_dir: Some(state_dir),
            },
            context: None,
            kubeconfig: None,
            gateway: None,
            request_timeout: Duration::from_secs(30),
        }
    }

    fn cluster(&self) -> ClusterTarget {
        ClusterTarget {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }

    /// Connects to the chosen backend with default apply and route options.
    pub async fn backend(&self) -> Result<AnyBackend, BackendError> {
        self.backend_with(ApplyOptions::default(), ConfirmOptions::default())
            .await
    }

    /// Connects to the chosen backend; the options matter only on a cluster.
    pub async fn backend_with(
        &self,
        apply: ApplyOptions,
        confirm: ConfirmOptions,
    ) -> Result<AnyBackend, BackendError> {
        let cluster = self.cluster();
        if !cluster.is_chosen() {
            return Ok(AnyBackend::Local(LocalBackend::new(
                &state_dir::resolve(self.state.state_dir.clone()),
                self.request_timeout,
            )));
        }
        let conn = weir_kube::connect(&cluster, self.request_timeout).await?;
        Ok(AnyBackend::Kube(Box::new(
            KubeBackend::new(conn, self.request_timeout, apply, confirm)
                .with_gateway(self.gateway.clone()),
        )))
    }
}

fn parse_gateway(s: &str) -> Result<weir_kube::ingress::ServiceName, String> {
    s.parse()
}

/// One of the two backends; the commands are written once against it.
pub enum AnyBackend {
    /// The embedded runtime.
    Local(LocalBackend),
    /// A Kubernetes cluster with Istio (boxed: its connection and options
    /// are several times the size of the local backend).
    Kube(Box<KubeBackend>),
}

impl AnyBackend {
    /// Whether this is a Kubernetes cluster rather than the embedded runtime.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Kube(_))
    }

    /// The namespace a command uses: the one it was given, else the backend's default.
    pub fn namespace(&self, given: Option<&str>) -> String {
        given.map_or_else(|| self.default_namespace().to_owned(), str::to_owned)
    }

    /// The same backend putting objects whose manifests name no namespace
    /// in `namespace`. The embedded runtime takes namespaces from the
    /// manifests alone (`default` when absent), so it refuses another one.
    pub fn in_namespace(self, namespace: Option<String>) -> Result<Self, BackendError> {
        match (self, namespace) {
            (backend, None) => Ok(backend),
            (AnyBackend::Kube(b), Some(ns)) => Ok(AnyBackend::Kube(Box::new(b.in_namespace(ns)))),
            (AnyBackend::Local(b), Some(ns)) if ns == b.default_namespace() => {
                Ok(AnyBackend::Local(b))
            }
            (AnyBackend::Local(_), Some(ns)) => Err(BackendError::Invalid(vec![format!(
                "-n {ns}: the embedded runtime takes namespaces from the manifests (write metadata.namespace); -n chooses one only on a cluster"
            )])),
        }
    }
}

impl Backend for AnyBackend {
    async fn apply(
        &self,
        manifests: &Manifests,
    ) -> Result<Vec<(ObjectRef, ApplyOutcome)>, BackendError> {
        match self {
            AnyBackend::Local(b) => b.apply(manifests).await,
            AnyBackend::Kube(b) => b.apply(manifests).await,
        }
    }

    async fn delete(&self, objects: &[ObjectRef]) -> Result<Vec<(ObjectRef, bool)>, BackendError> {
        match self {
            AnyBackend::Local(b) => b.delete(objects).await,
            AnyBackend::Kube(b) => b.delete(objects).await,
        }
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<LiveObject>, BackendError> {
        match self {
            AnyBackend::Local(b) => b.get(object).await,
            AnyBackend::Kube(b) => b.get(object).await,
        }
    }

    async fn list(&self, kind: Kind, namespace: &str) -> Result<Vec<LiveObject>, BackendError> {
        match self {
            AnyBackend::Local(b) => b.list(kind, namespace).await,
            AnyBackend::Kube(b) => b.list(kind, namespace).await,
        }
    }

    async fn watch(&self, kind: Kind, namespace: &str) -> Result<WatchStream, BackendError> {
        match self {
            AnyBackend::Local(b) => b.watch(kind, namespace).await,
            AnyBackend::Kube(b) => b.watch(kind, namespace).await,
        }
    }

    async fn set_route_weights(
        &self,
        virtual_service: &ObjectRef,
        rule: &RuleSelector,
        weights: &[(String, u32)],
    ) -> Result<RouteChange, BackendError> {
        match self {
            AnyBackend::Local(b) => b.set_route_weights(virtual_service, rule, weights).await,
            AnyBackend::Kube(b) => b.set_route_weights(virtual_service, rule, weights).await,
        }
    }

    async fn logs(&self, pod: &ObjectRef, options: &LogOptions) -> Result<LogStream, BackendError> {
        match self {
            AnyBackend::Local(b) => b.logs(pod, options).await,
            AnyBackend::Kube(b) => b.logs(pod, options).await,
        }
    }

    async fn patch(
        &self,
        object: &ObjectRef,
        kind: weir_api::patch::PatchType,
        patch: &serde_json::Value,
    ) -> Result<ApplyOutcome, BackendError> {
        match self {
            AnyBackend::Local(b) => b.patch(object, kind, patch).await,
            AnyBackend::Kube(b) => b.patch(object, kind, patch).await,
        }
    }

    async fn scale(&self, deployment: &ObjectRef, replicas: i32) -> Result<(), BackendError> {
        match self {
            AnyBackend::Local(b) => b.scale(deployment, replicas).await,
            AnyBackend::Kube(b) => b.scale(deployment, replicas).await,
        }
    }

    async fn node_addresses(&self) -> Result<Vec<String>, BackendError> {
        match self {
            AnyBackend::Local(b) => b.node_addresses().await,
            AnyBackend::Kube(b) => b.node_addresses().await,
        }
    }

    async fn gateway_url(&self) -> Result<String, BackendError> {
        match self {
            AnyBackend::Local(b) => b.gateway_url().await,
            AnyBackend::Kube(b) => b.gateway_url().await,
        }
    }

    async fn events(&self, object: &ObjectRef) -> Result<Vec<serde_json::Value>, BackendError> {
        match self {
            AnyBackend::Local(b) => b.events(object).await,
            AnyBackend::Kube(b) => b.events(object).await,
        }
    }

    async fn gateway_metrics(&self) -> Result<String, BackendError> {
        match self {
            AnyBackend::Local(b) => b.gateway_metrics().await,
            AnyBackend::Kube(b) => b.gateway_metrics().await,
        }
    }

    async fn app_metrics(&self, namespace: &str) -> Result<Vec<(String, String)>, BackendError> {
        match self {
            AnyBackend::Local(b) => b.app_metrics(namespace).await,
            AnyBackend::Kube(b) => b.app_metrics(namespace).await,
        }
    }

    async fn pod_cpu(
        &self,
        namespace: &str,
    ) -> Result<std::collections::BTreeMap<String, i64>, BackendError> {
        match self {
            AnyBackend::Local(b) => b.pod_cpu(namespace).await,
            AnyBackend::Kube(b) => b.pod_cpu(namespace).await,
        }
    }

    async fn rollout_command(
        &self,
        rollout: &ObjectRef,
        intent: &weir_api::rollout::CommandIntent,
    ) -> Result<Option<LiveObject>, BackendError> {
        match self {
            AnyBackend::Local(b) => b.rollout_command(rollout, intent).await,
            AnyBackend::Kube(b) => b.rollout_command(rollout, intent).await,
        }
    }

    async fn previous_template(
        &self,
        deployment: &ObjectRef,
    ) -> Result<Option<serde_json::Value>, BackendError> {
        match self {
            AnyBackend::Local(b) => b.previous_template(deployment).await,
            AnyBackend::Kube(b) => b.previous_template(deployment).await,
        }
    }

    fn default_namespace(&self) -> &str {
        match self {
            AnyBackend::Local(b) => b.default_namespace(),
            AnyBackend::Kube(b) => b.default_namespace(),
        }
    }
}
