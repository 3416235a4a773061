//! Choosing and connecting to a cluster, as kubectl does: a kubeconfig file
//! and a context in it. weir drives a cluster only when asked to (a flag or
//! its environment variable); otherwise the commands drive the embedded runtime.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use weir_api::backend::BackendError;

/// The environment variable standing for `--context`.
pub const CONTEXT_ENV: &str = "WEIR_CONTEXT";
/// The environment variable standing for `--kubeconfig`.
pub const KUBECONFIG_ENV: &str = "WEIR_KUBECONFIG";

/// Which cluster the commands drive. Precedence, highest first: the
/// `--kubeconfig`/`--context` flags, then `WEIR_KUBECONFIG`/`WEIR_CONTEXT`;
/// a kubeconfig without a context uses its `current-context`, a context
/// without a kubeconfig is looked up in `$KUBECONFIG` (else `~/.kube/config`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterTarget {
    /// The kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// The context in it.
    pub context: Option<String>,
}

impl ClusterTarget {
    /// Whether a cluster was chosen at all.
    pub fn is_chosen(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some()
    }
}

/// A client for the chosen cluster, and what to call it in messages.
#[derive(Clone)]
pub struct Connection {
    /// The client.
    pub client: kube::Client,
    /// The API server's URL and the context, for messages.
    pub server: String,
    /// The context's namespace (`default` when it names none).
    pub namespace: String,
}

/// Reads the kubeconfig and builds a client; nothing is sent yet.
/// A missing file or unknown context is bad input (exit 2).
pub async fn connect(
    target: &ClusterTarget,
    timeout: Duration,
) -> Result<Connection, BackendError> {
    let kubeconfig = match &target.kubeconfig {
        Some(path) => Kubeconfig::read_from(path).map_err(|e| {
            BackendError::Invalid(vec![format!("kubeconfig {}: {e}", path.display())])
        })?,
        None => Kubeconfig::read().map_err(|e| {
            BackendError::Invalid(vec![format!(
                "kubeconfig ($KUBECONFIG or ~/.kube/config): {e}"
            )])
        })?,
    };
    if let Some(context) = &target.context
        && !kubeconfig.contexts.iter().any(|c| &c.name == context)
    {
        let known: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        return Err(BackendError::Invalid(vec![format!(
            "context {context:?} is not in the kubeconfig (it has: {})",
            known.join(", ")
        )]));
    }
    let context_name = target
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_default();
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            BackendError::Invalid(vec![format!("kubeconfig context {context_name:?}: {e}")])
        })?;
    // The connection (TCP and TLS) gets half the request's time, so a
    // server that accepts and never completes a handshake is always
    // "cannot reach" (exit 3), never a race with the request's timeout.
    config.connect_timeout = Some(connect_timeout(timeout));
    // No retries of 429/503/504 inside the client: a 503 from an aggregated
    // API whose server is not ready (metrics-server starting) would be
    // retried until the request timeout, stalling `doctor` and every `top`
    // refresh. Each caller decides what a failure means.
    config.default_retry = false;
    let server = format!(
        "the Kubernetes API at {} (context {context_name:?})",
        config.cluster_url
    );
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config)
        .map_err(|e| BackendError::Failed(format!("cannot build a client for {server}: {e}")))?;
    Ok(Connection {
        client,
        server,
        namespace,
    })
}

/// How long a connection to the API server may take for a request given
/// `timeout`: half of it, at most 10 s.
fn connect_timeout(timeout: Duration) -> Duration {
    (timeout / 2).min(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_has_half_the_requests_time_at_most_ten_seconds() {
        for (request, connect) in [
            (500, 250),
            (4_000, 2_000),
            (20_000, 10_000),
            (90_000, 10_000),
        ] {
            assert_eq!(
                connect_timeout(Duration::from_millis(request)),
                Duration::from_millis(connect)
            );
        }
    }
}
