//! One module per `weir` command.

pub mod apply;
pub mod demo;
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
use weir_runtime::backend::LocalBackend;

use crate::{Command, StateArgs, exit, state_dir};

/// The backend the commands drive: the embedded runtime of the state dir.
pub fn backend(state: &StateArgs) -> LocalBackend {
    LocalBackend::new(&state_dir::resolve(state.state_dir.clone()))
}

/// Prints a backend error and returns its exit code (design.md §6).
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
        Command::Apply { paths, state } => apply::apply(&paths, state).await,
        Command::Delete { paths, state } => apply::delete(&paths, state).await,
        Command::Get(args) => get::run(args).await,
        Command::Describe {
            kind,
            name,
            namespace,
            state,
        } => get::describe(&kind, &name, &namespace, state).await,
        Command::Logs {
            pod,
            follow,
            namespace,
            state,
        } => logs::run(&pod, follow, &namespace, state).await,
        Command::Route(args) => route::run(args).await,
        Command::Load(args) => load::run(args).await,
        Command::Top(args) => top::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Verify(args) => verify::run(args).await,
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
