//! `weir-pod-exec`: the supervisor each pod's container runs under
//! ([`weir_supervisor`]). `weir up` starts it; it is not run by hand.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(weir_supervisor::run(std::env::args_os().skip(1)))
}
