//! `weir apply -f` and `weir delete -f`: files are checked here first (so
//! mistakes are reported before anything is sent), then sent as read so the
//! backend's own errors name the same files and lines.

use std::path::PathBuf;

use clap::Args;
use weir_api::backend::{ApplyOutcome, Backend};
use weir_api::load::{load_sources, read_sources};
use weir_kube::{ApplyOptions, ConfirmOptions};

use crate::commands::fail;
use crate::exit;
use crate::target::{AnyBackend, TargetArgs};

/// `weir apply` arguments.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Files or directories of YAML manifests.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Namespace of objects whose manifest names none (default: the backend's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// On a cluster: take over fields another field manager owns (kubectl's flag).
    #[arg(long)]
    pub force_conflicts: bool,
    /// On a cluster: send an HPA's `scaleTargetRef.apiVersion` of
    /// extensions/v1beta1 (the seed's hpa.yaml), apps/v1beta1 or apps/v1beta2
    /// as apps/v1, the only group that serves Deployments since Kubernetes 1.16.
    #[arg(long)]
    pub rewrite_scale_target_api: bool,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

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
    Ok((sources, manifests))
}

/// Prints the loader's warnings; on a cluster, without those that concern
/// only the embedded runtime (an image with no local program, a field only a
/// cluster acts on).
fn print_warnings(manifests: &weir_api::load::Manifests, backend: &AnyBackend) {
    let on_cluster = backend.is_cluster();
    for w in &manifests.warnings {
        if !(on_cluster && w.embedded_only) {
            eprintln!("{w}");
        }
    }
}

/// `weir apply -f PATH...`.
pub async fn apply(args: ApplyArgs) -> u8 {
    let (sources, manifests) = match load(&args.paths) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let options = ApplyOptions {
        force_conflicts: args.force_conflicts,
        rewrite_scale_target: args.rewrite_scale_target_api,
    };
    let backend = match args
        .target
        .backend_with(options, ConfirmOptions::default())
        .await
        .and_then(|b| b.in_namespace(args.namespace))
    {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    print_warnings(&manifests, &backend);
    match backend.apply(&sources).await {
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
pub async fn delete(paths: &[PathBuf], namespace: Option<String>, target: TargetArgs) -> u8 {
    let (_, manifests) = match load(paths) {
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
