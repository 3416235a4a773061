//! `weir up`: the embedded cluster in the foreground until SIGTERM, SIGINT
//! or `weir down`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;
use weir_gateway::AccessLogTarget;
use weir_runtime::runtime::{Runtime, RuntimeConfig};
use weir_runtime::{admin, discovery};

use crate::exit;
use crate::state_dir::{self, StateArgs};

/// `weir up` flags.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// State dir.
    #[command(flatten)]
    pub state: StateArgs,
    /// Gateway port to local port (repeatable).
    #[arg(long = "port-map", default_value = "80=8080", value_parser = weir_gateway::parse_port_map)]
    pub port_map: Vec<(u16, u16)>,
    /// The port the ingress controller (Ingresses, with ingress-nginx's
    /// canary annotations) listens on, at the node address.
    #[arg(long, default_value_t = 8080)]
    pub ingress_port: u16,
    /// Serve the gateway's Istio metrics at http://ADDR/metrics [default:
    /// 127.0.0.1:15090, Envoy's Prometheus port, or a free port when that
    /// one is taken].
    #[arg(long, conflicts_with = "no_metrics")]
    pub metrics: Option<SocketAddr>,
    /// Serve no metrics.
    #[arg(long)]
    pub no_metrics: bool,
    /// HPA sync period.
    #[arg(long, default_value = "15s", value_parser = weir_api::duration::parse)]
    pub hpa_sync_period: Duration,
    /// First restart backoff of a crashing container (doubles up to 5 min).
    #[arg(long, default_value = "10s", value_parser = weir_api::duration::parse)]
    pub restart_backoff: Duration,
    /// Window CPU usage is averaged over for the HPA.
    #[arg(long, default_value = "15s", value_parser = weir_api::duration::parse)]
    pub metrics_window: Duration,
    /// Map an image to a local program, IMAGE=PROGRAM (repeatable).
    #[arg(long = "image", value_parser = parse_image)]
    pub images: Vec<(String, String)>,
    /// Gateway access log: a file (rotated as pods' logs are, within
    /// --pod-log-max-bytes × --pod-log-max-files), or `-` for stdout.
    #[arg(long)]
    pub access_log: Option<String>,
    /// How long pods keep running after `weir up` died without stopping
    /// them (a restart within it adopts them); `weir down` stops them at once.
    #[arg(long, default_value = "5m", value_parser = weir_api::duration::parse)]
    pub orphan_grace: Duration,
    /// A pod's log file is rotated at this many bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub pod_log_max_bytes: u64,
    /// Log files kept per pod, the current one included.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub pod_log_max_files: u32,
    /// A gateway connection's first bytes must tell HTTP/1.1 from h2 within this.
    #[arg(long, default_value = "10s", value_parser = weir_api::duration::parse)]
    pub first_bytes_timeout: Duration,
    /// A gateway connection with no byte moving for this long is closed (Envoy's default: 1h).
    #[arg(long, default_value = "1h", value_parser = weir_api::duration::parse)]
    pub idle_timeout: Duration,
}

fn parse_image(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(i, p)| !i.is_empty() && !p.is_empty())
        .map(|(i, p)| (i.to_owned(), p.to_owned()))
        .ok_or_else(|| format!("{s:?}: expected IMAGE=PROGRAM"))
}

/// Runs the runtime until told to stop.
pub async fn run(args: UpArgs) -> u8 {
    let dir = state_dir::resolve(args.state.state_dir.clone());
    let mut config = RuntimeConfig::new(dir.clone());
    config.gateway.port_map = args.port_map.iter().copied().collect::<BTreeMap<_, _>>();
    config.gateway.ingress_port = args.ingress_port;
    config.hpa_sync_period = args.hpa_sync_period;
    config.restart_backoff = args.restart_backoff;
    config.metrics_window = args.metrics_window;
    config.orphan_grace = args.orphan_grace;
    config.log_limits = weir_runtime::pod_log::LogLimits {
        max_bytes: args.pod_log_max_bytes,
        max_files: args.pod_log_max_files,
    };
    // The access log rotates within the pods' log limits.
    config.gateway.access_log = args.access_log.as_deref().map(|p| match p {
        "-" => AccessLogTarget::Stdout,
        path => AccessLogTarget::File(PathBuf::from(path), config.log_limits),
    });
    config.gateway.limits.guard = weir_gateway::conn_guard::GuardLimits {
        first_bytes_timeout: args.first_bytes_timeout,
        idle_timeout: args.idle_timeout,
    };
    let exe = std::env::current_exe().ok();
    config.program_dirs = exe
        .iter()
        .filter_map(|e| e.parent().map(PathBuf::from))
        .collect();
    config.launcher = match exe.as_deref().map(supervisor_beside) {
        Some(Ok(launcher)) => Some(launcher),
        Some(Err(e)) => {
            eprintln!("weir: {e}");
            return exit::FAILED;
        }
        None => None,
    };
    for (image, program) in &args.images {
        config.images.insert(image, program);
    }
    let runtime = match Runtime::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir: {e}");
            return exit::FAILED;
        }
    };
    let (stop, stop_rx) = watch::channel(false);
    let admin_task = tokio::spawn(admin::serve(runtime.clone(), dir.clone(), stop.clone()));
    let metrics = if args.no_metrics {
        None
    } else {
        match bind_metrics(args.metrics).await {
            Ok(l) => {
                let addr = l.local_addr().ok();
                let gateway = runtime.gateway();
                let limits = gateway.connection_limits();
                tokio::spawn(weir_gateway::metrics_server::serve(l, gateway, limits));
                addr
            }
            Err(e) => {
                eprintln!("weir: {e}");
                None
            }
        }
    };
    if let Err(e) = discovery::write(
        &dir,
        discovery::GATEWAY_FILE,
        &discovery::gateway_targets(metrics),
    ) {
        eprintln!("weir: cannot write the gateway's Prometheus target list: {e}");
    }
    println!("weir is up (state dir {})", dir.display());
    for (port, addr) in runtime.gateway_listeners().await {
        println!("gateway: Gateway port {port} on http://{addr}/");
    }
    println!("admin socket: {}", dir.join(admin::SOCKET).display());
    if weir_runtime::run_as::runtime_uid() == 0 {
        println!(
            "running as root: pods run as root unless their securityContext sets runAsUser (runAsNonRoot is enforced); weir needs no privileges, run it as a normal user where you can"
        );
    }
    if let Some(addr) = metrics {
        println!("metrics: http://{addr}/metrics");
    }
    println!(
        "prometheus targets: {} (weir prometheus-config prints a configuration that reads them)",
        dir.join(discovery::DIR).display()
    );
    let signals = {
        let stop = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = stop.send(true);
        })
    };
    let mut stopped = stop_rx.clone();
    runtime
        .run(async move {
            let _ = stopped.wait_for(|&s| s).await;
        })
        .await;
    let _ = stop.send(true);
    signals.abort();
    let _ = admin_task.await;
    println!("weir is down");
    exit::OK
}

/// The pod supervisor, `weir-pod-exec`, which is built and installed
/// beside `weir` (`cargo build -p weir-cli` builds both).
fn supervisor_beside(weir: &std::path::Path) -> Result<PathBuf, String> {
    let supervisor = weir.with_file_name(weir_supervisor::PROGRAM);
    if supervisor.is_file() {
        Ok(supervisor)
    } else {
        Err(format!(
            "the pod supervisor {} is missing: build it with `cargo build -p weir-supervisor` (deploy/build-supervisor-static for the static build) and put it beside weir",
            supervisor.display()
        ))
    }
}

/// The gateway's metrics listener: `addr` when given (its failure is an
/// error), else Envoy's Prometheus port on loopback or, when another
/// program holds it, a free port.
async fn bind_metrics(addr: Option<SocketAddr>) -> Result<tokio::net::TcpListener, String> {
    if let Some(addr) = addr {
        return tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"));
    }
    match tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 15090)).await {
        Ok(l) => Ok(l),
        Err(_) => tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| format!("cannot serve metrics on a loopback port: {e}")),
    }
}
