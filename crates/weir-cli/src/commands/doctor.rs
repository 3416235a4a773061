//! `weir doctor`: can this cluster run the walkthrough? One line per check,
//! with the fix under each failing one; exit 0 when all pass, 1 when one
//! fails, 3 when the API server cannot be reached.

use clap::Args;
use weir_kube::doctor;

use crate::exit;
use crate::exit::fail;
use crate::output::wants_json;
use crate::target::{AnyBackend, TargetArgs};

/// `weir doctor` arguments.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The namespace the walkthrough runs in (default: the context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Output: `json` for scripts.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Which cluster.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs the checks.
pub async fn run(args: DoctorArgs) -> u8 {
    let json = match wants_json(args.output.as_deref()) {
        Ok(json) => json,
        Err(code) => return code,
    };
    let backend = match args.target.backend().await {
        Ok(AnyBackend::Kube(b)) => b,
        Ok(AnyBackend::Local(_)) => {
            eprintln!(
                "weir doctor checks a Kubernetes cluster: choose one with --context NAME or --kubeconfig PATH (or WEIR_CONTEXT / WEIR_KUBECONFIG)"
            );
            return exit::BAD_INPUT;
        }
        Err(e) => return fail(e),
    };
    let namespace = args
        .namespace
        .unwrap_or_else(|| weir_api::backend::Backend::default_namespace(&*backend).to_owned());
    let checks = match doctor::run(&backend, &namespace).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        );
    } else {
        for c in &checks {
            println!(
                "{} {:<22} {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
            if let Some(fix) = &c.fix {
                println!("     {:<22} fix: {fix}", "");
            }
        }
    }
    if checks.iter().all(|c| c.ok) {
        exit::OK
    } else {
        exit::FAILED
    }
}
