//! `weir apply -f` and `weir delete -f`: files are checked here first (so
//! mistakes are reported before anything is sent), then sent as read so the
//! runtime's own errors name the same files and lines.

use std::path::PathBuf;

use weir_api::backend::{ApplyOutcome, Backend};
use weir_api::load::{load_sources, read_sources};

use crate::commands::{backend, fail};
use crate::{StateArgs, exit};

fn load(paths: &[PathBuf]) -> Result<(Vec<weir_api::load::Source>, weir_api::load::Manifests), u8> {
    let print = |e: weir_api::load::LoadError| {
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
    let sources = read_sources(paths).map_err(print)?;
    let manifests = load_sources(&sources).map_err(print)?;
    for w in &manifests.warnings {
        eprintln!("{w}");
    }
    Ok((sources, manifests))
}

/// `weir apply -f PATH...`.
pub async fn apply(paths: &[PathBuf], state: StateArgs) -> u8 {
    let (sources, _) = match load(paths) {
        Ok(l) => l,
        Err(code) => return code,
    };
    match backend(&state).apply(&sources).await {
        Ok(outcomes) => {
            for (object, outcome) in outcomes {
                let word = match outcome {
                    ApplyOutcome::Created => "created",
                    ApplyOutcome::Configured => "configured",
                    ApplyOutcome::Unchanged => "unchanged",
                };
                println!("{object} {word}");
            }
            exit::OK
        }
        Err(e) => fail(e),
    }
}

/// `weir delete -f PATH...`.
pub async fn delete(paths: &[PathBuf], state: StateArgs) -> u8 {
    let (_, manifests) = match load(paths) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let objects: Vec<_> = manifests.resources().map(|r| r.object_ref()).collect();
    match backend(&state).delete(&objects).await {
        Ok(outcomes) => {
            for (object, existed) in outcomes {
                if existed {
                    println!("{object} deleted");
                } else {
                    eprintln!("Error from server (NotFound): {object} not found");
                }
            }
            exit::OK
        }
        Err(e) => fail(e),
    }
}
