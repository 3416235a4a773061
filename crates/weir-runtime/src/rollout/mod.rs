//! Rollouts: the walkthrough's manual canary steps as one automated,
//! analysed, reversible rollout. [`analysis`] judges the canary;
//! [`capacity`] sizes it before its share grows; [`engine`] decides each
//! step; all are pure.

pub mod analysis;
pub mod capacity;
pub mod engine;
