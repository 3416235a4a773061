//! Listeners: one accept loop per Gateway port, serving HTTP/1.1 and h2c
//! (prior knowledge) on the same port, with a deadline for request headers,
//! a cap on their size, and the connection deadlines of [`conn_guard`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::conn_guard::{self, Activity, GuardLimits, Guarded};
use crate::drain::Drain;
use crate::head_timer::HeadTimer;
use crate::headers::Peer;
use crate::proxy::handle;
use crate::shared::Shared;
use crate::snapshot::Entry;

/// Limits applied to every downstream connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// The largest request head accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// The first-bytes and idle deadlines.
    pub guard: GuardLimits,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 60 * 1024,
            guard: GuardLimits::default(),
        }
    }
}

/// Serves `listener` as `entry` until `stop` turns true; open
/// connections finish their current requests.
pub async fn serve(
    listener: TcpListener,
    entry: Entry,
    shared: Arc<Shared>,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let builder = downstream_builder(&limits);
    let drain = Drain::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if let Some(pause) = conn_guard::accept_backoff(&e) {
                        tokio::time::sleep(pause).await;
                    }
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut builder = builder.clone();
        // The connection's one clock: hyper's head deadline and the wait
        // for each response head lean on the same armed timer.
        let clock = HeadTimer::new();
        builder.http1().timer(clock.clone());
        let drain = drain.clone();
        let activity = Activity::new();
        let io = TokioIo::new(Guarded::new(stream, activity.clone()));
        let connection = tokio::spawn(async move {
            let peer = Peer::new(peer, clock);
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let peer = peer.clone();
                async move { Ok::<_, Infallible>(handle(shared, entry, peer, req).await) }
            });
            let _ = drain.run(builder.serve_connection(io, service)).await;
        });
        // The deadlines run beside the connection, not inside it: its task
        // is polled as often as before, the guard's only when its timer fires.
        tokio::spawn(conn_guard::enforce(activity, limits.guard, connection));
    }
    drain.begin();
}

/// The HTTP/1.1 + h2c server side every downstream listener uses (the
/// gateway's ports, the metrics port), with the header deadline and caps of
/// `limits`.
pub fn downstream_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .writev(false)
        .keep_alive(true);
    // h2's own guards, set here so they are ours to see: the same header
    // cap as HTTP/1.1 (hyper's h2 default is 16 KiB), and connections that
    // open streams only to reset them (CVE-2023-44487, "rapid reset") or
    // make the server reset them are closed with GOAWAY.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024);
    builder
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}
