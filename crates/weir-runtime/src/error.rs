//! Why the runtime could not do something.

use weir_api::diagnostic::Diagnostic;
use weir_api::resource::ObjectRef;

use crate::pods::LaunchError;
use crate::state_dir::ClaimError;

/// Why the runtime could not do something.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Bad input: nothing changed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// No such object.
    #[error("{0} not found")]
    NotFound(ObjectRef),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The gateway refused the configuration.
    #[error(transparent)]
    Gateway(#[from] weir_gateway::GatewayError),
    /// Files or processes.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The state dir is another user's, unsafe, or in use.
    #[error(transparent)]
    StateDir(#[from] ClaimError),
    /// A pod's container cannot be launched.
    #[error(transparent)]
    Launch(#[from] LaunchError),
}
