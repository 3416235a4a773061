//! `weir load`: HTTP load with a live progress line and a final report.

use std::io::IsTerminal;

use clap::Args;

use crate::drive::{LoadSpec, options, run_with_progress};
use crate::exit;
use crate::output::wants_json;
use crate::target::TargetArgs;

/// `weir load` arguments.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The load.
    #[command(flatten)]
    pub spec: LoadSpec,
    /// Output: `json` for scripts.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Which backend (to find the gateway).
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs `weir load`.
pub async fn run(args: LoadArgs) -> u8 {
    let json = match wants_json(args.output.as_deref()) {
        Ok(json) => json,
        Err(code) => return code,
    };
    let options = match options(&args.spec, &args.target).await {
        Ok(o) => o,
        Err(e) => return e.report(),
    };
    match run_with_progress(options, !json && std::io::stderr().is_terminal()).await {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", report.render());
            }
            exit::OK
        }
        Err(e) => e.report(),
    }
}
