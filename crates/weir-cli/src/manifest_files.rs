//! The manifests `weir apply` and `weir delete` are given: loaded and
//! checked once, their problems printed with file, line and field.

use std::path::PathBuf;

use weir_api::load::{LoadError, Manifests, load_paths};

use crate::exit;
use crate::target::AnyBackend;

/// Loads the files; on an error, prints every problem and returns the
/// bad-input exit code.
pub fn load(paths: &[PathBuf]) -> Result<Manifests, u8> {
    let print = |e: LoadError| {
        for d in &e.diagnostics {
            eprintln!("{d}");
        }
        let n = e.errors().count();
        eprintln!(
            "{n} error{}: nothing was applied",
            if n == 1 { "" } else { "s" }
        );
        exit::BAD_INPUT
    };
    load_paths(paths).map_err(print)
}

/// Prints the loader's warnings; on a cluster, without those that concern
/// only the embedded runtime (an image with no local program, a field only a
/// cluster acts on).
pub fn print_warnings(manifests: &Manifests, backend: &AnyBackend) {
    let on_cluster = backend.is_cluster();
    for w in &manifests.warnings {
        if !(on_cluster && w.embedded_only) {
            eprintln!("{w}");
        }
    }
}
