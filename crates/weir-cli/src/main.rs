//! `weir`: the canary walkthrough as commands.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = weir_cli::Cli::parse();
    weir_cli::run(cli)
}
