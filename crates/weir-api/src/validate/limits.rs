//! The API server's size limits, checked before anything is stored: a
//! manifest that a cluster would refuse is refused here too, and an
//! embedded runtime cannot be made to hold a 50 MB annotation in memory.

use serde_json::Value;

use crate::path::FieldPath;

/// Kubernetes' limit on all of an object's annotations together
/// (`TotalAnnotationSizeLimitB`): keys and values, 256 KiB.
pub const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// The most an object may take as JSON: etcd's request limit, 1.5 MiB,
/// which is what a cluster's API server can store.
pub const OBJECT_MAX_BYTES: usize = 1536 * 1024;

/// Every size limit `document` breaks, with the field and the message.
pub fn check(document: &Value) -> Vec<(FieldPath, String)> {
    let mut out = Vec::new();
    for path in ["metadata", "spec.template.metadata"] {
        let mut at = FieldPath::root();
        let mut meta = Some(document);
        for key in path.split('.') {
            at = at.key(key);
            meta = meta.and_then(|m| m.get(key));
        }
        let Some(annotations) = meta
            .and_then(|m| m.get("annotations"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        let size: usize = annotations
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > ANNOTATIONS_MAX_BYTES {
            out.push((
                at.key("annotations"),
                format!(
                    "Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes (these annotations have {size})"
                ),
            ));
        }
    }
    let size = serde_json::to_vec(document).map_or(0, |v| v.len());
    if size > OBJECT_MAX_BYTES {
        out.push((
            FieldPath::root(),
            format!(
                "the object is {size} bytes as JSON; a Kubernetes API server stores at most {OBJECT_MAX_BYTES} (1.5 MiB) per object"
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_and_objects_over_kubernetes_limits_are_refused() {
        let big = |n: usize| "x".repeat(n);
        let cases = [
            (json!({"metadata": {"name": "a"}}), vec![]),
            (
                json!({"metadata": {"annotations": {"k": big(ANNOTATIONS_MAX_BYTES - 1)}}}),
                vec![],
            ),
            (
                json!({"metadata": {"annotations": {"k": big(ANNOTATIONS_MAX_BYTES)}}}),
                vec!["metadata.annotations"],
            ),
            (
                json!({"spec": {"template": {"metadata": {"annotations": {
                    "a": big(ANNOTATIONS_MAX_BYTES / 2), "b": big(ANNOTATIONS_MAX_BYTES / 2)
                }}}}}),
                vec!["spec.template.metadata.annotations"],
            ),
            (
                json!({"metadata": {"labels": {"k": big(OBJECT_MAX_BYTES)}}}),
                vec!["<root>"],
            ),
        ];
        for (document, fields) in cases {
            let found: Vec<String> = check(&document)
                .iter()
                .map(|(f, _)| f.to_string())
                .collect();
            assert_eq!(found, fields);
        }
    }
}
