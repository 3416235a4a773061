//! Rollouts: the walkthrough's manual canary steps as one automated,
//! analysed, reversible rollout, as pure functions over explicit time and
//! observations. No IO, no async runtime, no data plane: the embedded
//! runtime drives it today, a cluster controller can drive it the same way.
//!
//! [`sequential`] holds the anytime-valid tests; [`analysis`] judges the
//! canary with them; [`budget`] splits the user's confidence over the
//! rollout; [`capacity`] sizes the canary before its share grows;
//! [`engine`] decides each step.

pub mod analysis;
pub mod budget;
pub mod capacity;
pub mod engine;
pub mod hooks;
pub mod plan;
pub mod sequential;
pub mod status;
#[cfg(test)]
mod test_steps;
pub mod traffic;
pub mod workload;
