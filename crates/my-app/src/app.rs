//! The application server: `GET /` answers `Host: <hostname>, Version: <VERSION>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, StatusCode, header};
use tokio::time::Instant;

use crate::access_log::{AccessRecord, Logger};
use crate::metrics::AppMetrics;
use crate::serve::{Handler, Resp, not_found, text};

/// The walkthrough's request handler, instrumented like the Go app's
/// `promhttp` middleware chain and `hlog.AccessHandler`.
#[derive(Clone)]
pub struct App(Arc<Inner>);

struct Inner {
    body: Bytes,
    metrics: AppMetrics,
    log: Logger,
    faults: Faults,
    served: AtomicU64,
}

/// What the app does on purpose beyond the Go app: burn CPU (the
/// autoscaling demo), answer a share of requests 500, answer late or not at
/// all (a bad canary for rollouts). All off by default.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// CPU time burned per `GET /`.
    pub cpu_burn: Option<Duration>,
    /// Percent of `GET /` answered 500, spread evenly.
    pub error_percent: u8,
    /// Time added before each `GET /` answer.
    pub extra_latency: Option<Duration>,
    /// Percent of `GET /` never answered, spread evenly.
    pub hang_percent: u8,
}

/// How long a hung request is held before it is answered after all:
/// longer than any client here waits, and bounded.
pub const HANG_FOR: Duration = Duration::from_secs(60);

/// Whether request `i` (from 0) is one of `percent` in every 100, spread
/// evenly: it is when the running share reaches the next whole one.
fn in_share(i: u64, percent: u8) -> bool {
    let pct = u64::from(percent);
    (i + 1) * pct / 100 > i * pct / 100
}

impl App {
    /// An app that reports `hostname` and `version` in every answer.
    pub fn new(
        hostname: String,
        version: String,
        metrics: AppMetrics,
        log: Logger,
        faults: Faults,
    ) -> Self {
        let body = Bytes::from(format!("Host: {hostname}, Version: {version}\n"));
        Self(Arc::new(Inner {
            body,
            metrics,
            log,
            faults,
            served: AtomicU64::new(0),
        }))
    }
}

impl Handler for App {
    async fn handle(&self, req: Request<Incoming>) -> Resp {
        let started = Instant::now();
        let in_flight = self.0.metrics.request_started();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or_default()
            .to_owned();
        let method = req.method().clone();

        let response = match (req.uri().path(), &method) {
            ("/", &Method::GET) => {
                let faults = &self.0.faults;
                if let Some(burn) = faults.cpu_burn {
                    burn_cpu(burn).await;
                }
                if let Some(late) = faults.extra_latency {
                    tokio::time::sleep(late).await;
                }
                // Exactly N of every 100 fail (or hang), evenly spread.
                let i = self.0.served.fetch_add(1, Ordering::Relaxed);
                if in_share(i, faults.hang_percent) {
                    tokio::time::sleep(HANG_FOR).await;
                }
                if in_share(i, faults.error_percent) {
                    text(StatusCode::INTERNAL_SERVER_ERROR, self.0.body.clone())
                } else {
                    text(StatusCode::OK, self.0.body.clone())
                }
            }
            // gorilla/mux answers a known path with the wrong method 405, no body.
            ("/", _) => text(StatusCode::METHOD_NOT_ALLOWED, Bytes::new()),
            _ => not_found(),
        };

        let size = hyper::body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        let elapsed = started.elapsed();
        self.0
            .metrics
            .request_finished(in_flight, response.status(), &method, elapsed, size);
        self.0.log.access(&AccessRecord {
            host: &host,
            status: response.status().as_u16(),
            size,
            duration: elapsed,
        });
        response
    }
}

/// Spins on a blocking thread for `burn`, so that each request costs CPU the
/// autoscaler can measure, without stalling the async workers.
async fn burn_cpu(burn: Duration) {
    let _ = tokio::task::spawn_blocking(move || {
        let until = Instant::now() + burn;
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    })
    .await;
}

/// The hostname reported in answers: `HOSTNAME` when set (a pod's name, as
/// the container runtime sets it), else the machine's.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".to_owned())
}
