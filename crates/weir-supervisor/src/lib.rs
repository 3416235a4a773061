//! weir's pod supervisor, `weir-pod-exec`: the small process each container
//! runs under, as conmon runs under CRI-O's containers. It starts the
//! container's program, writes its output to the pod's size-rotated log,
//! records its exit status in a file, and exits with the program's code.
//! It does not die with the runtime: containers keep serving while
//! `weir up` restarts, and the next runtime adopts them. But a container
//! is never orphaned for good: when no runtime has held the state dir for
//! the orphan grace, the supervisor stops its container (SIGTERM to the
//! group, SIGKILL after [`orphan::STOP_GRACE`]) and exits.
//!
//! One runs per pod, so it is kept small: no async runtime, no allocator
//! of its own, a binary apart from `weir` (whose pages it would otherwise
//! map), about what conmon costs. The runtime's side of the contract
//! (what it writes on the command line, how it knows its supervisors) uses
//! [`orders`], [`proc_info`] and [`lock`] from here.

pub mod cri_log;
pub mod lock;
pub mod orders;
pub mod orphan;
pub mod proc_info;
mod supervise;

pub use supervise::run;

/// The variable that carries a supervisor's private token. The runtime
/// records the token with the pod; the supervisor does not pass it on to
/// the container.
pub const POD_TOKEN_ENV: &str = "WEIR_POD_TOKEN";

/// The supervisor's program name: `weir up` finds it beside `weir`.
pub const PROGRAM: &str = "weir-pod-exec";
