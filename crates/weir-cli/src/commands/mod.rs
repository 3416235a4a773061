//! One module per `weir` command.

pub mod apply;
pub mod demo;
pub mod doctor;
pub mod get;
pub mod load;
pub mod logs;
pub mod route;
pub mod top;
pub mod up;
pub mod validate;
pub mod verify;

use weir_api::backend::BackendError;
use weir_runtime::admin::{AdminClient, ClientError};

use crate::{Command, exit, state_dir};

/// Prints a backend error and returns its exit code (`docs/CLI.md`).
pub fn fail(e: BackendError) -> u8 {
    eprintln!("{e}");
    e.exit_code()
}

/// Runs a command that needs the async runtime.
pub async fn run_async(command: Command) -> u8 {
    match command {
        Command::Validate { .. } => exit::BAD_INPUT,
        Command::Up(args) => up::run(args).await,
        Command::Down { state } => {
            let client = AdminClient::new(&state_dir::resolve(state.state_dir));
            match client.shutdown().await {
                Ok(()) => {
                    println!("weir is down");
                    exit::OK
                }
                Err(e) => report(e),
            }
        }
        Command::Apply(args) => apply::apply(args).await,
        Command::Delete {
            paths,
            namespace,
            target,
        } => apply::delete(&paths, namespace, target).await,
        Command::Get(args) => get::run(args).await,
        Command::Describe {
            kind,
            name,
            namespace,
            target,
        } => get::describe(&kind, &name, namespace.as_deref(), target).await,
        Command::Logs {
            pod,
            follow,
            namespace,
            target,
        } => logs::run(&pod, follow, namespace.as_deref(), target).await,
        Command::Route(args) => route::run(args).await,
        Command::Load(args) => load::run(args).await,
        Command::Top(args) => top::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Doctor(args) => doctor::run(args).await,
    }
}

/// Prints a client error and returns its exit code.
pub fn report(e: ClientError) -> u8 {
    eprintln!("{e}");
    match e {
        ClientError::Unreachable(..) => exit::UNREACHABLE,
        ClientError::Rejected(body) if body.invalid => exit::BAD_INPUT,
        ClientError::Rejected(_) => exit::FAILED,
    }
}
