//! `weir`: the canary walkthrough as commands.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|a| a == weir_runtime::process::POD_EXEC_ARG)
    {
        // The runtime starts pods through this shim (parent-death signal).
        let error = weir_runtime::process::pod_exec(args);
        eprintln!("weir: cannot start the pod's program: {error}");
        return ExitCode::from(127);
    }
    let cli = weir_cli::Cli::parse();
    weir_cli::run(cli)
}
