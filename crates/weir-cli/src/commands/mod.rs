//! One module per `weir` command.

pub mod validate;
