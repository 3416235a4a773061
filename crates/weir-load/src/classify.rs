//! Which version answered: `Version: <v>` in the body (the walkthrough's
//! app), or a named response header.

use http::HeaderMap;
use http::header::HeaderName;

/// How answers are classified by version.
#[derive(Clone, Debug, Default)]
pub enum Classifier {
    /// The word after `Version: ` in the body.
    #[default]
    Body,
    /// A response header's value.
    Header(HeaderName),
}

impl Classifier {
    /// The version of one answer, if it names one.
    pub fn version<'a>(&self, headers: &'a HeaderMap, body: &'a [u8]) -> Option<&'a str> {
        match self {
            Classifier::Header(name) => headers.get(name)?.to_str().ok(),
            Classifier::Body => {
                let text = std::str::from_utf8(body).ok()?;
                let at = text.find("Version: ")? + "Version: ".len();
                let rest = &text[at..];
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (end > 0).then(|| &rest[..end])
            }
        }
    }
}

/// Whether an answered version belongs to an expected name: equal, or the
/// name followed by `.` or `-` (`v1` covers `v1.0.0`, as the walkthrough's
/// subset `v1` selects `version: v1.0.0`).
pub fn belongs(version: &str, name: &str) -> bool {
    version == name
        || version
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_walkthroughs_body_and_matches_subset_names() {
        let c = Classifier::Body;
        let h = HeaderMap::new();
        assert_eq!(
            c.version(&h, b"Host: my-app-v1-abc, Version: v1.0.0\n"),
            Some("v1.0.0")
        );
        assert_eq!(c.version(&h, b"no version here"), None);
        assert!(belongs("v1.0.0", "v1"));
        assert!(belongs("v1.0.0", "v1.0.0"));
        assert!(!belongs("v10.0.0", "v1"));
    }
}
