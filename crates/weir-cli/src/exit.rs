//! Exit codes (`docs/CLI.md`) and the printing of the errors that set them.

use weir_api::backend::BackendError;

/// Success.
pub const OK: u8 = 0;
/// A verification failed (or the runtime failed at a task).
pub const FAILED: u8 = 1;
/// Bad input or usage.
pub const BAD_INPUT: u8 = 2;
/// The runtime is unreachable.
pub const UNREACHABLE: u8 = 3;

/// Prints a backend error and returns its exit code.
pub fn fail(e: BackendError) -> u8 {
    eprintln!("{e}");
    e.exit_code()
}
