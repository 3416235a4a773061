//! Driving load for the commands that send it (`weir load`, `weir verify`,
//! the demo): the arguments, the gateway's URL, the load generator's
//! options and a progress line on a terminal.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;
use http::HeaderValue;
use http::header::HeaderName;
use weir_api::backend::Backend;
use weir_load::classify::Classifier;
use weir_load::generator::{LoadOptions, Progress, run as run_load};
use weir_load::report::Report;

use crate::target::TargetArgs;

/// What load to send, and where: `weir load`'s arguments, and what
/// `weir verify` and the demo send.
#[derive(Clone, Debug, Args)]
pub struct LoadSpec {
    /// Target URL (default: the gateway: the running weir's Gateway port 80,
    /// or on a cluster the istio-ingressgateway Service's address).
    pub url: Option<String>,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 8)]
    pub connections: usize,
    /// Duration (default 10s unless -n is given).
    #[arg(short = 'z', long, value_parser = weir_api::duration::parse)]
    pub duration: Option<Duration>,
    /// Number of requests.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Total requests per second (latencies corrected for coordinated omission).
    #[arg(short = 'q', long)]
    pub rate: Option<f64>,
    /// Simulate N users, each with its own cookie jar.
    #[arg(long)]
    pub users: Option<usize>,
    /// HTTP/2 with prior knowledge.
    #[arg(long)]
    pub http2: bool,
    /// Classify versions by this response header instead of `Version:` in the body.
    #[arg(long)]
    pub version_header: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = weir_api::duration::parse)]
    pub timeout: Duration,
    /// A header for every request, `NAME: VALUE` (repeatable), as curl's `-H`.
    #[arg(short = 'H', long = "header", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The Host header (or h2 `:authority`) to send instead of the URL's,
    /// e.g. a VirtualService's host when the URL is the gateway's address.
    #[arg(long, value_parser = parse_host)]
    pub host: Option<HeaderValue>,
}

/// `-H 'NAME: VALUE'`.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected NAME: VALUE"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?}: not a header name", name.trim()))?;
    if name == http::header::HOST {
        return Err("set the Host with --host".to_owned());
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("{:?}: not a header value", value.trim()))?;
    Ok((name, value))
}

/// `--host HOST[:PORT]`.
pub fn parse_host(text: &str) -> Result<HeaderValue, String> {
    text.parse::<http::uri::Authority>()
        .ok()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .ok_or_else(|| format!("{text:?}: expected HOST or HOST:PORT"))
}

/// Why load cannot be sent, with the exit code it means.
#[derive(Debug)]
pub enum DriveError {
    /// Bad arguments (exit 2).
    BadInput(String),
    /// The runtime, the cluster or the gateway cannot be reached (exit 3).
    Unreachable(String),
}

impl DriveError {
    /// Prints it and gives its exit code.
    pub fn report(self) -> u8 {
        match self {
            DriveError::BadInput(e) => {
                eprintln!("error: {e}");
                crate::exit::BAD_INPUT
            }
            DriveError::Unreachable(e) => {
                eprintln!("error: {e}");
                crate::exit::UNREACHABLE
            }
        }
    }
}

impl std::fmt::Display for DriveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriveError::BadInput(e) | DriveError::Unreachable(e) => f.write_str(e),
        }
    }
}

impl LoadSpec {
    /// Closed-loop load over `connections` to `url` (the gateway when `None`),
    /// bounded by `duration` and/or `requests`, for the commands that drive load.
    pub fn closed_loop(
        url: Option<String>,
        connections: usize,
        duration: Option<Duration>,
        requests: Option<u64>,
    ) -> Self {
        Self {
            url,
            connections,
            duration,
            requests,
            rate: None,
            users: None,
            http2: false,
            version_header: None,
            timeout: Duration::from_secs(10),
            headers: Vec::new(),
            host: None,
        }
    }
}

/// The gateway's URL: on a cluster the ingress gateway's address; locally
/// the running weir's Gateway port 80 (else its first). Never a guess: a
/// runtime or cluster that does not answer is an error saying so.
pub async fn gateway_url(target: &TargetArgs) -> Result<String, DriveError> {
    let unreachable = |e: weir_api::backend::BackendError| {
        if e.exit_code() == crate::exit::BAD_INPUT {
            DriveError::BadInput(format!("no gateway to send to: {e}"))
        } else {
            DriveError::Unreachable(format!("no gateway to send to: {e}; or give the URL"))
        }
    };
    let backend = target.backend().await.map_err(unreachable)?;
    backend.gateway_url().await.map_err(unreachable)
}

/// Builds load options (the gateway of `target` when no URL is given);
/// an error message for bad ones.
pub async fn options(args: &LoadSpec, target: &TargetArgs) -> Result<LoadOptions, DriveError> {
    let url = match &args.url {
        Some(u) => u.clone(),
        None => gateway_url(target).await?,
    };
    options_for(args, &url).map_err(DriveError::BadInput)
}

fn options_for(args: &LoadSpec, url: &str) -> Result<LoadOptions, String> {
    let url: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if url.scheme_str() != Some("http") || url.authority().is_none() {
        return Err(format!("invalid URL {url}: expected http://HOST:PORT/PATH"));
    }
    if args.connections == 0 {
        return Err("-c must be at least 1".into());
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err("-q must be a positive number of requests per second".into());
    }
    let classifier = match &args.version_header {
        Some(h) => Classifier::Header(
            HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| format!("invalid header name {h:?}"))?,
        ),
        None => Classifier::Body,
    };
    Ok(LoadOptions {
        url,
        connections: args.connections,
        duration: args.duration.or(if args.requests.is_none() {
            Some(Duration::from_secs(10))
        } else {
            None
        }),
        requests: args.requests,
        rate: args.rate,
        users: args.users.filter(|&u| u > 0),
        http2: args.http2,
        classifier,
        timeout: args.timeout,
        host: args.host.clone(),
        headers: args.headers.clone(),
    })
}

/// Runs load with a progress line on a terminal; nothing answering at all
/// (every connection refused or failing) is "unreachable", not a result.
pub async fn run_with_progress(options: LoadOptions, show: bool) -> Result<Report, DriveError> {
    let url = options.url.to_string();
    let report = run_reporting_progress(options, show)
        .await
        .map_err(DriveError::BadInput)?;
    if report.requests == 0 && report.errors > 0 {
        let kinds: Vec<String> = report
            .error_kinds
            .iter()
            .map(|(kind, n)| format!("{kind} ×{n}"))
            .collect();
        return Err(DriveError::Unreachable(format!(
            "nothing answered at {url}: {}",
            kinds.join(", ")
        )));
    }
    Ok(report)
}

async fn run_reporting_progress(options: LoadOptions, show: bool) -> Result<Report, String> {
    let progress = Arc::new(Progress::default());
    let ticker = show.then(|| {
        let progress = progress.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let answered = progress.answered.load(Ordering::Relaxed);
                eprint!(
                    "\r{:>5.0}s  {answered} answered  {} failed  {} req/s   ",
                    started.elapsed().as_secs_f64(),
                    progress.failed.load(Ordering::Relaxed),
                    answered - last
                );
                last = answered;
            }
        })
    });
    let report = run_load(options, progress).await.map_err(|e| e.to_string());
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    report
}
