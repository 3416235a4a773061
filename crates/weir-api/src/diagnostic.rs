//! Errors and warnings about manifests, each naming the file, the line and
//! column, and the field, as `file:line:col: error: field: message`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::path::FieldPath;

/// How bad a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The manifest is accepted; something in it deserves attention.
    Warning,
    /// The manifest is rejected; nothing is applied.
    Error,
}

/// A position in a manifest file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePos {
    /// The file, as the user named it (or as found under a directory).
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if self.column > 0 {
            write!(f, ":{}", self.column)?;
        }
        Ok(())
    }
}

/// One problem found in the manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where it is.
    pub pos: SourcePos,
    /// The resource it is about, as `kind/name`, when known.
    pub object: Option<String>,
    /// The field it is about; the root when it is about the whole document.
    pub field: FieldPath,
    /// What is wrong, in words.
    pub message: String,
    /// Whether it concerns only weir's embedded runtime (a field only a
    /// cluster acts on, an image with no local program): not shown when the
    /// manifests go to a Kubernetes cluster, where it would be noise.
    pub embedded_only: bool,
}

impl Diagnostic {
    /// Whether this diagnostic rejects the manifests.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {level}: ", self.pos)?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if !self.field.is_root() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// The problems found while loading, errors first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// Adds all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Whether any of them is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// All of them, errors first, then by file and line.
    pub fn sorted(mut self) -> Vec<Diagnostic> {
        self.0.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.pos.file.cmp(&b.pos.file))
                .then_with(|| a.pos.line.cmp(&b.pos.line))
                .then_with(|| a.pos.column.cmp(&b.pos.column))
        });
        self.0
    }

    /// Iterates in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A file-level position for problems that are not inside a document
/// (an unreadable file, a missing path).
pub fn file_pos(file: &Path) -> SourcePos {
    SourcePos {
        file: Arc::from(PathBuf::from(file)),
        line: 1,
        column: 0,
    }
}
