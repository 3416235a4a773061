//! Kubernetes and Istio manifests as typed, validated resources, and the
//! backend trait the `weir` commands drive.
//!
//! [`load::load_paths`] reads files and directories of multi-document YAML
//! into [`resource::Resource`]s: Kubernetes kinds as `k8s-openapi` types,
//! Istio's as [`istio`] types. Every problem is a [`diagnostic::Diagnostic`]
//! naming file, line, column and field; a field weir does not implement is
//! never silently ignored ([`fields`]).

pub mod backend;
pub mod diagnostic;
pub mod duration;
pub mod fields;
pub mod images;
pub mod ingress;
pub mod istio;
pub mod load;
pub mod object;
pub mod patch;
pub mod path;
pub mod quantity;
pub mod resource;
pub mod rollout;
pub mod rollout_references;
pub mod route;
pub mod scrape;
pub mod service_url;
pub mod validate;
pub mod version_stats;
pub mod webhook;
pub mod yaml;

pub use k8s_openapi;
