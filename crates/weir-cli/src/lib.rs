//! The `weir` command line: parsing and dispatch. Each command is an
//! `XArgs` and a `run` in its own module under `commands`; what several
//! commands share lives beside them (`checks`, `drive`, `output`, ...),
//! never in another command.

pub mod checks;
pub mod columns;
pub mod commands;
pub mod deployment_status;
pub mod drive;
pub mod exit;
pub mod jsonpath;
pub mod manifest_files;
pub mod output;
pub mod selector;
pub mod show;
pub mod state_dir;
pub mod table;
pub mod target;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// weir: canary deployments from Istio manifests, on one machine or a cluster.
#[derive(Debug, Parser)]
#[command(name = "weir", version)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and check manifests without applying them: like
    /// `kubectl apply --dry-run=server` plus `istioctl analyze`.
    Validate(commands::validate::ValidateArgs),
    /// Run the embedded cluster (control plane, gateway, admin API) in the foreground.
    Up(commands::up::UpArgs),
    /// Stop the running `weir up`: pods terminate gracefully.
    Down(commands::down::DownArgs),
    /// Create or update objects from files or directories.
    Apply(commands::apply::ApplyArgs),
    /// Delete the objects the files describe.
    Delete(commands::delete::DeleteArgs),
    /// List objects (pods, deployments, services, hpa, gateways,
    /// virtualservices, destinationrules, rollouts) as kubectl does: columns,
    /// `-l` selectors, `-o wide|yaml|json|name|jsonpath=`, `-w`.
    Get(commands::get::GetArgs),
    /// Show one object in detail.
    Describe(commands::describe::DescribeArgs),
    /// Print a pod's log (`-f` to follow it).
    Logs(commands::logs::LogsArgs),
    /// Send HTTP load and report throughput, latency and the split by version.
    Load(commands::load::LoadArgs),
    /// Check the split statistically (`--expect v1=90,v2=10`) and/or wait for
    /// scaling (`--replicas my-app-v2>=2 --within 90s`); exit 0 pass, 1 fail.
    Verify(commands::verify::VerifyArgs),
    /// Run a scenario end to end on a throwaway runtime, with a table of
    /// checks: the walkthrough by hand (default) or `rollout`, the same
    /// canary as an automated Rollout.
    Demo(commands::demo::DemoArgs),
    /// Live dashboard: traffic by version, replicas and HPA utilization.
    Top(commands::top::TopArgs),
    /// Set a VirtualService rule's weights, e.g. `weir route my-app v1=0 v2=100`;
    /// returns once the gateway serves them.
    Route(commands::route::RouteArgs),
    /// Where a NodePort or LoadBalancer Service is reached, e.g.
    /// `weir service my-app --url` (as `minikube service --url`).
    Service(commands::service::ServiceArgs),
    /// Set a Deployment's replicas, e.g. `weir scale deployment my-app
    /// --replicas 5` (as kubectl scale).
    Scale(commands::scale::ScaleArgs),
    /// Patch one object as kubectl patch does, e.g. `weir patch service my-app
    /// -p '{"spec":{"selector":{"version":"v2.0.0"}}}'` (--type strategic|merge|json).
    Patch(commands::patch::PatchArgs),
    /// Edit a Deployment's pod template as kubectl set does: `weir set image
    /// deployment/my-app my-app=IMAGE`, `weir set env deployment/my-app
    /// VERSION=v3.0.0` (a new release when a Rollout owns it).
    Set(commands::set::SetArgs),
    /// A Rollout's progress and controls: status [-w], promote [--full],
    /// pause, resume, abort, retry.
    Rollout(commands::rollout::RolloutArgs),
    /// Check that a cluster can run the walkthrough: API, Istio CRDs, ingress
    /// gateway address, metrics-server, sidecar injection, subset labels.
    Doctor(commands::doctor::DoctorArgs),
    /// Print a Prometheus configuration that scrapes every pod and the
    /// gateway of the local runtime, found as `weir up` keeps them listed.
    PrometheusConfig(commands::prometheus_config::PrometheusConfigArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Validate(args) => commands::validate::run(args),
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_command_says_what_it_does_in_a_sentence() {
        let cli = super::Cli::command();
        assert!(
            cli.get_about()
                .is_some_and(|a| a.to_string().starts_with("weir: ")),
            "{:?}",
            cli.get_about()
        );
        for command in cli.get_subcommands() {
            let about = command
                .get_about()
                .map(|a| a.to_string())
                .unwrap_or_default();
            assert!(
                about.split_whitespace().count() >= 4,
                "{}: {about:?}",
                command.get_name()
            );
        }
    }
}
