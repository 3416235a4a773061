//! `-o jsonpath=TEMPLATE`: kubectl's JSONPath templates — text with
//! `{expression}` parts (`{.items[*].metadata.name}`, `{"\n"}`) — evaluated
//! by jsonpath-rust (RFC 9535) on what `-o json` prints. Several results of
//! one expression are joined by spaces, strings printed bare, as kubectl
//! does. `{range}`/`{end}` are not supported and say so.

use jsonpath_rust::JsonPath;
use serde_json::Value;

/// Renders `template` against `doc`.
pub fn render(template: &str, doc: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or_else(|| format!("unclosed action in template {template:?}"))?;
        let action = rest[open + 1..close].trim();
        out.push_str(&evaluate(action, doc, template)?);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn evaluate(action: &str, doc: &Value, template: &str) -> Result<String, String> {
    if let Some(text) = action.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
        return Ok(text.replace("\\n", "\n").replace("\\t", "\t"));
    }
    if action.starts_with("range") || action == "end" {
        return Err(format!(
            "{{{action}}} in {template:?}: range/end are not supported; use an expression with [*]"
        ));
    }
    let path = match action.strip_prefix('$') {
        Some(rest) => format!("${rest}"),
        None if action.starts_with('.') || action.starts_with('[') => format!("${action}"),
        None => format!("$.{action}"),
    };
    let found = doc
        .query(&path)
        .map_err(|e| format!("error parsing jsonpath {action:?}: {e}"))?;
    Ok(found
        .into_iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_as_kubectl_renders_them() {
        let doc = serde_json::json!({
            "kind": "List",
            "items": [
                {"metadata": {"name": "a", "labels": {"version": "v1"}}, "spec": {"replicas": 2}},
                {"metadata": {"name": "b", "labels": {"version": "v2"}}, "spec": {"replicas": 1}},
            ]
        });
        for (template, expected) in [
            ("{.items[*].metadata.name}", "a b"),
            ("{.items[0].spec.replicas}", "2"),
            ("{.items[1].metadata.labels}", r#"{"version":"v2"}"#),
            ("names: {.items[*].metadata.name}{\"\\n\"}", "names: a b\n"),
            ("{$.kind}", "List"),
            (
                "{.items[?(@.metadata.name == 'b')].metadata.labels.version}",
                "v2",
            ),
            ("{.missing}", ""),
            ("plain", "plain"),
        ] {
            assert_eq!(render(template, &doc).unwrap(), expected, "{template}");
        }
        for bad in ["{.items[", "{range .items[*]}{.metadata.name}{end}", "{.a"] {
            assert!(render(bad, &doc).is_err(), "{bad}");
        }
    }
}
