//! The `weir` command line: parsing and dispatch. Each command lives in its
//! own module under `commands`.

pub mod commands;
pub mod state_dir;
pub mod table;
pub mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::target::TargetArgs;

/// Exit codes (`docs/CLI.md`).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A verification failed (or the runtime failed at a task).
    pub const FAILED: u8 = 1;
    /// Bad input or usage.
    pub const BAD_INPUT: u8 = 2;
    /// The runtime is unreachable.
    pub const UNREACHABLE: u8 = 3;
}

/// weir: canary deployments from Istio manifests, on one machine or a cluster.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the embedded runtime keeps its state.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// State dir (else $WEIR_STATE_DIR, else $XDG_STATE_HOME/weir, else ~/.local/state/weir).
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and check manifests without applying them: like
    /// `kubectl apply --dry-run=server` plus `istioctl analyze`.
    Validate {
        /// Files or directories of YAML manifests.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        paths: Vec<PathBuf>,
    },
    /// Run the embedded cluster (control plane, gateway, admin API) in the foreground.
    Up(commands::up::UpArgs),
    /// Stop the running `weir up`: pods terminate gracefully.
    Down {
        /// State dir.
        #[command(flatten)]
        state: StateArgs,
    },
    /// Create or update objects from files or directories.
    Apply(commands::apply::ApplyArgs),
    /// Delete the objects the files describe.
    Delete {
        /// Files or directories of YAML manifests.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        paths: Vec<PathBuf>,
        /// Namespace of objects whose manifest names none (default: the backend's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Which backend.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List objects: pods, deployments, services, hpa, gateways, virtualservices, destinationrules.
    Get(commands::get::GetArgs),
    /// Show one object in detail.
    Describe {
        /// The kind.
        kind: String,
        /// The name.
        name: String,
        /// Namespace (default: the backend's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Which backend.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Print a pod's log.
    Logs {
        /// The pod.
        pod: String,
        /// Keep printing new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Namespace (default: the backend's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Which backend.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Send HTTP load and report throughput, latency and the split by version.
    Load(commands::load::LoadArgs),
    /// Check the split statistically (`--expect v1=90,v2=10`) and/or wait for
    /// scaling (`--replicas my-app-v2>=2 --within 90s`); exit 0 pass, 1 fail.
    Verify(commands::verify::VerifyArgs),
    /// The whole walkthrough in one command, with a pass/fail summary.
    Demo(commands::demo::DemoArgs),
    /// Live dashboard: traffic by version, replicas and HPA utilization.
    Top(commands::top::TopArgs),
    /// Set a VirtualService rule's weights, e.g. `weir route my-app v1=0 v2=100`;
    /// returns once the gateway serves them.
    Route(commands::route::RouteArgs),
    /// Check that a cluster can run the walkthrough: API, Istio CRDs, ingress
    /// gateway address, metrics-server, sidecar injection, subset labels.
    Doctor(commands::doctor::DoctorArgs),
}

/// Parses durations such as `15s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    weir_api::duration::parse(s)
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Validate { paths } => commands::validate::run(&paths),
        other => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(commands::run_async(other)),
            Err(e) => {
                eprintln!("weir: cannot start the async runtime: {e}");
                exit::FAILED
            }
        },
    };
    ExitCode::from(code)
}
