//! `weir patch KIND NAME -p PATCH [--type strategic|merge|json]` (or
//! `KIND/NAME`), as `kubectl patch`: the blue/green switch of the seed
//! repository (`weir patch service my-app -p '{"spec":{"selector":{"version":"v2.0.0"}}}'`).

use clap::Args;
use weir_api::backend::{ApplyOutcome, Backend};
use weir_api::patch::PatchType;
use weir_api::resource::{Kind, ObjectRef};

use crate::exit::{self, fail};
use crate::target::TargetArgs;

/// `weir patch` arguments.
#[derive(Debug, Args)]
pub struct PatchArgs {
    /// `KIND/NAME`, or KIND followed by NAME.
    #[arg(required = true, num_args = 1..=2)]
    pub what: Vec<String>,
    /// The patch, JSON (or YAML).
    #[arg(short = 'p', long = "patch")]
    pub patch: String,
    /// `strategic`, `merge` or `json`. By default `strategic`, as
    /// kubectl's, for built-in kinds, and `merge` for custom resources
    /// (Istio's kinds, Rollouts), which have no strategic merge.
    #[arg(long = "type")]
    pub patch_type: Option<PatchType>,
    /// Namespace (default: the backend's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// The kind and name `weir patch`'s words name.
pub fn patched_object(what: &[String]) -> Result<(Kind, String), String> {
    let (kind, name) = match what {
        [one] => one
            .split_once('/')
            .ok_or_else(|| format!("error: {one:?}: name the object as KIND/NAME or KIND NAME"))?,
        [kind, name] => (kind.as_str(), name.as_str()),
        _ => return Err("error: name one object".to_owned()),
    };
    let kind = kind.parse::<Kind>().map_err(|e| format!("error: {e}"))?;
    if name.is_empty() {
        return Err("error: the object's name is empty".to_owned());
    }
    Ok((kind, name.to_owned()))
}

/// Runs `weir patch`.
pub async fn run(args: PatchArgs) -> u8 {
    let (kind, name) = match patched_object(&args.what) {
        Ok(named) => named,
        Err(message) => {
            eprintln!("{message}");
            return exit::BAD_INPUT;
        }
    };
    let patch: serde_json::Value = match serde_saphyr::from_str(&args.patch) {
        Ok(patch) => patch,
        Err(e) => {
            eprintln!("error: unable to parse {:?}: {e}", args.patch);
            return exit::BAD_INPUT;
        }
    };
    let backend = match args.target.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let object = ObjectRef {
        kind,
        namespace: backend.namespace(args.namespace.as_deref()),
        name,
    };
    let patch_type = args
        .patch_type
        .unwrap_or_else(|| PatchType::default_for(object.kind));
    match backend.patch(&object, patch_type, &patch).await {
        Ok(ApplyOutcome::Unchanged) => {
            println!("{object} patched (no change)");
            exit::OK
        }
        Ok(_) => {
            println!("{object} patched");
            exit::OK
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_is_named_as_kubectl_patch_names_it() {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            patched_object(&words(&["svc", "my-app"])),
            Ok((Kind::Service, "my-app".into()))
        );
        assert_eq!(
            patched_object(&words(&["service/my-app"])),
            Ok((Kind::Service, "my-app".into()))
        );
        assert_eq!(
            patched_object(&words(&["deployment.apps/my-app"])),
            Ok((Kind::Deployment, "my-app".into()))
        );
        assert!(patched_object(&words(&["my-app"])).is_err());
        assert!(patched_object(&words(&["nope", "my-app"])).is_err());
    }
}
