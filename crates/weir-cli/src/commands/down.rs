//! `weir down`: stops the running `weir up`; its pods terminate gracefully.

use clap::Args;
use weir_runtime::admin::AdminClient;

use crate::exit::{self, report};
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
    let client = AdminClient::new(&state_dir::resolve(args.state.state_dir));
    match client.shutdown().await {
        Ok(()) => {
            println!("weir is down");
            exit::OK
        }
        Err(e) => report(e),
    }
}
