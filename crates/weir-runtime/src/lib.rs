//! weir's embedded runtime: the walkthrough's cluster on one machine.

pub mod hpa;
