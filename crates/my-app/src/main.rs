//! `my-app`: the canary walkthrough's example application, ported from Go to Rust.
//!
//! It answers `GET /` with `Host: <hostname>, Version: <VERSION>`, serves
//! Kubernetes probes and Prometheus metrics on their own ports, writes one JSON
//! access-log line per request and shuts down gracefully on SIGTERM/SIGINT,
//! exactly as `containersol/k8s-deployment-strategies` does, so that the
//! walkthrough's manifests run it unchanged.

mod access_log;
mod app;
mod metrics;
mod probe;
mod serve;

use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;

/// Command-line flags, named as the Go app's `flag` definitions.
#[derive(Debug, Parser)]
#[command(
    name = "my-app",
    version,
    about = "The canary walkthrough's example application"
)]
struct Args {
    /// The address to listen on for HTTP requests.
    #[arg(long, default_value = ":8080")]
    listen_address: String,
    /// The address to listen on for probe requests.
    #[arg(long, default_value = ":8086")]
    probe_address: String,
    /// The address to listen on for Prometheus metrics requests.
    #[arg(long, default_value = ":9101")]
    metrics_address: String,
    /// CPU time each `GET /` request burns before answering (e.g. `20ms`), to
    /// drive the autoscaling demo. Off unless set.
    #[arg(long, env = "CPU_BURN", value_parser = parse_burn)]
    cpu_burn: Option<Duration>,
    /// The share of `GET /` requests answered 500, percent (every
    /// 100/N-th, evenly), to play a bad canary. Off unless set; the Go app
    /// has no such knob.
    #[arg(long, env = "ERROR_PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    error_percent: Option<u8>,
    /// Time added before every `GET /` answer (e.g. `200ms`), to play a
    /// slow canary. Off unless set; the Go app has no such knob.
    #[arg(long, env = "EXTRA_LATENCY", value_parser = parse_burn)]
    extra_latency: Option<Duration>,
    /// The share of `GET /` requests left hanging, percent (every
    /// 100/N-th, evenly): each is answered only after a minute, to play a
    /// canary that hangs. Off unless set; the
    /// Go app has no such knob.
    #[arg(long, env = "HANG_PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    hang_percent: Option<u8>,
}

/// How long in-flight requests may take to finish after a shutdown signal,
/// the Go app's `context.WithTimeout(..., 5*time.Second)`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn parse_burn(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .ok_or_else(|| format!("{s:?}: a duration needs a unit (ms or s)"))?;
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(format!("{s:?}: unit must be ms or s")),
    }
}

/// Go's `net.Listen` takes `:8080` for "every address of this host". In a
/// pod, every address of its network namespace is the pod IP; weir's
/// runtime runs pods as processes that share the host's loopback, so with
/// `POD_IP` set, `:PORT` binds `POD_IP:PORT`, which keeps replicas from
/// colliding as they would not in separate namespaces.
fn socket_addr(flag: &str, value: &str) -> anyhow::Result<std::net::SocketAddr> {
    let full = match value.strip_prefix(':') {
        Some(port) => match std::env::var("POD_IP") {
            Ok(ip) if !ip.is_empty() => format!("{ip}:{port}"),
            _ => format!("0.0.0.0:{port}"),
        },
        None => value.to_owned(),
    };
    full.parse()
        .map_err(|e| anyhow::anyhow!("--{flag} {value:?}: {e} (expected HOST:PORT or :PORT)"))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("my-app: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            access_log::fatal(&format!("{e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Handlers first: a signal that arrives while starting up still shuts down gracefully.
    let signals = Signals::install()?;
    let version = std::env::var("VERSION").unwrap_or_default();
    let hostname = app::hostname();
    let log = access_log::Logger::new(version.clone());
    let metrics = metrics::AppMetrics::new(&version);

    let app_listener = bind("listen-address", &args.listen_address).await?;
    let probe_listener = bind("probe-address", &args.probe_address).await?;
    let metrics_listener = bind("metrics-address", &args.metrics_address).await?;

    log.info(&format!(
        "Serving Prometheus metrics on port {}",
        metrics_listener.local_addr()?
    ));
    log.info(&format!("Server started at {}", app_listener.local_addr()?));
    log.info(&format!(
        "Probe server running at {}",
        probe_listener.local_addr()?
    ));

    let shutdown = serve::Shutdown::new();
    let app = app::App::new(
        hostname,
        version,
        metrics.clone(),
        log.clone(),
        app::Faults {
            cpu_burn: args.cpu_burn,
            error_percent: args.error_percent.unwrap_or(0),
            extra_latency: args.extra_latency,
            hang_percent: args.hang_percent.unwrap_or(0),
        },
    );
    let app_task = tokio::spawn(serve::serve(app_listener, app, shutdown.clone()));
    let probe_task = tokio::spawn(serve::serve(probe_listener, probe::Probe, shutdown.clone()));
    let metrics_task = tokio::spawn(serve::serve(metrics_listener, metrics, shutdown.clone()));

    signals.recv().await;
    log.info("Shutting down server...");
    shutdown.trigger();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _ = app_task.await;
        let _ = probe_task.await;
        let _ = metrics_task.await;
    })
    .await;
    if drained.is_err() {
        log.info("Shutdown grace period expired with requests still in flight");
    }
    Ok(())
}

async fn bind(flag: &str, value: &str) -> anyhow::Result<TcpListener> {
    let addr = socket_addr(flag, value)?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("Listen: --{flag} {addr}: {e}"))
}

/// SIGTERM and SIGINT, installed together.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
