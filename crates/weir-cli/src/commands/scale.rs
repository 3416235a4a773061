//! `weir scale deployment NAME --replicas N` (or `deployment/NAME`), as
//! kubectl scales: the Deployment's replica count, on the embedded runtime
//! or through the scale subresource on a cluster. An HPA that targets the
//! Deployment sets its own count again at its next sync, as on a cluster.

use clap::Args;
use weir_api::backend::Backend;
use weir_api::resource::{Kind, ObjectRef};

use crate::deployment_status::deployment_name;
use crate::exit::{self, fail};
use crate::target::TargetArgs;

/// `weir scale` arguments.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// `deployment/NAME`, or `deployment` (`deploy`) followed by NAME.
    #[arg(required = true, num_args = 1..=2)]
    pub what: Vec<String>,
    /// The new number of replicas.
    #[arg(long)]
    pub replicas: u32,
    /// Namespace (default: the backend's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// The Deployment `weir scale`'s words name: `deployment/NAME` or
/// `deployment NAME`.
pub fn scaled_deployment(what: &[String]) -> Result<String, String> {
    let named = match what {
        [one] => deployment_name(one).map(str::to_owned),
        [kind, name] => deployment_name(&format!("{kind}/{name}")).map(str::to_owned),
        _ => None,
    };
    named.ok_or_else(|| {
        format!(
            "error: weir scale takes a Deployment: `deployment/NAME` or `deployment NAME` (got {:?})",
            what.join(" ")
        )
    })
}

/// Runs `weir scale`.
pub async fn run(args: ScaleArgs) -> u8 {
    let name = match scaled_deployment(&args.what) {
        Ok(name) => name,
        Err(message) => {
            eprintln!("{message}");
            return exit::BAD_INPUT;
        }
    };
    let Ok(replicas) = i32::try_from(args.replicas) else {
        eprintln!("error: --replicas {} is too large", args.replicas);
        return exit::BAD_INPUT;
    };
    let backend = match args.target.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let deployment = ObjectRef {
        kind: Kind::Deployment,
        namespace: backend.namespace(args.namespace.as_deref()),
        name,
    };
    match backend.scale(&deployment, replicas).await {
        Ok(()) => {
            println!("{deployment} scaled");
            exit::OK
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_is_named_as_kubectl_scale_names_it() {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            scaled_deployment(&words(&["deployment/my-app"])),
            Ok("my-app".into())
        );
        assert_eq!(
            scaled_deployment(&words(&["deploy", "my-app"])),
            Ok("my-app".into())
        );
        assert_eq!(
            scaled_deployment(&words(&["deployments", "my-app"])),
            Ok("my-app".into())
        );
        assert!(scaled_deployment(&words(&["my-app"])).is_err());
        assert!(scaled_deployment(&words(&["svc", "my-app"])).is_err());
    }
}
