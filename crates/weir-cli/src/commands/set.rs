//! `weir set image` and `weir set env`, as kubectl's: a Deployment's pod
//! template edited without opening a manifest — how a new release starts
//! when a Rollout owns the Deployment (`spec.workloadRef`). Each is a
//! strategic merge patch of the named containers, sent as `weir patch`
//! sends it.

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use weir_api::backend::{ApplyOutcome, Backend};
use weir_api::patch::PatchType;
use weir_api::resource::{Kind, ObjectRef};

use crate::commands::patch::patched_object;
use crate::exit::{self, fail};
use crate::target::TargetArgs;

/// `weir set` arguments.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// What to set.
    #[command(subcommand)]
    pub what: SetCommand,
    /// Namespace (default: the backend's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// What `weir set` changes.
#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Containers' images: `weir set image deployment/my-app my-app=IMAGE`.
    Image {
        /// `deployment/NAME` (or `deployment NAME`), then `CONTAINER=IMAGE`...
        #[arg(required = true, num_args = 2..)]
        words: Vec<String>,
    },
    /// Environment variables of every container (or of `-c`'s):
    /// `weir set env deployment/my-app VERSION=v3.0.0`.
    Env {
        /// `deployment/NAME` (or `deployment NAME`), then `KEY=VALUE`...
        #[arg(required = true, num_args = 2..)]
        words: Vec<String>,
        /// Only this container.
        #[arg(short = 'c', long)]
        container: Option<String>,
    },
}

/// `NAME=VALUE` pairs, in order.
type Pairs = Vec<(String, String)>;

/// The object and the `KEY=VALUE` pairs of `words`: the object as one
/// word (`KIND/NAME`) or two.
fn split_words(words: &[String]) -> Result<((Kind, String), Pairs), String> {
    let named = words.first().is_some_and(|w| w.contains('/'));
    let (object, pairs) = words.split_at(if named { 1 } else { 2.min(words.len()) });
    let (kind, name) = patched_object(object)?;
    if kind != Kind::Deployment {
        return Err(format!(
            "error: weir set edits a Deployment's pod template, not a {}",
            kind.name()
        ));
    }
    let pairs = pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("error: {p:?}: expected NAME=VALUE")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if pairs.is_empty() {
        return Err("error: at least one NAME=VALUE".to_owned());
    }
    Ok(((kind, name), pairs))
}

/// The strategic merge patch setting containers' images.
pub fn image_patch(images: &[(String, String)]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .map(|(c, image)| json!({"name": c, "image": image}))
        .collect();
    json!({"spec": {"template": {"spec": {"containers": containers}}}})
}

/// The strategic merge patch setting `env` on `containers`.
pub fn env_patch(containers: &[String], env: &[(String, String)]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let containers: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "env": env}))
        .collect();
    json!({"spec": {"template": {"spec": {"containers": containers}}}})
}

/// Runs `weir set`.
pub async fn run(args: SetArgs) -> u8 {
    let words = match &args.what {
        SetCommand::Image { words } | SetCommand::Env { words, .. } => words,
    };
    let ((kind, name), pairs) = match split_words(words) {
        Ok(split) => split,
        Err(message) => {
            eprintln!("{message}");
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
    let live = match backend.get(&object).await {
        Ok(Some(live)) => live,
        Ok(None) => {
            eprintln!("Error from server (NotFound): {object} not found");
            return exit::BAD_INPUT;
        }
        Err(e) => return fail(e),
    };
    let names: Vec<String> = live.object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let patch = match &args.what {
        SetCommand::Image { .. } => {
            if let Some((missing, _)) = pairs.iter().find(|(c, _)| !names.contains(c)) {
                eprintln!("error: unable to find container named {missing:?} in {object}");
                return exit::BAD_INPUT;
            }
            image_patch(&pairs)
        }
        SetCommand::Env { container, .. } => {
            let chosen: Vec<String> = match container {
                Some(c) if !names.contains(c) => {
                    eprintln!("error: unable to find container named {c:?} in {object}");
                    return exit::BAD_INPUT;
                }
                Some(c) => vec![c.clone()],
                None => names,
            };
            env_patch(&chosen, &pairs)
        }
    };
    match backend.patch(&object, PatchType::Strategic, &patch).await {
        Ok(ApplyOutcome::Unchanged) => {
            println!("{object} unchanged");
            exit::OK
        }
        Ok(_) => {
            println!("{object} updated");
            exit::OK
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_name_a_deployment_then_pairs_as_kubectl_set_takes_them() {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            split_words(&words(&["deployment/my-app", "my-app=img:v3"])),
            Ok((
                (Kind::Deployment, "my-app".into()),
                vec![pair("my-app", "img:v3")]
            ))
        );
        assert_eq!(
            split_words(&words(&["deploy", "my-app", "A=1", "B="])),
            Ok((
                (Kind::Deployment, "my-app".into()),
                vec![pair("A", "1"), pair("B", "")]
            ))
        );
        for bad in [
            &["deployment/my-app"][..],
            &["svc/my-app", "a=b"],
            &["deployment/my-app", "novalue"],
            &["deployment/my-app", "=x"],
        ] {
            assert!(split_words(&words(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_patches_merge_by_container_and_variable_name() {
        assert_eq!(
            env_patch(&["a".into(), "b".into()], &[("V".into(), "1".into())]),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a", "env": [{"name": "V", "value": "1"}]},
                {"name": "b", "env": [{"name": "V", "value": "1"}]},
            ]}}}})
        );
        assert_eq!(
            image_patch(&[("a".into(), "i:2".into())]),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "i:2"}]}}}})
        );
    }
}
