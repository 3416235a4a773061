//! The gateway on its own, with static endpoints from WorkloadEntries: for
//! tests, benchmarks, and anyone who wants Istio routing without a cluster.
//! SIGHUP reloads the manifests; SIGTERM/SIGINT stop it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use weir_api::load::load_paths;
use weir_gateway::conn_guard::GuardLimits;
use weir_gateway::{
    AccessLogTarget, ConnectionLimits, Gateway, GatewayOptions, RouteInputs, static_endpoints,
};
use weir_rotating_file::LogLimits;

/// Serve Istio Gateway/VirtualService/DestinationRule routing to static endpoints.
#[derive(Debug, Parser)]
#[command(name = "weir-gateway", version)]
struct Args {
    /// Manifests: Gateways, VirtualServices, DestinationRules, Services, WorkloadEntries.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    paths: Vec<PathBuf>,
    /// Address the listeners bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Gateway port to local port, e.g. 80=8080 (repeatable).
    #[arg(long = "port-map", default_value = "80=8080", value_parser = weir_gateway::parse_port_map)]
    port_map: Vec<(u16, u16)>,
    /// Serve Istio's metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Access log: a file path, `-` for stdout; none unless set.
    #[arg(long)]
    access_log: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Seconds a client has to send its request headers.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a new connection has to send bytes that tell HTTP/1.1 from h2.
    #[arg(long, default_value_t = 10)]
    first_bytes_timeout: u64,
    /// Seconds a connection may stay open with no byte moving either way
    /// (Envoy's default idle timeout: 1 hour).
    #[arg(long, default_value_t = 3600)]
    idle_timeout: u64,
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    // One worker: a current-thread runtime (no work stealing, no cross-thread
    // wake-ups), as the benchmarks pin one proxy worker to one CPU.
    let mut builder = if args.workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.workers);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn load(
    paths: &[PathBuf],
) -> Result<
    (
        RouteInputs,
        std::collections::HashMap<weir_gateway::ServiceKey, Vec<weir_gateway::Endpoint>>,
    ),
    u8,
> {
    match load_paths(paths) {
        Ok(m) => {
            for w in &m.warnings {
                eprintln!("{w}");
            }
            // The resources are moved out, each object's document and field
            // positions dropped as it goes (only the loader needs them), and
            // the routing kinds moved on: a thousand-service load peaks lower.
            let resources: Vec<_> = m.objects.into_iter().map(|o| o.resource).collect();
            let endpoints = static_endpoints::from_workload_entries(&resources);
            Ok((RouteInputs::from_resources(resources), endpoints))
        }
        Err(e) => {
            eprintln!("{e}");
            Err(2)
        }
    }
}

async fn run(args: Args) -> Result<(), u8> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => return Err(1),
    };
    let options = GatewayOptions {
        bind: args.bind,
        port_map: args.port_map.iter().copied().collect::<BTreeMap<_, _>>(),
        limits: ConnectionLimits {
            header_read_timeout: Duration::from_secs(args.header_timeout),
            guard: GuardLimits {
                first_bytes_timeout: Duration::from_secs(args.first_bytes_timeout),
                idle_timeout: Duration::from_secs(args.idle_timeout),
            },
            ..ConnectionLimits::default()
        },
        access_log: args.access_log.as_deref().map(|p| match p {
            "-" => AccessLogTarget::Stdout,
            path => AccessLogTarget::File(path.into(), LogLimits::default()),
        }),
        ..GatewayOptions::default()
    };
    let gateway = std::sync::Arc::new(Gateway::new(options).map_err(|e| {
        eprintln!("weir-gateway: {e}");
        1u8
    })?);
    let (inputs, endpoints) = load(&args.paths)?;
    let compiling = tokio::time::Instant::now();
    if let Err(e) = gateway.set_all(inputs, endpoints).await {
        eprintln!("weir-gateway: {e}");
        return Err(1);
    }
    eprintln!(
        "compiled in {:.1} ms",
        compiling.elapsed().as_secs_f64() * 1000.0
    );
    if let Some(addr) = args.metrics {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            eprintln!("weir-gateway: cannot serve metrics on {addr}: {e}");
            1u8
        })?;
        eprintln!(
            "metrics on http://{}/metrics",
            listener.local_addr().unwrap_or(addr)
        );
        tokio::spawn(weir_gateway::metrics_server::serve(
            listener,
            gateway.clone(),
            gateway.connection_limits(),
        ));
    }
    for (port, addr) in gateway.listeners().await {
        eprintln!("listening: Gateway port {port} on http://{addr}/");
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                match load(&args.paths) {
                    Ok((inputs, endpoints)) => {
                        let compiling = tokio::time::Instant::now();
                        match gateway.set_all(inputs, endpoints).await {
                        Ok(()) => eprintln!("reloaded (compiled in {:.1} ms)", compiling.elapsed().as_secs_f64() * 1000.0),
                        Err(e) => eprintln!("reload failed, still serving the previous configuration: {e}"),
                        }
                    }
                    Err(_) => eprintln!("reload failed, still serving the previous configuration"),
                }
            }
        }
    }
    gateway.shutdown().await;
    Ok(())
}
