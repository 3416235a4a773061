//! `weir patch`: kubectl's three patch types over an object's JSON — JSON
//! merge (RFC 7386), JSON patch (RFC 6902) and strategic merge, kubectl's
//! default, which merges maps as JSON merge does but merges the lists
//! Kubernetes gives a merge key (containers and env by `name`, container
//! ports by `containerPort`, Service ports by `port`) item by item instead
//! of replacing them, and deletes an item marked `$patch: delete`.

use std::str::FromStr;

use serde_json::Value;

use crate::resource::Kind;

/// kubectl's `--type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PatchType {
    /// `strategic` (kubectl's default).
    #[default]
    Strategic,
    /// `merge`: RFC 7386.
    Merge,
    /// `json`: RFC 6902 operations.
    Json,
}

impl FromStr for PatchType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strategic" => Ok(Self::Strategic),
            "merge" => Ok(Self::Merge),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "--type must be \"json\", \"merge\", or \"strategic\", not {other:?}"
            )),
        }
    }
}

impl PatchType {
    /// The type `weir patch` sends when `--type` is not given: a strategic
    /// merge, kubectl's default, for the built-in kinds; a JSON merge for
    /// custom resources, which an API server refuses a strategic merge
    /// for (415) — the type kubectl falls back to for them when it
    /// computes a patch itself (`apply`, `edit`).
    pub fn default_for(kind: Kind) -> Self {
        if kind.is_custom_resource() {
            Self::Merge
        } else {
            Self::Strategic
        }
    }
}

/// The merge key of a list field, by the field's name (Kubernetes'
/// `patchMergeKey`s for the kinds weir loads).
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "volumes" | "volumeMounts"
        | "imagePullSecrets" => Some("name"),
        "ports" if items.iter().any(|i| i.get("containerPort").is_some()) => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(fields) = target else {
        return;
    };
    for (name, change) in changes {
        match change {
            Value::Null => {
                fields.remove(name);
            }
            Value::Array(items) => {
                let existing = fields.get(name).and_then(Value::as_array).cloned();
                match (merge_key(name, items), existing) {
                    (Some(key), Some(mut current)) => {
                        for item in items {
                            let at = current
                                .iter()
                                .position(|c| c.get(key).is_some() && c.get(key) == item.get(key));
                            let delete =
                                item.get("$patch").and_then(Value::as_str) == Some("delete");
                            match (at, delete) {
                                (Some(i), true) => {
                                    current.remove(i);
                                }
                                (Some(i), false) => strategic(&mut current[i], item),
                                (None, true) => {}
                                (None, false) => current.push(item.clone()),
                            }
                        }
                        fields.insert(name.clone(), Value::Array(current));
                    }
                    _ => {
                        fields.insert(name.clone(), change.clone());
                    }
                }
            }
            Value::Object(_) => {
                strategic(fields.entry(name.clone()).or_insert(Value::Null), change)
            }
            _ => {
                fields.insert(name.clone(), change.clone());
            }
        }
    }
}

/// Applies `patch` of `kind` to `document`.
pub fn apply_patch(document: &mut Value, kind: PatchType, patch: &Value) -> Result<(), String> {
    match kind {
        PatchType::Merge => {
            json_patch::merge(document, patch);
            Ok(())
        }
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err("a strategic merge patch is a JSON object".to_owned());
            }
            strategic(document, patch);
            Ok(())
        }
        PatchType::Json => {
            let operations: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| format!("not a JSON patch (a list of operations): {e}"))?;
            json_patch::patch(document, &operations).map_err(|e| e.to_string())
        }
    }
}

/// An object as read back, without what the API server (or the runtime)
/// sets, so it can be applied again: `status`, and the metadata
/// `uid`, `resourceVersion`, `generation`, `creationTimestamp`,
/// `managedFields`, `selfLink`.
pub fn without_server_fields(mut object: Value) -> Value {
    if let Some(fields) = object.as_object_mut() {
        fields.remove("status");
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(field);
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn custom_resources_are_merge_patched_by_default_built_in_kinds_strategic() {
        let merged = [
            Kind::Gateway,
            Kind::VirtualService,
            Kind::DestinationRule,
            Kind::WorkloadEntry,
            Kind::Rollout,
        ];
        for &kind in Kind::ALL {
            let expected = if merged.contains(&kind) {
                PatchType::Merge
            } else {
                PatchType::Strategic
            };
            assert_eq!(PatchType::default_for(kind), expected, "{kind:?}");
        }
    }

    fn service() -> Value {
        json!({"spec": {"selector": {"app": "my-app", "version": "v1.0.0"},
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    }

    fn deployment() -> Value {
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "my-app", "image": "a:1", "ports": [{"name": "http", "containerPort": 8080}],
             "env": [{"name": "VERSION", "value": "v1"}, {"name": "X", "value": "1"}]},
            {"name": "side", "image": "s:1"}]}}}})
    }

    #[test]
    fn the_three_patch_types_do_what_kubectl_patch_does() {
        /// Name, the document, the patch type, the patch, the result.
        type Case<'a> = (&'a str, Value, PatchType, Value, Result<Value, String>);
        let cases: Vec<Case> = vec![
            ("blue/green: the selector switched (strategic, kubectl's default)", service(), PatchType::Strategic,
             json!({"spec": {"selector": {"version": "v2.0.0"}}}),
             Ok(json!({"spec": {"selector": {"app": "my-app", "version": "v2.0.0"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))),
            ("merge: the same", service(), PatchType::Merge,
             json!({"spec": {"selector": {"version": "v2.0.0"}}}),
             Ok(json!({"spec": {"selector": {"app": "my-app", "version": "v2.0.0"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))),
            ("null removes a key", service(), PatchType::Strategic,
             json!({"spec": {"selector": {"version": null}}}),
             Ok(json!({"spec": {"selector": {"app": "my-app"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))),
            ("strategic: a container's image by its name, the rest kept", deployment(), PatchType::Strategic,
             json!({"spec": {"template": {"spec": {"containers": [{"name": "my-app", "image": "a:2", "env": [{"name": "VERSION", "value": "v2"}]}]}}}}),
             Ok(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "my-app", "image": "a:2", "ports": [{"name": "http", "containerPort": 8080}],
                 "env": [{"name": "VERSION", "value": "v2"}, {"name": "X", "value": "1"}]},
                {"name": "side", "image": "s:1"}]}}}}))),
            ("strategic: $patch delete", deployment(), PatchType::Strategic,
             json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}}),
             Ok(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "my-app", "image": "a:1", "ports": [{"name": "http", "containerPort": 8080}],
                 "env": [{"name": "VERSION", "value": "v1"}, {"name": "X", "value": "1"}]}]}}}}))),
            ("merge replaces lists whole", deployment(), PatchType::Merge,
             json!({"spec": {"template": {"spec": {"containers": [{"name": "my-app", "image": "a:2"}]}}}}),
             Ok(json!({"spec": {"template": {"spec": {"containers": [{"name": "my-app", "image": "a:2"}]}}}}))),
            ("strategic: Service ports by port", service(), PatchType::Strategic,
             json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
             Ok(json!({"spec": {"selector": {"app": "my-app", "version": "v1.0.0"},
                                "ports": [{"name": "http", "port": 80, "targetPort": 9090}, {"port": 443}]}}))),
            ("json patch", service(), PatchType::Json,
             json!([{"op": "replace", "path": "/spec/selector/version", "value": "v2.0.0"}]),
             Ok(json!({"spec": {"selector": {"app": "my-app", "version": "v2.0.0"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))),
            ("json patch on a missing path", service(), PatchType::Json,
             json!([{"op": "replace", "path": "/spec/nope/x", "value": 1}]),
             Err("operation '/0' failed at path '/spec/nope/x': path is invalid".to_owned())),
            ("json patch that is not a list", service(), PatchType::Json,
             json!({"spec": {}}),
             Err("not a JSON patch (a list of operations): invalid type: map, expected a sequence".to_owned())),
        ];
        for (name, mut document, kind, patch, expected) in cases {
            let got = apply_patch(&mut document, kind, &patch).map(|()| document);
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn what_the_server_set_is_dropped_before_reapplying() {
        let live = json!({"metadata": {"name": "a", "uid": "u", "resourceVersion": "7", "generation": 2,
                                       "creationTimestamp": "t", "labels": {"app": "a"}},
                          "spec": {"x": 1}, "status": {"replicas": 1}});
        assert_eq!(
            without_server_fields(live),
            json!({"metadata": {"name": "a", "labels": {"app": "a"}}, "spec": {"x": 1}})
        );
        assert_eq!("merge".parse::<PatchType>(), Ok(PatchType::Merge));
        assert!("apply".parse::<PatchType>().is_err());
    }
}
