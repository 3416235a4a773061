//! A node stand-in, since no kubelet can run here (no container runtime on
//! the test machines): one Node, Ready, at [`NODE_IP`], and a loop that does
//! what the scheduler and a kubelet's status updates would — binds each
//! pending pod to the node, marks it Running and Ready with a pod IP
//! through the status subresource (as kwok does), and finishes the
//! deletion of a pod being deleted, as a kubelet does once its containers
//! have stopped. It runs on a thread of its own (with its own runtime), so
//! a test that blocks does not stop it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The stand-in's node.
pub const NODE: &str = "weir-test-node";

/// The node's address: loopback (tests send traffic nowhere else), in a
/// range nothing on the machine listens in (weir's own runtime puts
/// Services at 127.0.X.Y and pods in 127.1–127.254), so its NodePorts do
/// not answer, as a kind node's do not from a host under Docker Desktop.
pub const NODE_IP: &str = "127.255.255.1";

/// How often it looks at the pods.
const EVERY: Duration = Duration::from_millis(100);

/// The running stand-in; dropping it stops it.
pub struct NodeStandIn {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NodeStandIn {
    /// Registers the node and starts the loop, with a client made from
    /// `kubeconfig` (an admin's).
    pub(crate) async fn start(kubeconfig: std::path::PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the node stand-in");
            runtime.block_on(async move {
                let client = client(&kubeconfig).await;
                register(&client).await;
                let _ = ready_tx.send(());
                let mut next_ip = 2u32;
                while !stopping.load(Ordering::Relaxed) {
                    let _ = tick(&client, &mut next_ip).await;
                    tokio::time::sleep(EVERY).await;
                }
            });
        });
        ready_rx
            .await
            .expect("the node stand-in registers its node");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NodeStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a client configuration");
    kube::Client::try_from(config).expect("a client")
}

async fn register(client: &kube::Client) {
    let nodes = Api::<Node>::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {
        "name": NODE,
        "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"},
    }}))
    .expect("a node");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("register the node: {e}"),
    }
    let now = now();
    let status = json!({"status": {
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "the harness's node stand-in",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
        "addresses": [
            {"type": "InternalIP", "address": NODE_IP},
            {"type": "Hostname", "address": NODE},
        ],
        "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "250"},
        "capacity": {"cpu": "8", "memory": "16Gi", "pods": "250"},
    }});
    nodes
        .patch_status(NODE, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("the node's status");
}

/// One look at every pod.
async fn tick(client: &kube::Client, next_ip: &mut u32) -> Result<(), kube::Error> {
    for pod in Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?
    {
        let (Some(namespace), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        let pods = Api::<Pod>::namespaced(client.clone(), namespace);
        if pod.metadata.deletion_timestamp.is_some() {
            let _ = pods
                .delete(name, &DeleteParams::default().grace_period(0))
                .await;
            continue;
        }
        let Some(spec) = &pod.spec else { continue };
        if spec.node_name.is_none() {
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
            });
            let _ = pods
                .create_subresource::<_, Value>("binding", name, &PostParams::default(), &binding)
                .await;
            continue;
        }
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if !running {
            let ip = format!("10.244.{}.{}", (*next_ip >> 8) & 0xff, *next_ip & 0xff);
            *next_ip += 1;
            pods.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&running_status(spec, &ip)),
            )
            .await?;
        }
    }
    Ok(())
}

/// What a kubelet reports for a pod whose containers all started and pass
/// their probes.
fn running_status(spec: &k8s_openapi::api::core::v1::PodSpec, ip: &str) -> Value {
    let now = now();
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now});
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": "",
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    json!({"status": {
        "phase": "Running",
        "hostIP": NODE_IP,
        "hostIPs": [{"ip": NODE_IP}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "conditions": [
            condition("PodScheduled"), condition("Initialized"),
            condition("ContainersReady"), condition("Ready"),
        ],
        "containerStatuses": containers,
    }})
}

/// Now, as the API's timestamps are written (RFC 3339, seconds).
fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
