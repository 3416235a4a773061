//! An upstream endpoint as the request path sees it: its address and
//! labels, its in-flight count, its idle keep-alive connections
//! ([`ConnectionPool`]), and the body types sent to it. The balancer reads
//! these; only [`crate::upstream`] does IO with them.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use crate::exchange;

/// One upstream endpoint, shared by every snapshot that includes it, so its
/// in-flight count survives reconfiguration.
#[derive(Debug)]
pub struct UpstreamEndpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The pod (or WorkloadEntry) name, for logs.
    pub name: String,
    /// The workload (Deployment) it belongs to: `destination_workload`.
    pub workload: String,
    /// Its `version` label: `destination_version`.
    pub version: String,
    /// What a Rollout's per-rule counters count it under: its revision
    /// (`weir.dev/revision`, a Rollout's workload revision) when it has
    /// one, else its version; two revisions with one `version` label stay
    /// apart.
    pub counted_as: String,
    /// What Istio's metrics call it: app, canonical service and revision.
    pub identity: WorkloadIdentity,
    /// The endpoint's labels.
    pub labels: BTreeMap<String, String>,
    /// Requests in flight to it (for LEAST_REQUEST).
    pub active: AtomicUsize,
    /// Its idle keep-alive connections.
    pub pool: ConnectionPool,
}

impl UpstreamEndpoint {
    /// A new endpoint with nothing in flight.
    pub fn new(
        addr: SocketAddr,
        name: String,
        workload: String,
        labels: BTreeMap<String, String>,
    ) -> Self {
        let version = labels
            .get("version")
            .or_else(|| labels.get("app.kubernetes.io/version"))
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned());
        let identity = WorkloadIdentity::of(&labels, &workload);
        let counted_as = labels
            .get(weir_api::rollout::REVISION_LABEL)
            .unwrap_or(&version)
            .clone();
        Self {
            addr,
            name,
            workload,
            counted_as,
            version,
            identity,
            labels,
            active: AtomicUsize::new(0),
            pool: ConnectionPool::default(),
        }
    }
}

/// A workload as Istio's standard metrics name it, from its pod's labels
/// (Istio's sidecar injection template and metadata exchange):
/// `destination_app` is the `app` label (else `app.kubernetes.io/name`);
/// the canonical service is `service.istio.io/canonical-name`, else
/// `app.kubernetes.io/name`, else `app`, else the workload's name; the
/// canonical revision is `service.istio.io/canonical-revision`, else
/// `app.kubernetes.io/version`, else `version`, else `latest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadIdentity {
    /// `destination_app` (`unknown` without an app label).
    pub app: String,
    /// `destination_canonical_service`.
    pub canonical_service: String,
    /// `destination_canonical_revision`.
    pub canonical_revision: String,
}

impl WorkloadIdentity {
    /// The identity of a workload with these pod labels.
    pub fn of(labels: &BTreeMap<String, String>, workload: &str) -> Self {
        let first = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k).cloned());
        Self {
            app: first(&["app", "app.kubernetes.io/name"]).unwrap_or_else(|| "unknown".into()),
            canonical_service: first(&[
                "service.istio.io/canonical-name",
                "app.kubernetes.io/name",
                "app",
            ])
            .unwrap_or_else(|| workload.to_owned()),
            canonical_revision: first(&[
                "service.istio.io/canonical-revision",
                "app.kubernetes.io/version",
                "version",
            ])
            .unwrap_or_else(|| "latest".into()),
        }
    }
}

/// The body sent upstream: the client's, streamed, or empty for retries and mirrors.
pub type UpstreamBody = Either<RequestBody, Empty<Bytes>>;

/// A client's request body on its way upstream, remembering whether
/// reading it failed: a malformed body is the client's error (Envoy's 400
/// `DPE`), not the destination's, and the request path must tell the two
/// apart when the upstream exchange fails.
pub struct RequestBody {
    inner: Incoming,
    failed: Arc<AtomicBool>,
}

impl RequestBody {
    /// Wraps `inner`; `failed` turns true if reading it fails.
    pub fn new(inner: Incoming, failed: Arc<AtomicBool>) -> Self {
        Self { inner, failed }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &frame {
            self.failed.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One endpoint's idle connections, most recently used last.
#[derive(Default)]
pub struct ConnectionPool {
    /// Connections driven by hyper's client, for requests with a body.
    pub(crate) streaming: Mutex<VecDeque<Idle<SendRequest<UpstreamBody>>>>,
    /// Connections the requests' own tasks drive, for body-less requests.
    pub(crate) direct: Mutex<VecDeque<Idle<Box<exchange::Connection>>>>,
}

pub(crate) struct Idle<C> {
    connection: C,
    since: Instant,
}

impl fmt::Debug for ConnectionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPool")
            .field("idle", &self.idle_count())
            .finish()
    }
}

/// The most recently used connection of `idle` that `usable` accepts;
/// the ones it refuses are closed.
pub(crate) fn take_from<C>(
    idle: &Mutex<VecDeque<Idle<C>>>,
    mut usable: impl FnMut(&mut C) -> bool,
) -> Option<C> {
    let mut idle = idle.lock().ok()?;
    while let Some(mut c) = idle.pop_back() {
        if usable(&mut c.connection) {
            return Some(c.connection);
        }
    }
    None
}

/// Returns `connection` to `idle`; closes the oldest idle one when it has
/// waited longer than `idle_timeout`.
pub(crate) fn put_into<C>(idle: &Mutex<VecDeque<Idle<C>>>, connection: C, idle_timeout: Duration) {
    let now = Instant::now();
    if let Ok(mut idle) = idle.lock() {
        if idle
            .front()
            .is_some_and(|c| now.duration_since(c.since) > idle_timeout)
        {
            idle.pop_front();
        }
        idle.push_back(Idle {
            connection,
            since: now,
        });
    }
}

impl ConnectionPool {
    /// How many connections wait for a request.
    pub fn idle_count(&self) -> usize {
        self.streaming.lock().map_or(0, |idle| idle.len())
            + self.direct.lock().map_or(0, |idle| idle.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_is_named_as_istio_names_it() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        // (pod labels, workload) → (app, canonical service, canonical revision)
        let cases = [
            (
                labels(&[("app", "my-app"), ("version", "v2.0.0")]),
                ("my-app", "my-app", "v2.0.0"),
            ),
            (labels(&[]), ("unknown", "my-app-v2", "latest")),
            (
                labels(&[
                    ("app.kubernetes.io/name", "shop"),
                    ("app.kubernetes.io/version", "1.2"),
                ]),
                ("shop", "shop", "1.2"),
            ),
            (
                labels(&[
                    ("app", "my-app"),
                    ("app.kubernetes.io/name", "shop"),
                    ("version", "v1"),
                    ("app.kubernetes.io/version", "1.2"),
                ]),
                ("my-app", "shop", "1.2"),
            ),
            (
                labels(&[
                    ("app", "my-app"),
                    ("service.istio.io/canonical-name", "checkout"),
                    ("service.istio.io/canonical-revision", "canary"),
                    ("version", "v2"),
                ]),
                ("my-app", "checkout", "canary"),
            ),
        ];
        for (pod_labels, (app, service, revision)) in cases {
            let id = WorkloadIdentity::of(&pod_labels, "my-app-v2");
            assert_eq!(
                (
                    id.app.as_str(),
                    id.canonical_service.as_str(),
                    id.canonical_revision.as_str()
                ),
                (app, service, revision),
                "{pod_labels:?}"
            );
        }
    }
}
