//! `weir delete -f`: deletes the objects the files describe (absent ones
//! are reported, as kubectl does).

use std::path::PathBuf;

use clap::Args;
use weir_api::backend::Backend;

use crate::exit::{self, fail};
use crate::manifest_files::{load, print_warnings};
use crate::target::{AnyBackend, TargetArgs};

/// `weir delete` arguments.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Files or directories of YAML manifests.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Namespace of objects whose manifest names none (default: the backend's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `weir delete -f PATH...`.
pub async fn run(args: DeleteArgs) -> u8 {
    let DeleteArgs {
        paths,
        namespace,
        target,
    } = args;
    let manifests = match load(&paths) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let backend: AnyBackend = match target
        .backend()
        .await
        .and_then(|b| b.in_namespace(namespace))
    {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    print_warnings(&manifests, &backend);
    let objects: Vec<_> = manifests
        .resources()
        .map(|r| {
            let mut object = r.object_ref();
            if r.metadata().namespace.is_none() {
                object.namespace = backend.default_namespace().to_owned();
            }
            object
        })
        .collect();
    match backend.delete(&objects).await {
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
