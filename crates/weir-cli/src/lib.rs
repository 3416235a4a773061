//! The `weir` command line: parsing and dispatch. Each command lives in its
//! own module under `commands`.

pub mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes of design.md §6.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A verification failed.
    pub const VERIFY_FAILED: u8 = 1;
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
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Validate { paths } => commands::validate::run(&paths),
    };
    ExitCode::from(code)
}
