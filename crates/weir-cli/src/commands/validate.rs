//! `weir validate -f PATH...`: the resources found, one line each, then the
//! warnings; on any error, every problem and exit 2.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use weir_api::load::{Manifests, load_paths};

use crate::exit;

/// `weir validate` arguments.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or directories of YAML manifests.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
}

/// Loads and checks the files, printing to stdout (resources) and stderr
/// (problems); returns the exit code.
pub fn run(args: ValidateArgs) -> u8 {
    match load_paths(&args.paths) {
        Ok(manifests) => {
            print_ok(&manifests);
            exit::OK
        }
        Err(error) => {
            let errors = error.errors().count();
            let mut stderr = std::io::stderr().lock();
            for d in &error.diagnostics {
                let _ = writeln!(stderr, "{d}");
            }
            let _ = writeln!(
                stderr,
                "{errors} error{}: nothing would be applied",
                if errors == 1 { "" } else { "s" }
            );
            exit::BAD_INPUT
        }
    }
}

fn print_ok(manifests: &Manifests) {
    let mut stdout = std::io::stdout().lock();
    for object in &manifests.objects {
        let r = &object.resource;
        let _ = writeln!(
            stdout,
            "{} valid (namespace {}, {}:{})",
            r.object_ref(),
            r.namespace(),
            object.pos.file.display(),
            object.pos.line
        );
    }
    let mut stderr = std::io::stderr().lock();
    for w in &manifests.warnings {
        let _ = writeln!(stderr, "{w}");
    }
}
