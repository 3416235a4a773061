//! Field paths inside a manifest (`spec.http[0].route[1].weight`), the way
//! kubectl and Istio name the field an error is about.

use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Where a value sits in a document, from its root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The document root.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.into()));
        next
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    /// The steps of the path.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path one step up, or `None` at the root.
    pub fn parent(&self) -> Option<Self> {
        let mut parent = self.clone();
        parent.0.pop().map(|_| parent)
    }

    /// Whether `self` is `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// Parses the display form back (`a.b[2].c`); used for the field tables
    /// and in tests. Keys may not contain `.` or `[` here.
    pub fn parse(text: &str) -> Self {
        let mut path = Self::root();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let (key, rest) = part.split_once('[').unwrap_or((part, ""));
            if !key.is_empty() {
                path = path.key(key);
            }
            for index in rest.split('[') {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    path = path.index(i);
                }
            }
        }
        path
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<root>");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A path with `[]` standing for any index (`spec.template.spec.containers[].image`),
/// used by the tables of which fields weir implements.
#[derive(Clone, Debug)]
pub struct PathPattern(Vec<Option<String>>);

impl PathPattern {
    /// Parses `a.b[].c`; `[]` matches any index.
    pub fn parse(pattern: &str) -> Self {
        let mut steps = Vec::new();
        for part in pattern.split('.').filter(|p| !p.is_empty()) {
            let key = part.trim_end_matches("[]");
            steps.push(Some(key.to_owned()));
            for _ in 0..(part.len() - key.len()) / 2 {
                steps.push(None);
            }
        }
        Self(steps)
    }

    fn step_matches(step: &Option<String>, segment: &Segment) -> bool {
        match (step, segment) {
            (Some(want), Segment::Key(key)) => want == "*" || want == key,
            (None, Segment::Index(_)) => true,
            _ => false,
        }
    }

    /// Whether `path` is this pattern's field or lies below it.
    pub fn covers(&self, path: &FieldPath) -> bool {
        path.0.len() >= self.0.len()
            && self
                .0
                .iter()
                .zip(&path.0)
                .all(|(step, segment)| Self::step_matches(step, segment))
    }

    /// Whether `path` lies on the way to this pattern's field (a proper
    /// ancestor, such as `spec.template` for `spec.template.spec.containers`).
    pub fn passes_through(&self, path: &FieldPath) -> bool {
        path.0.len() < self.0.len()
            && self
                .0
                .iter()
                .zip(&path.0)
                .all(|(step, segment)| Self::step_matches(step, segment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let path = FieldPath::root()
            .key("spec")
            .key("http")
            .index(0)
            .key("route")
            .index(1)
            .key("weight");
        assert_eq!(path.to_string(), "spec.http[0].route[1].weight");
        assert_eq!(FieldPath::parse("spec.http[0].route[1].weight"), path);
    }

    #[test]
    fn patterns_cover_subtrees_and_any_index() {
        let pattern = PathPattern::parse("spec.template.spec.containers[].resources.limits");
        let limits = FieldPath::parse("spec.template.spec.containers[3].resources.limits.cpu");
        assert!(pattern.covers(&limits));
        assert!(!pattern.covers(&FieldPath::parse(
            "spec.template.spec.containers[3].resources.requests"
        )));
        assert!(pattern.passes_through(&FieldPath::parse("spec.template.spec.containers[0]")));
        assert!(!pattern.passes_through(&FieldPath::parse("spec.selector")));
    }
}
