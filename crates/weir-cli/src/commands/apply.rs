//! `weir apply -f`: files are loaded and checked here once (so mistakes
//! are reported before anything is sent), and the loaded manifests go to
//! the backend, whose own errors name the same files and lines.

use std::path::PathBuf;

use clap::Args;
use weir_api::backend::{ApplyOutcome, Backend};
use weir_api::resource::Resource;
use weir_kube::{ApplyOptions, ConfirmOptions};
use weir_rollout::plan::plan;

use super::rollout_plan::apply_line;
use crate::exit::{self, fail};
use crate::manifest_files::{load, print_warnings};
use crate::target::TargetArgs;

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

/// `weir apply -f PATH...`.
pub async fn run(args: ApplyArgs) -> u8 {
    let manifests = match load(&args.paths) {
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
    match backend.apply(&manifests).await {
        Ok(outcomes) => {
            for (object, outcome) in outcomes {
                let word = match outcome {
                    ApplyOutcome::Created => "created",
                    ApplyOutcome::Configured => "configured",
                    ApplyOutcome::Unchanged => "unchanged",
                };
                println!("{object} {word}");
            }
            for r in manifests.resources() {
                if let Resource::Rollout(ro) = r
                    && let Some(line) = apply_line(
                        ro.metadata.name.as_deref().unwrap_or_default(),
                        &plan(&ro.spec, None),
                    )
                {
                    println!("{line}");
                }
            }
            exit::OK
        }
        Err(e) => fail(e),
    }
}
