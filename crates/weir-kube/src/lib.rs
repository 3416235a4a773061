//! weir's Kubernetes + Istio backend: the commands of the walkthrough
//! (`apply`, `route`, `get -w`, `verify`, `load`, `top`, `doctor`) driven
//! through the Kubernetes API, so they mean the same on a cluster as on a
//! laptop. It lives in its own crate so the core and the embedded runtime
//! never compile kube.

pub mod backend;
pub mod cluster;
pub mod doctor;
mod errors;
pub mod ingress;
pub mod kinds;
pub mod manifests;
mod not_served;
pub mod port_forward;
pub mod proxy_config;
pub mod route;
pub mod usage;
pub mod watch;

pub use backend::{FIELD_MANAGER, KubeBackend};
pub use cluster::{ClusterTarget, connect};
pub use errors::PATCH_NOT_APPLICABLE;
pub use manifests::ApplyOptions;
pub use route::ConfirmOptions;
