//! The load loop: one task per connection, each with its own histogram,
//! merged at the end. Closed loop (as fast as answers come) or at a fixed
//! total rate, where request `i` is scheduled at `start + i / rate` and its
//! latency counts from then, not from when it was sent (oha's and wrk2's
//! correction for coordinated omission).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{COOKIE, HOST, HeaderName, SET_COOKIE};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::classify::Classifier;
use crate::report::{Latency, Report};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The target (`http://host:port/path`).
    pub url: Uri,
    /// Concurrent connections.
    pub connections: usize,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Total requests per second; closed loop when absent.
    pub rate: Option<f64>,
    /// Distinct users (cookie jars), assigned round-robin to requests.
    pub users: Option<usize>,
    /// Speak HTTP/2 (prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// How answers are assigned to versions.
    pub classifier: Classifier,
    /// Per-request timeout.
    pub timeout: Duration,
    /// The Host (HTTP/1.1) or `:authority` (h2) to send instead of the URL's.
    pub host: Option<HeaderValue>,
    /// Headers added to every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Live counters, for a progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Answers so far.
    pub answered: AtomicU64,
    /// Failures so far.
    pub failed: AtomicU64,
    /// Answers with a 5xx status so far (counted in `answered` too).
    pub server_errors: AtomicU64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The URL has no usable host and port.
    #[error("invalid URL {0}: expected http://HOST:PORT/PATH")]
    Url(String),
    /// The host did not resolve.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
}

type Jar = Mutex<BTreeMap<String, String>>;

struct Shared {
    options: LoadOptions,
    addr: SocketAddr,
    host: HeaderValue,
    claimed: AtomicU64,
    start: Instant,
    deadline: Option<Instant>,
    jars: Vec<Jar>,
    progress: Arc<Progress>,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn connect(shared: &Shared) -> Result<Sender, String> {
        let stream = TcpStream::connect(shared.addr)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        if shared.options.http2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|_| "handshake".to_owned())?;
            tokio::spawn(conn);
            Ok(Sender::H2(sender))
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|_| "handshake".to_owned())?;
            tokio::spawn(conn);
            Ok(Sender::H1(sender))
        }
    }

    async fn send(
        &mut self,
        req: Request<Empty<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper::Error> {
        match self {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

struct WorkerResult {
    histogram: Histogram<u64>,
    status: BTreeMap<u16, u64>,
    versions: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 100 s, 3 significant figures.
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

async fn worker(shared: Arc<Shared>) -> WorkerResult {
    let mut result = WorkerResult {
        histogram: histogram(),
        status: BTreeMap::new(),
        versions: BTreeMap::new(),
        errors: BTreeMap::new(),
    };
    let mut sender: Option<Sender> = None;
    let path = shared
        .options
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    loop {
        let i = shared.claimed.fetch_add(1, Ordering::Relaxed);
        if shared.options.requests.is_some_and(|n| i >= n) {
            break;
        }
        let scheduled = match shared.options.rate {
            Some(rate) => {
                let at = shared.start + Duration::from_secs_f64(i as f64 / rate);
                if shared.deadline.is_some_and(|d| at >= d) {
                    break;
                }
                tokio::time::sleep_until(at).await;
                at
            }
            None => Instant::now(),
        };
        if shared.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if sender.is_none() {
            match Sender::connect(&shared).await {
                Ok(s) => sender = Some(s),
                Err(kind) => {
                    *result.errors.entry(kind).or_default() += 1;
                    shared.progress.failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let user = shared.options.users.map(|u| (i as usize) % u.max(1));
        let mut req = Request::get(path.as_str())
            .body(Empty::new())
            .unwrap_or_default();
        if shared.options.http2 {
            let uri = format!(
                "http://{}{}",
                shared.host.to_str().unwrap_or_default(),
                path
            );
            *req.uri_mut() = uri.parse().unwrap_or_default();
        } else {
            req.headers_mut().insert(HOST, shared.host.clone());
        }
        for (name, value) in &shared.options.headers {
            req.headers_mut().append(name.clone(), value.clone());
        }
        if let Some(u) = user {
            let jar = shared.jars[u].lock().unwrap_or_else(|e| e.into_inner());
            if !jar.is_empty() {
                let cookie: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
                if let Ok(v) = HeaderValue::from_str(&cookie.join("; ")) {
                    req.headers_mut().insert(COOKIE, v);
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let outcome = tokio::time::timeout(shared.options.timeout, async {
            let resp = s.send(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>((parts, body))
        })
        .await;
        match outcome {
            Ok(Ok((parts, body))) => {
                let micros = scheduled.elapsed().as_micros().max(1) as u64;
                let _ = result.histogram.record(micros.min(100_000_000));
                *result.status.entry(parts.status.as_u16()).or_default() += 1;
                if let Some(v) = shared.options.classifier.version(&parts.headers, &body) {
                    match result.versions.get_mut(v) {
                        Some(n) => *n += 1,
                        None => {
                            result.versions.insert(v.to_owned(), 1);
                        }
                    }
                }
                if let Some(u) = user {
                    let mut jar = shared.jars[u].lock().unwrap_or_else(|e| e.into_inner());
                    for c in parts
                        .headers
                        .get_all(SET_COOKIE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                    {
                        if let Some((k, v)) = c.split(';').next().and_then(|kv| kv.split_once('='))
                        {
                            jar.insert(k.trim().to_owned(), v.trim().to_owned());
                        }
                    }
                }
                if parts.status.is_server_error() {
                    shared
                        .progress
                        .server_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
                shared.progress.answered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(_)) => {
                *result.errors.entry("connection error".into()).or_default() += 1;
                shared.progress.failed.fetch_add(1, Ordering::Relaxed);
                sender = None;
            }
            Err(_) => {
                *result.errors.entry("timeout".into()).or_default() += 1;
                shared.progress.failed.fetch_add(1, Ordering::Relaxed);
                sender = None;
            }
        }
    }
    result
}

/// Runs the load and reports. Bounded by `duration` and/or `requests`
/// (the caller must set at least one).
pub async fn run(options: LoadOptions, progress: Arc<Progress>) -> Result<Report, LoadError> {
    let authority = options
        .url
        .authority()
        .ok_or_else(|| LoadError::Url(options.url.to_string()))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((authority.host(), port))
        .await
        .map_err(|e| LoadError::Resolve(authority.to_string(), e.to_string()))?
        .next()
        .ok_or_else(|| LoadError::Resolve(authority.to_string(), "no address".into()))?;
    let host = match &options.host {
        Some(host) => host.clone(),
        None => HeaderValue::from_str(authority.as_str())
            .map_err(|_| LoadError::Url(options.url.to_string()))?,
    };
    let start = Instant::now();
    let users = options.users.unwrap_or(0);
    let shared = Arc::new(Shared {
        deadline: options.duration.map(|d| start + d),
        jars: (0..users).map(|_| Mutex::new(BTreeMap::new())).collect(),
        options,
        addr,
        host,
        claimed: AtomicU64::new(0),
        start,
        progress,
    });
    let tasks: Vec<_> = (0..shared.options.connections.max(1))
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut total = WorkerResult {
        histogram: histogram(),
        status: BTreeMap::new(),
        versions: BTreeMap::new(),
        errors: BTreeMap::new(),
    };
    for t in tasks {
        let Ok(r) = t.await else { continue };
        let _ = total.histogram.add(&r.histogram);
        for (k, v) in r.status {
            *total.status.entry(k).or_default() += v;
        }
        for (k, v) in r.versions {
            *total.versions.entry(k).or_default() += v;
        }
        for (k, v) in r.errors {
            *total.errors.entry(k).or_default() += v;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let h = &total.histogram;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let requests = h.len();
    Ok(Report {
        requests,
        errors: total.errors.values().sum(),
        seconds,
        requests_per_second: requests as f64 / seconds.max(1e-9),
        latency_ms: if requests == 0 {
            Latency::default()
        } else {
            Latency {
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
                p999: ms(0.999),
                max: h.max() as f64 / 1000.0,
                mean: h.mean() / 1000.0,
            }
        },
        status: total.status,
        versions: total.versions,
        error_kinds: total.errors,
    })
}
