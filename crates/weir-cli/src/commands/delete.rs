//! `weir delete -f`: deletes the objects the files describe (absent ones
//! are reported, as kubectl does); `weir delete KINDS -l SELECTOR` (`all`,
//! or kubectl's names comma-separated): those whose labels match.

use std::path::PathBuf;

use clap::Args;
use weir_api::backend::Backend;
use weir_api::resource::{Kind, ObjectRef};

use crate::commands::get::{ALL_KINDS, labels_of};
use crate::exit::{self, fail};
use crate::manifest_files::{load, print_warnings};
use crate::selector::LabelSelector;
use crate::target::{AnyBackend, TargetArgs};

/// `weir delete` arguments.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// With `-l`: the kinds, `all` or kubectl's names comma-separated
    /// (`deploy,svc`).
    pub kinds: Option<String>,
    /// Files or directories of YAML manifests.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// With KINDS: only objects whose labels match, e.g. `app=my-app`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Namespace of objects whose manifest names none (default: the backend's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// The kinds a `delete KINDS -l` names: `all` is kubectl's category as
/// far as weir has it, less the pods, which go with their Deployment.
pub fn kinds_to_delete(kinds: &str) -> Result<Vec<Kind>, String> {
    if kinds == "all" {
        return Ok(ALL_KINDS.into_iter().filter(|k| *k != Kind::Pod).collect());
    }
    let mut out = Vec::new();
    for name in kinds.split(',') {
        let kind: Kind = name.parse().map_err(|e| format!("error: {e}"))?;
        if kind == Kind::Pod {
            return Err(
                "error: weir deletes pods with their Deployment: delete the Deployment".to_owned(),
            );
        }
        out.push(kind);
    }
    Ok(out)
}

/// `weir delete -f PATH...` or `weir delete KINDS -l SELECTOR`.
pub async fn run(args: DeleteArgs) -> u8 {
    let DeleteArgs {
        kinds,
        paths,
        selector,
        namespace,
        target,
    } = args;
    match (kinds, selector, paths.is_empty()) {
        (Some(kinds), Some(selector), true) => {
            return by_label(&kinds, &selector, namespace, target).await;
        }
        (None, None, false) => {}
        _ => {
            eprintln!(
                "error: weir delete takes -f FILE..., or KINDS with -l SELECTOR (e.g. `weir delete all -l app=my-app`)"
            );
            return exit::BAD_INPUT;
        }
    }
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

/// `weir delete KINDS -l SELECTOR`.
async fn by_label(
    kinds: &str,
    selector: &str,
    namespace: Option<String>,
    target: TargetArgs,
) -> u8 {
    let kinds = match kinds_to_delete(kinds) {
        Ok(kinds) => kinds,
        Err(message) => {
            eprintln!("{message}");
            return exit::BAD_INPUT;
        }
    };
    let selector = match LabelSelector::from_arg(Some(selector)) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let backend = match target.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let namespace = backend.namespace(namespace.as_deref());
    let mut objects: Vec<ObjectRef> = Vec::new();
    for kind in kinds {
        match backend.list(kind, &namespace).await {
            Ok(list) => objects.extend(
                list.into_iter()
                    .filter(|o| selector.matches(&labels_of(&o.object)))
                    .map(|o| ObjectRef {
                        kind,
                        namespace: namespace.clone(),
                        name: o.name().to_owned(),
                    }),
            ),
            Err(e) => return fail(e),
        }
    }
    if objects.is_empty() {
        eprintln!("No resources found");
        return exit::OK;
    }
    match backend.delete(&objects).await {
        Ok(outcomes) => {
            for (object, existed) in outcomes {
                if existed {
                    println!("{object} deleted");
                }
            }
            exit::OK
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_kubectl_names_them_and_pods_go_with_deployments() {
        assert_eq!(
            kinds_to_delete("all"),
            Ok(vec![
                Kind::Service,
                Kind::Deployment,
                Kind::HorizontalPodAutoscaler
            ])
        );
        assert_eq!(
            kinds_to_delete("deploy,svc"),
            Ok(vec![Kind::Deployment, Kind::Service])
        );
        assert!(kinds_to_delete("pods").is_err());
        assert!(kinds_to_delete("nope").is_err());
    }
}
