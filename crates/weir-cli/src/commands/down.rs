//! `weir down`: stops the running `weir up`; its pods terminate gracefully.

use clap::Args;
use weir_runtime::backend::LocalBackend;

use crate::exit;
use crate::state_dir::{self, StateArgs};

/// `weir down` arguments.
#[derive(Debug, Args)]
pub struct DownArgs {
    /// State dir.
    #[command(flatten)]
    pub state: StateArgs,
}

/// Asks the runtime to stop and returns once it has.
pub async fn run(args: DownArgs) -> u8 {
    let runtime = LocalBackend::new(
        &state_dir::resolve(args.state.state_dir),
        weir_runtime::admin::DEFAULT_REQUEST_TIMEOUT,
    );
    match runtime.shutdown().await {
        Ok(()) => {
            println!("weir is down");
            exit::OK
        }
        Err(e) => exit::fail(e),
    }
}
