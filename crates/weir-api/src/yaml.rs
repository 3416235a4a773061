//! YAML streams to documents, each with a map from field path to source
//! position and a typed, path-tracking deserializer.
//!
//! Positions come from a pass over the parser's events (serde-saphyr's own
//! errors carry a position but no field path, and semantic errors found after
//! deserializing have neither); the typed pass runs through
//! `serde_path_to_error` (for the path of a wrong value) and `serde_ignored`
//! (for fields the target type does not know).

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_saphyr::granit_parser::{Event, Parser};

use crate::path::{FieldPath, Segment};

/// One document of a multi-document stream.
#[derive(Clone, Copy, Debug)]
pub struct Document<'a> {
    /// The document's text, starting at its `---` line when it has one.
    pub text: &'a str,
    /// The 1-based line in the file where `text` starts.
    pub first_line: usize,
}

/// Splits a stream at `---` lines. A `---` in column 0 always starts a
/// document, so plain text splitting is exact and keeps line numbers.
pub fn split_documents(stream: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in stream.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        let is_marker =
            trimmed == "---" || trimmed.starts_with("--- ") || trimmed.starts_with("---\t");
        if is_marker && offset > start {
            docs.push(Document {
                text: &stream[start..offset],
                first_line: start_line,
            });
            start = offset;
            start_line = i + 1;
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &stream[start..],
        first_line: start_line,
    });
    docs.retain(|d| has_content(d.text));
    docs
}

/// Whether a document holds anything but markers, comments and blank lines.
fn has_content(text: &str) -> bool {
    text.lines().any(|line| {
        let t = line.trim();
        !(t.is_empty() || t.starts_with('#') || t == "---" || t == "...")
    })
}

/// A YAML syntax error, relative to its document.
#[derive(Clone, Debug)]
pub struct SyntaxError {
    /// 1-based line in the document.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The parser's words.
    pub message: String,
}

/// Where each field of one document is (1-based line and column, relative
/// to the document), as a tree of fields: every loaded object keeps one for
/// its later diagnostics, so it is stored compactly — one node per field,
/// not a full path per field (a thousand-VirtualService load held 27 MB of
/// paths).
#[derive(Clone, Debug, Default)]
pub struct Positions {
    /// Parents come before their children; the root, when present, is
    /// node 0.
    nodes: Vec<Node>,
    /// Keys a mapping repeats: the node of the first, and the line and
    /// column of each later one.
    repeated: Vec<(u32, u32, u32)>,
}

#[derive(Clone, Debug)]
struct Node {
    parent: u32,
    step: Step,
    line: u32,
    column: u32,
}

/// One step from a parent, as [`Segment`] but half its size.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Step {
    Root,
    Key(Box<str>),
    Index(u32),
}

impl Step {
    fn matches(&self, segment: &Segment) -> bool {
        match (self, segment) {
            (Step::Key(a), Segment::Key(b)) => **a == **b,
            (Step::Index(a), Segment::Index(b)) => usize::try_from(*a).is_ok_and(|a| a == *b),
            _ => false,
        }
    }
}

enum Frame {
    Map { node: u32, key: Option<u32> },
    Seq { node: u32, next: usize },
}

/// Builds the tree: a field seen twice (a duplicate key) keeps its first
/// position, as a map from path to position would, and the repeat is
/// noted.
#[derive(Default)]
struct TreeBuilder {
    nodes: Vec<Node>,
    children: HashMap<(u32, Step), u32>,
    repeated: Vec<(u32, u32, u32)>,
}

impl TreeBuilder {
    fn node(&mut self, parent: u32, step: Step, (line, column): (usize, usize)) -> u32 {
        let next = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        if let Step::Key(name) = &step
            && &**name != "?"
            && let Some(&first) = self.children.get(&(parent, step.clone()))
        {
            self.repeated.push((
                first,
                u32::try_from(line).unwrap_or(u32::MAX),
                u32::try_from(column).unwrap_or(u32::MAX),
            ));
            return first;
        }
        *self
            .children
            .entry((parent, step))
            .or_insert_with_key(|(parent, step)| {
                self.nodes.push(Node {
                    parent: *parent,
                    step: step.clone(),
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                    column: u32::try_from(column).unwrap_or(u32::MAX),
                });
                next
            })
    }
}

impl Positions {
    /// Reads the document's events; fails on a syntax error.
    pub fn of(document: &str) -> Result<Self, SyntaxError> {
        let mut tree = TreeBuilder::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut seen_root = false;
        for event in Parser::new_from_str(document) {
            let (event, span) = event.map_err(|e| SyntaxError {
                line: e.marker().line(),
                column: e.marker().col() + 1,
                message: e.info(),
            })?;
            let at = (span.start.line(), span.start.col() + 1);
            let (opens, is_node) = match event {
                Event::MappingStart(..) => (Some(true), true),
                Event::SequenceStart(..) => (Some(false), true),
                Event::Scalar(..) | Event::Alias(..) => (None, true),
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    (None, false)
                }
                _ => (None, false),
            };
            if !is_node {
                continue;
            }
            // Which node does this YAML node stand at? `None` for a mapping key.
            let mut complex_key = None;
            let node = match stack.last_mut() {
                None if seen_root => continue,
                None => {
                    seen_root = true;
                    Some(tree.node(u32::MAX, Step::Root, at))
                }
                Some(Frame::Map {
                    key: key @ None,
                    node,
                }) => {
                    let name: Box<str> = match &event {
                        Event::Scalar(text, ..) => text.as_ref().into(),
                        _ => "?".into(),
                    };
                    let parent = *node;
                    *key = Some(tree.node(parent, Step::Key(name), at));
                    if opens.is_some() {
                        complex_key = Some(tree.node(parent, Step::Key("?".into()), at));
                    }
                    None
                }
                Some(Frame::Map { key, .. }) => key.take(),
                Some(Frame::Seq { node, next }) => {
                    *next += 1;
                    let step = Step::Index(u32::try_from(*next - 1).unwrap_or(u32::MAX));
                    let parent = *node;
                    Some(tree.node(parent, step, at))
                }
            };
            if let Some(node) = complex_key {
                // A complex key: its insides have no field path of their own.
                stack.push(Frame::Seq { node, next: 0 });
            }
            if let Some(node) = node {
                match opens {
                    Some(true) => stack.push(Frame::Map { node, key: None }),
                    Some(false) => stack.push(Frame::Seq { node, next: 0 }),
                    None => {}
                }
            }
        }
        let mut nodes = tree.nodes;
        nodes.shrink_to_fit();
        Ok(Self {
            nodes,
            repeated: tree.repeated,
        })
    }

    /// Each key a mapping repeats: its field, and where the repeat is (the
    /// later value is the one read, as kubectl's YAML reading keeps it).
    pub fn repeated_keys(&self) -> Vec<(FieldPath, usize, usize)> {
        if self.repeated.is_empty() {
            return Vec::new();
        }
        let paths = self.paths();
        let all: Vec<(FieldPath, usize, usize)> = self
            .repeated
            .iter()
            .filter_map(|&(node, line, column)| {
                let path = paths.get(node as usize)?.clone();
                Some((path, line as usize, column as usize))
            })
            .collect();
        // The keys inside a repeated mapping repeat too; only the
        // outermost is the user's repeat.
        all.iter()
            .filter(|(path, ..)| {
                !all.iter().any(|(outer, ..)| {
                    outer.segments().len() < path.segments().len()
                        && path.segments().starts_with(outer.segments())
                })
            })
            .cloned()
            .collect()
    }

    /// The field path of every node, by index.
    fn paths(&self) -> Vec<FieldPath> {
        let mut paths: Vec<FieldPath> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let path = match (&node.step, paths.get(node.parent as usize)) {
                (Step::Key(k), Some(parent)) => parent.key(&**k),
                (Step::Index(i), Some(parent)) => parent.index(*i as usize),
                _ => FieldPath::root(),
            };
            paths.push(path);
        }
        paths
    }

    /// The position of `path`, or of its nearest ancestor that is present.
    pub fn locate(&self, path: &FieldPath) -> (usize, usize) {
        let Some(root) = self.nodes.first() else {
            return (1, 1);
        };
        let mut found = (0usize, root);
        for segment in path.segments() {
            let parent = found.0;
            let child = self.nodes[parent + 1..]
                .iter()
                .enumerate()
                .find(|(_, n)| n.parent as usize == parent && n.step.matches(segment));
            match child {
                Some((offset, node)) => found = (parent + 1 + offset, node),
                None => break,
            }
        }
        (found.1.line as usize, found.1.column as usize)
    }

    /// Every field present in the document, shallow ones first.
    pub fn fields(&self) -> Vec<FieldPath> {
        let mut fields: Vec<_> = self.paths().into_iter().filter(|p| !p.is_root()).collect();
        fields.sort_by(|a, b| {
            a.segments()
                .len()
                .cmp(&b.segments().len())
                .then_with(|| a.cmp(b))
        });
        fields
    }
}

/// A document deserialized into `T`, with the fields `T` does not know.
#[derive(Debug)]
pub struct Typed<T> {
    /// The value.
    pub value: T,
    /// Fields present in the document that `T` ignored.
    pub ignored: Vec<FieldPath>,
}

/// Why a document did not deserialize.
#[derive(Debug)]
pub struct TypeError {
    /// The field whose value was wrong (the parent, for a missing field).
    pub field: FieldPath,
    /// The position serde-saphyr reported, relative to the document.
    pub at: Option<(usize, usize)>,
    /// What was wrong.
    pub message: String,
}

/// How weir reads YAML: a repeated key's later value wins, as kubectl's
/// YAML reading (go-yaml v2 into a map) keeps it — the seed's repository
/// has a Deployment with `selector` twice — and the loader warns.
pub fn reading_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    options
}

/// Deserializes one document into `T`.
pub fn deserialize<T: DeserializeOwned>(document: &str) -> Result<Typed<T>, TypeError> {
    let mut ignored = Vec::new();
    let mut failed_at = FieldPath::root();
    let mut options = reading_options();
    options.with_snippet = false;
    let result = serde_saphyr::with_deserializer_from_str_with_options(document, options, |de| {
        let mut track = serde_path_to_error::Track::new();
        let tracked = serde_path_to_error::Deserializer::new(de, &mut track);
        let mut on_ignored = |path: serde_ignored::Path<'_>| ignored.push(ignored_path(&path));
        let watched = serde_ignored::Deserializer::new(tracked, &mut on_ignored);
        T::deserialize(watched).inspect_err(|_| failed_at = tracked_path(&track.path()))
    });
    match result {
        Ok(value) => Ok(Typed { value, ignored }),
        Err(e) => {
            let at = e
                .location()
                .map(|l| (l.line() as usize, l.column() as usize));
            let mut message = bare_message(&e);
            if let Some(expected) = scalar_type_name(&message)
                && let Some(found) = at.and_then(|(line, column)| token_at(document, line, column))
            {
                message = format!("invalid value {found}: expected {expected}");
            }
            Err(TypeError {
                field: failed_at,
                at,
                message,
            })
        }
    }
}

/// serde-saphyr's message without its `line N column M:` prefix: the caller
/// reports the position in its own, file-relative, form.
fn bare_message(error: &serde_saphyr::Error) -> String {
    let text = error.without_snippet().to_string();
    let text = text.lines().next().unwrap_or_default();
    let stripped = text
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
        .map_or(text, |(_, message)| message);
    // Some messages end with the position too; the caller reports its own.
    let stripped = match stripped.rfind(" at line ") {
        Some(i) if stripped[i..].contains(", column ") => &stripped[..i],
        _ => stripped,
    };
    stripped.trim().to_owned()
}

/// serde-saphyr says `invalid i64` for a scalar of the wrong type; this names
/// the type in words.
fn scalar_type_name(message: &str) -> Option<&'static str> {
    Some(match message.strip_prefix("invalid ")? {
        "i8" | "i16" | "i32" | "i64" => "an integer",
        "u8" | "u16" | "u32" | "u64" => "a non-negative integer",
        "f32" | "f64" => "a number",
        "bool" => "true or false",
        _ => return None,
    })
}

/// The scalar written at a 1-based line and column, for messages.
fn token_at(document: &str, line: usize, column: usize) -> Option<String> {
    let text = document.lines().nth(line.checked_sub(1)?)?;
    let rest = text.get(column.checked_sub(1)?..)?;
    let token = rest.split(" #").next().unwrap_or(rest).trim();
    (!token.is_empty()).then(|| format!("{token:?}"))
}

fn tracked_path(path: &serde_path_to_error::Path) -> FieldPath {
    let mut out = FieldPath::root();
    for segment in path.iter() {
        out = match segment {
            serde_path_to_error::Segment::Seq { index } => out.index(*index),
            serde_path_to_error::Segment::Map { key } => out.key(key.clone()),
            serde_path_to_error::Segment::Enum { variant } => out.key(variant.clone()),
            serde_path_to_error::Segment::Unknown => out,
        };
    }
    out
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> FieldPath {
    use serde_ignored::Path as P;
    match path {
        P::Root => FieldPath::root(),
        P::Seq { parent, index } => ignored_path(parent).index(*index),
        P::Map { parent, key } => ignored_path(parent).key(key.clone()),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// The mapping keys of a path, for messages (`containers[0].image` → `image`).
pub fn last_key(path: &FieldPath) -> &str {
    path.segments()
        .iter()
        .rev()
        .find_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_markers_and_keeps_line_numbers() {
        let stream = "a: 1\n---\nb: 2\n---\n# only a comment\n---\nc: 3\n";
        let docs = split_documents(stream);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].first_line, 1);
        assert_eq!(docs[1].first_line, 2);
        assert_eq!(docs[2].first_line, 6);
        assert!(docs[2].text.contains("c: 3"));
    }

    #[test]
    fn a_marker_inside_a_block_scalar_is_not_at_column_0() {
        let stream = "a: |\n  ---\n  text\n";
        assert_eq!(split_documents(stream).len(), 1);
    }

    #[test]
    fn positions_name_keys_and_sequence_items() {
        let doc = "spec:\n  http:\n  - route:\n    - weight: 90\n    - weight: 10\n";
        let positions = Positions::of(doc).unwrap();
        assert_eq!(
            positions.locate(&FieldPath::parse("spec.http[0].route[1].weight")),
            (5, 7)
        );
        assert_eq!(positions.locate(&FieldPath::parse("spec.http[0]")), (3, 5));
        // Absent fields fall back to the nearest present ancestor.
        assert_eq!(
            positions.locate(&FieldPath::parse("spec.http[0].timeout")),
            (3, 5)
        );
    }

    #[test]
    fn a_duplicate_key_keeps_its_first_position_and_fields_list_shallow_first() {
        let doc = "b:\n  x: 1\na: [7, 8]\nb:\n  y: 2\n";
        let positions = Positions::of(doc).unwrap();
        assert_eq!(positions.locate(&FieldPath::parse("b")), (1, 1));
        assert_eq!(positions.locate(&FieldPath::parse("b.y")), (5, 3));
        assert_eq!(positions.locate(&FieldPath::parse("a[1]")), (3, 8));
        assert_eq!(positions.locate(&FieldPath::parse("c.d")), (1, 1));
        let fields: Vec<String> = positions.fields().iter().map(|f| f.to_string()).collect();
        assert_eq!(fields, ["a", "b", "a[0]", "a[1]", "b.x", "b.y"]);
        let repeated: Vec<(String, usize, usize)> = positions
            .repeated_keys()
            .into_iter()
            .map(|(f, l, c)| (f.to_string(), l, c))
            .collect();
        assert_eq!(repeated, [("b".to_owned(), 4, 1)]);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = Positions::of("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[derive(serde::Deserialize, Debug)]
    struct Sample {
        #[allow(dead_code)]
        weight: u32,
    }

    #[test]
    fn typed_errors_carry_the_field_path_and_ignored_fields_are_listed() {
        let err = deserialize::<Vec<Sample>>("- weight: 1\n- weight: ninety\n").unwrap_err();
        assert_eq!(err.field.to_string(), "[1].weight");
        assert_eq!(err.at.map(|a| a.0), Some(2));
        assert!(
            err.message.contains("u32") || err.message.contains("invalid"),
            "{}",
            err.message
        );

        let ok = deserialize::<Sample>("weight: 1\nwieght: 2\n").unwrap();
        assert_eq!(ok.ignored, vec![FieldPath::parse("wieght")]);
    }
}
