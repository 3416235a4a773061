//! weir's embedded runtime: the walkthrough's cluster on one machine.

pub mod admin;
pub mod backend;
pub mod cpu;
pub mod hpa;
pub mod pods;
pub mod probe;
pub mod process;
pub mod runtime;
pub mod store;
