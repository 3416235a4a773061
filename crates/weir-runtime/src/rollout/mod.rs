//! Rollouts: the walkthrough's manual canary steps as one automated,
//! analysed, reversible rollout. [`analysis`] judges the canary;
//! [`engine`] decides each step; both are pure.

pub mod analysis;
pub mod engine;
