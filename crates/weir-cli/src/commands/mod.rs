//! One module per `weir` command.

pub mod apply;
pub mod delete;
pub mod demo;
pub mod describe;
pub mod doctor;
pub mod down;
pub mod get;
pub mod load;
pub mod logs;
pub mod patch;
pub mod prometheus_config;
pub mod rollout;
pub mod rollout_plan;
pub mod route;
pub mod scale;
pub mod service;
pub mod set;
pub mod top;
pub mod top_metrics;
pub mod top_snapshot;
pub mod top_story;
pub mod top_view;
pub mod up;
pub mod validate;
pub mod verify;

use crate::{Command, exit};

/// Runs a command that needs the async runtime.
pub async fn run_async(command: Command) -> u8 {
    match command {
        Command::Validate(_) => exit::BAD_INPUT,
        Command::Up(args) => up::run(args).await,
        Command::Down(args) => down::run(args).await,
        Command::Apply(args) => apply::run(args).await,
        Command::Delete(args) => delete::run(args).await,
        Command::Get(args) => get::run(args).await,
        Command::Describe(args) => describe::run(args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Route(args) => route::run(args).await,
        Command::Service(args) => service::run(args).await,
        Command::Scale(args) => scale::run(args).await,
        Command::Patch(args) => patch::run(args).await,
        Command::Set(args) => set::run(args).await,
        Command::Rollout(args) => rollout::run(args).await,
        Command::Load(args) => load::run(args).await,
        Command::Top(args) => top::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::PrometheusConfig(args) => prometheus_config::run(args),
    }
}
