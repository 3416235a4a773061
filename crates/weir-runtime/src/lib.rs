//! weir's embedded runtime: the walkthrough's cluster on one machine.

pub mod actions;
pub mod admin;
pub mod api;
pub mod backend;
pub mod controllers;
pub mod cpu;
pub mod crashloop;
pub mod discovery;
pub mod error;
pub mod events;
pub mod hpa;
pub mod image_scope;
pub mod launch;
pub mod pod_ip;
pub mod pod_log;
pub mod pods;
pub mod probe;
pub mod process;
pub mod restore;
pub mod rollout_effects;
pub mod run_as;
pub mod runtime;
pub mod scrape;
pub mod state;
pub mod state_dir;
pub mod store;
pub mod usage;
pub mod webhooks;
pub mod write;

pub use weir_supervisor::proc_info;

/// The runtime's own log lines, on stderr.
pub(crate) fn log(message: &str) {
    eprintln!("weir: {message}");
}
