//! weir's load generator and the statistics behind `weir verify`.
//!
//! [`generator::run`] drives HTTP/1.1 or HTTP/2 keep-alive connections,
//! closed-loop or at a fixed rate with coordinated-omission-correct
//! latencies (measured from each request's scheduled start), optionally as
//! N users with their own cookie jars, and classifies each answer by
//! version. [`split`] counts the answers for named versions, the same way
//! for every command; [`stats`] turns counts into shares, Wilson intervals
//! and a chi-square verdict.

pub mod classify;
pub mod generator;
pub mod report;
pub mod split;
pub mod stats;
