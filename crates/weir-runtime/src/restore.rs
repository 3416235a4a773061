//! What a runtime finds when it starts: the stored objects, typed again,
//! and the pods a previous run left, adopted or to be restarted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use tokio::time::Instant;
use weir_api::diagnostic::Diagnostic;
use weir_api::load::{Source, load_sources};
use weir_api::resource::{Kind, ObjectRef};

use crate::error::RuntimeError;
use crate::launch::Supervision;
use crate::log;
use crate::pods::{Pod, PodKey, PodRecord};
use crate::process::Process;
use crate::state::Objects;
use crate::store::Store;
use weir_rollout::engine::{CommandIntent, RolloutStatus};

/// The stored objects, typed again through the loader. Each is read as a
/// source of its own, so a problem names the object, not a place in the
/// database.
pub fn restore_objects(store: &Store) -> Result<Objects, RuntimeError> {
    let stored = store.objects()?;
    let mut objects = Objects::default();
    if stored.is_empty() {
        return Ok(objects);
    }
    let sources: Vec<Source> = stored
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (
                PathBuf::from(format!("stored-object-{i}")),
                o.manifest.clone(),
            )
        })
        .collect();
    let manifests = load_sources(&sources).map_err(|e| {
        let named = e
            .errors()
            .map(|d| {
                let object = sources
                    .iter()
                    .position(|(path, _)| path.as_path() == &*d.pos.file)
                    .map(|i| stored[i].object.to_string())
                    .unwrap_or_else(|| d.pos.file.display().to_string());
                Diagnostic {
                    pos: weir_api::diagnostic::file_pos(std::path::Path::new("state.db")),
                    object: Some(format!("stored {object}")),
                    message: format!("cannot be read back: {}", d.message),
                    ..d.clone()
                }
            })
            .collect();
        RuntimeError::Invalid(named)
    })?;
    for o in manifests.objects {
        objects.insert(o.resource);
    }
    Ok(objects)
}

/// The Rollouts' statuses as last recorded, so each resumes at its step
/// with its weights; and those that cannot be read, with why: such a
/// Rollout holds its weight until `abort` or `retry`, never starting
/// afresh on its own.
pub fn restore_rollout_statuses(store: &Store) -> Result<RolloutStatuses, RuntimeError> {
    let mut readable = HashMap::new();
    let mut unreadable = HashMap::new();
    for (o, text) in store.statuses()? {
        if o.kind != Kind::Rollout {
            continue;
        }
        match serde_json::from_str(&text) {
            Ok(status) => {
                readable.insert(o, status);
            }
            Err(e) => {
                log(&format!(
                    "the recorded status of {o} cannot be read ({e}): it holds its weight"
                ));
                unreadable.insert(o, e.to_string());
            }
        }
    }
    Ok((readable, unreadable))
}

/// The commands that were waiting for Rollouts when the runtime stopped:
/// each is still delivered once (the engine acknowledges intents by id).
/// One that cannot be read is dropped, and said so.
pub fn restore_pending_commands(
    store: &Store,
) -> Result<HashMap<ObjectRef, CommandIntent>, RuntimeError> {
    let mut out = HashMap::new();
    for (o, text) in store.pending_commands()? {
        match serde_json::from_str(&text) {
            Ok(intent) => {
                out.insert(o, intent);
            }
            Err(e) => {
                log(&format!(
                    "the waiting command of {o} cannot be read ({e}): dropped"
                ));
                store.set_pending_command(&o, None)?;
            }
        }
    }
    Ok(out)
}

/// Readable Rollout statuses, and why the others cannot be read.
pub type RolloutStatuses = (
    HashMap<ObjectRef, RolloutStatus>,
    HashMap<ObjectRef, String>,
);

/// Pods by key, and records to remove.
pub type AdoptedPods = (BTreeMap<PodKey, Pod>, Vec<PodKey>);

/// The pods a previous run recorded: each adopted if its supervisor still
/// runs (and is exactly the recorded process), else kept to be restarted.
/// Supervisors carrying a recorded token that could not be adopted are
/// killed. Records that cannot be read are returned for removal.
pub fn adopt_pods(
    store: &Store,
    supervision: Option<&Supervision>,
) -> Result<AdoptedPods, RuntimeError> {
    let now = Instant::now();
    let mut pods = BTreeMap::new();
    let mut unreadable = Vec::new();
    let mut tokens = HashSet::new();
    let mut adopted = HashSet::new();
    for (ns, name, text) in store.pods()? {
        let Ok(record) = serde_json::from_str::<PodRecord>(&text) else {
            unreadable.push(PodKey::new(ns, name));
            continue;
        };
        tokens.insert(record.token().to_owned());
        let process = match (record.process(), supervision) {
            (Some(p), Some(s)) => Process::adopt(
                p.pid,
                p.start_time,
                record.token(),
                &s.launcher,
                record.launch(),
            ),
            _ => None,
        };
        if let Some(p) = &process {
            adopted.insert(p.pid());
        }
        pods.insert(PodKey::new(ns, name), record.into_pod(process, now));
    }
    if !pods.is_empty() {
        log(&format!(
            "adopted {} of {} recorded pods",
            adopted.len(),
            pods.len()
        ));
    }
    if let Some(s) = supervision {
        let killed = crate::process::kill_unadopted(&tokens, &adopted, &s.launcher);
        if killed > 0 {
            log(&format!(
                "stopped {killed} pod processes of a previous run that could not be adopted"
            ));
        }
    }
    Ok((pods, unreadable))
}

#[cfg(test)]
mod tests {
    use weir_api::resource::Resource;

    use super::*;
    use crate::store::StoredObject;

    fn stored(kind: Kind, name: &str, manifest: &str) -> StoredObject {
        StoredObject {
            object: ObjectRef {
                kind,
                namespace: "default".into(),
                name: name.into(),
            },
            manifest: manifest.into(),
        }
    }

    #[test]
    fn stored_objects_come_back_typed_and_an_unreadable_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let good = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"good"},"spec":{"ports":[{"port":80}]}}"#;
        store
            .apply(&[stored(Kind::Service, "good", good)], &[])
            .unwrap();
        let objects = restore_objects(&store).unwrap();
        assert_eq!(
            objects.iter().map(Resource::name).collect::<Vec<_>>(),
            ["good"]
        );

        let bad =
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad"},"spec":{"portz":[]}}"#;
        store
            .apply(&[stored(Kind::Service, "bad", bad)], &[])
            .unwrap();
        let Err(RuntimeError::Invalid(diagnostics)) = restore_objects(&store) else {
            panic!("an unknown field must not be restored");
        };
        let text = diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("stored service/bad"), "{text}");
        assert!(text.contains("portz"), "{text}");
        assert!(!text.contains("stored-object-"), "{text}");
    }
}
