//! `weir prometheus-config`: a complete Prometheus configuration for the
//! runtime of a state dir — the pods (found through the target list `weir
//! up` keeps current, relabeled as on Kubernetes) and the gateway — to save
//! and run: `weir prometheus-config > prometheus.yml && prometheus
//! --config.file=prometheus.yml`.

use std::time::Duration;

use clap::Args;
use weir_runtime::discovery;

use crate::exit;
use crate::state_dir::{self, StateArgs};

/// `weir prometheus-config` arguments.
#[derive(Debug, Args)]
pub struct PrometheusConfigArgs {
    /// State dir.
    #[command(flatten)]
    pub state: StateArgs,
    /// How often Prometheus scrapes every target.
    #[arg(long, default_value = "15s", value_parser = weir_api::duration::parse)]
    pub scrape_interval: Duration,
}

/// Prints the configuration.
pub fn run(args: PrometheusConfigArgs) -> u8 {
    let dir = state_dir::resolve(args.state.state_dir);
    // Prometheus reads file_sd paths relative to its configuration file.
    let dir = match std::path::absolute(&dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("weir: cannot make {} absolute: {e}", dir.display());
            return exit::FAILED;
        }
    };
    if args.scrape_interval < Duration::from_secs(1) {
        eprintln!("weir: --scrape-interval must be at least 1s");
        return exit::BAD_INPUT;
    }
    if !discovery::path(&dir, discovery::PODS_FILE).exists() {
        eprintln!(
            "weir: no `weir up` has listed targets in {} yet; Prometheus will find them once one does",
            dir.display()
        );
    }
    print!(
        "{}",
        discovery::prometheus_config(&dir, args.scrape_interval)
    );
    exit::OK
}
