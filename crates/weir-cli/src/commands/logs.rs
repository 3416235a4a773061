//! `weir logs POD [-f]`: the pod's stdout and stderr.

use std::io::Write;

use clap::Args;

use weir_api::backend::Backend;
use weir_api::resource::{Kind, ObjectRef};

use crate::exit;
use crate::exit::fail;
use crate::target::TargetArgs;

/// `weir logs` arguments.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The pod.
    pub pod: String,
    /// Keep printing new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
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
        follow,
        namespace,
        target,
    } = args;
    let pod = pod.as_str();
    let namespace = namespace.as_deref();
    let backend = match target.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let pod = ObjectRef {
        kind: Kind::Pod,
        namespace: backend.namespace(namespace),
        name: pod.to_owned(),
    };
    let mut stream = match backend.logs(&pod, follow).await {
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
