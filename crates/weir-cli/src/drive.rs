//! Driving load for the commands that send it (`weir load`, `weir verify`,
//! the demo): the arguments, the gateway's URL, the load generator's
//! options and a progress line on a terminal.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;
use http::header::HeaderName;
use weir_api::backend::Backend;
use weir_load::classify::Classifier;
use weir_load::generator::{LoadOptions, Progress, run as run_load};
use weir_load::report::Report;

use crate::target::{AnyBackend, TargetArgs};

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
        }
    }
}

/// The gateway's URL: on a cluster the ingress gateway's address (an
/// error when it has none that answers); locally the running weir's
/// Gateway port 80 (else its first), or the default port map's address.
pub async fn gateway_url(target: &TargetArgs) -> Result<String, String> {
    match target.backend().await {
        Ok(backend @ AnyBackend::Kube(_)) => backend.gateway_url().await.map_err(|e| e.to_string()),
        Ok(backend) => Ok(backend
            .gateway_url()
            .await
            .unwrap_or_else(|_| "http://127.0.0.1:8080/".to_owned())),
        Err(e) => Err(e.to_string()),
    }
}

/// Builds load options (the gateway of `target` when no URL is given);
/// an error message for bad ones.
pub async fn options(args: &LoadSpec, target: &TargetArgs) -> Result<LoadOptions, String> {
    let url = match &args.url {
        Some(u) => u.clone(),
        None => gateway_url(target).await?,
    };
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
    })
}

/// Runs load with a progress line on a terminal.
pub async fn run_with_progress(options: LoadOptions, show: bool) -> Result<Report, String> {
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
