//! Reading and printing API objects as JSON values: a field's text, and
//! YAML as `-o yaml` and `describe` print it.

use serde_json::Value;

/// The text at a JSON pointer, or "" when absent or not text.
pub fn text_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A value as YAML.
pub fn yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}
