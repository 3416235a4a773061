//! `weir logs POD|pod/NAME|deployment/NAME [-c CONTAINER | --all-containers]
//! [-f] [--tail N] [--since D] [--timestamps]`: a pod's stdout and stderr;
//! for a Deployment, one of its pods, chosen as kubectl chooses (ready and
//! running first, then the oldest), saying which. Of a pod's containers,
//! the one `-c` names, else the one its `kubectl.kubernetes.io/default-container`
//! annotation names, else the first that is not a sidecar (`istio-proxy`).

use std::io::Write;

use clap::Args;

use serde_json::Value;
use weir_api::backend::{Backend, LogOptions};
use weir_api::resource::{Kind, ObjectRef};

use crate::exit;
use crate::exit::fail;
use crate::target::TargetArgs;

/// `weir logs` arguments.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The pod: `NAME`, `pod/NAME`, or `deployment/NAME` for one of its pods.
    pub pod: String,
    /// The container (default: the pod's default container, else the
    /// first that is not a sidecar such as istio-proxy).
    #[arg(short = 'c', long, conflicts_with = "all_containers")]
    pub container: Option<String>,
    /// Every container's log, init containers first.
    #[arg(long)]
    pub all_containers: bool,
    /// Keep printing new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last this many lines (then new ones with `-f`).
    #[arg(long)]
    pub tail: Option<u64>,
    /// Only lines from this long ago on, e.g. `5m`.
    #[arg(long, value_parser = weir_api::duration::parse)]
    pub since: Option<std::time::Duration>,
    /// Each line with its timestamp (RFC 3339, nanoseconds).
    #[arg(long)]
    pub timestamps: bool,
    /// Namespace (default: the backend's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Prints the log; with `--follow`, keeps printing new output until interrupted.
pub async fn run(args: LogsArgs) -> u8 {
    let LogsArgs {
        pod,
        container,
        all_containers,
        follow,
        tail,
        since,
        timestamps,
        namespace,
        target,
    } = args;
    let backend = match target.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let namespace = backend.namespace(namespace.as_deref());
    let name = match pod.split_once('/') {
        None => pod,
        Some(("pod" | "pods" | "po", name)) => name.to_owned(),
        Some(("deployment" | "deployments" | "deploy", name)) => {
            match pod_of_deployment(&backend, &namespace, name).await {
                Ok(name) => name,
                Err(code) => return code,
            }
        }
        Some((kind, _)) => {
            eprintln!("error: logs of a {kind:?}: name a pod, pod/NAME or deployment/NAME");
            return exit::BAD_INPUT;
        }
    };
    let pod = ObjectRef {
        kind: Kind::Pod,
        namespace,
        name,
    };
    let options = LogOptions {
        container,
        all_containers,
        follow,
        tail_lines: tail,
        since,
        timestamps,
    };
    let mut stream = match backend.logs(&pod, &options).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    while let Some(chunk) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        match chunk {
            Ok(text) => {
                let mut out = std::io::stdout().lock();
                if out
                    .write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return exit::OK;
                }
            }
            Err(e) => return fail(e),
        }
    }
    exit::OK
}

/// The pod of a Deployment whose log `kubectl logs deployment/NAME` shows:
/// among those its selector matches, ready and running first, then the
/// oldest; the others are named on stderr, as kubectl does.
async fn pod_of_deployment(
    backend: &impl Backend,
    namespace: &str,
    name: &str,
) -> Result<String, u8> {
    let deployment = ObjectRef {
        kind: Kind::Deployment,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let Some(d) = backend.get(&deployment).await.map_err(fail)? else {
        eprintln!("Error from server (NotFound): deployments.apps \"{name}\" not found");
        return Err(exit::BAD_INPUT);
    };
    let selector = d.object["spec"]["selector"]["matchLabels"].clone();
    let matches = |pod: &Value| {
        selector.as_object().is_some_and(|wanted| {
            wanted
                .iter()
                .all(|(k, v)| pod["metadata"]["labels"][k] == *v)
        })
    };
    let mut pods: Vec<Value> = backend
        .list(Kind::Pod, namespace)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|p| p.object)
        .filter(|p| matches(p))
        .collect();
    let ready = |p: &Value| {
        p["status"]["containerStatuses"][0]["ready"] == true && p["status"]["phase"] == "Running"
    };
    pods.sort_by_key(|p| {
        (
            !ready(p),
            p["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    });
    let Some(first) = pods.first() else {
        eprintln!("error: deployment/{name} has no pods");
        return Err(exit::FAILED);
    };
    let chosen = first["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if pods.len() > 1 {
        eprintln!("Found {} pods, using pod/{chosen}", pods.len());
    }
    Ok(chosen)
}
