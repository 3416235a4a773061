//! `weir`: the canary walkthrough as commands.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc, as weir-gateway uses: `weir load` allocates per request (its
/// profile showed glibc malloc's free lists), and the runtime's gateway
/// runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = weir_cli::Cli::parse();
    weir_cli::run(cli)
}

/// `weir get pods | head -1`: once the reader of stdout is gone, Rust's
/// print macros panic (SIGPIPE is ignored in Rust programs); end quietly
/// with the status a shell reports for a process killed by SIGPIPE
/// (128 + 13), as `ls | head` does, instead of a panic message and 101.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
