//! `-l`: kubectl's label selectors (`app=my-app,version!=v1`, `tier in
//! (web,api)`, `!canary`), parsed and matched as Kubernetes does
//! (`k8s.io/apimachinery/pkg/labels`): requirements separated by commas, all
//! of which must hold; `!=` and `notin` also hold when the label is absent.

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    /// `key=value`, `key==value`, `key in (a,b)`.
    In(String, Vec<String>),
    /// `key!=value`, `key notin (a,b)`.
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// A parsed label selector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

fn key(text: &str, whole: &str) -> Result<String, String> {
    let key = text.trim();
    let valid = !key.is_empty()
        && key.len() <= 316
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label key {key:?} in selector {whole:?}"
        ))
    }
}

fn value(text: &str, whole: &str) -> Result<String, String> {
    let value = text.trim();
    let valid = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label value {value:?} in selector {whole:?}"
        ))
    }
}

/// Splits at commas outside parentheses.
fn requirements(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `(a, b)`: the values of a set requirement.
fn set(text: &str, whole: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| {
            format!("unable to parse requirement: expected (values) in selector {whole:?}")
        })?;
    inner.split(',').map(|v| value(v, whole)).collect()
}

impl LabelSelector {
    /// Parses a selector; the error names what is wrong, as kubectl does.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut out = Vec::new();
        for part in requirements(text) {
            let part = part.trim();
            let requirement = if let Some(k) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key(k, text)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotIn(key(k, text)?, vec![value(v, text)?])
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::In(key(k, text)?, vec![value(v, text)?])
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::In(key(k, text)?, vec![value(v, text)?])
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(key(k, text)?, set(rest, text)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement::In(key(k, text)?, set(rest, text)?)
            } else {
                Requirement::Exists(key(part, text)?)
            };
            out.push(requirement);
        }
        Ok(Self(out))
    }

    /// A `-l` argument (none selects everything); a malformed one is
    /// printed and becomes the bad-input exit code.
    pub fn from_arg(text: Option<&str>) -> Result<Self, u8> {
        Self::parse(text.unwrap_or_default()).map_err(|e| {
            eprintln!("error: {e}");
            crate::exit::BAD_INPUT
        })
    }

    /// Whether labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_as_kubernetes_matches_them() {
        let labels: BTreeMap<String, String> = [
            ("app", "my-app"),
            ("version", "v2.0.0"),
            ("app.kubernetes.io/part-of", "shop"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (selector, expected) in [
            ("", true),
            ("app=my-app", true),
            ("app==my-app", true),
            ("app=other", false),
            ("app!=other", true),
            ("tier!=web", true),
            ("app=my-app,version=v2.0.0", true),
            ("app=my-app,version=v1.0.0", false),
            ("version in (v1.0.0, v2.0.0)", true),
            ("version in (v1.0.0)", false),
            ("version notin (v1.0.0)", true),
            ("tier notin (web)", true),
            ("app", true),
            ("tier", false),
            ("!tier", true),
            ("!app", false),
            ("app.kubernetes.io/part-of=shop", true),
            (" app = my-app , !tier ", true),
        ] {
            let parsed = LabelSelector::parse(selector).unwrap();
            assert_eq!(parsed.matches(&labels), expected, "{selector:?}");
        }
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in ["app=my app", "=v", "version in v1", "a b", "app in (x y)"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?}");
        }
    }
}
