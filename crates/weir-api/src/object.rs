//! One loaded object: the typed resource, the document as written, and
//! where each of its fields is, so any later check can name file and line.

use crate::diagnostic::{Diagnostic, Severity, SourcePos};
use crate::path::FieldPath;
use crate::resource::Resource;
use crate::yaml::Positions;

/// One loaded object and where it came from.
#[derive(Clone, Debug)]
pub struct Object {
    /// The typed resource.
    pub resource: Resource,
    /// The start of its document.
    pub pos: SourcePos,
    /// The document as written, as compact JSON text: what a backend that
    /// stores manifests elsewhere (the Kubernetes API) sends on, unchanged.
    /// Kept as text, not as a `serde_json::Value` (an order of magnitude
    /// larger): a gateway loading a thousand VirtualServices holds every
    /// document until the load ends.
    pub(crate) document: Box<serde_json::value::RawValue>,
    pub(crate) positions: Positions,
}

impl Object {
    /// The document as written, as JSON.
    pub fn document(&self) -> serde_json::Value {
        // Cannot fail: the text was written from a `Value` that the YAML
        // reader's budget kept within 64 levels, below serde_json's 128.
        serde_json::from_str(self.document.get()).unwrap_or_default()
    }

    /// Where `field` of this object is written (or its nearest present parent).
    pub fn pos_of(&self, field: &FieldPath) -> SourcePos {
        let (line, column) = self.positions.locate(field);
        SourcePos {
            file: self.pos.file.clone(),
            line: self.pos.line + line - 1,
            column,
        }
    }

    /// A diagnostic about `field` of this object.
    pub fn diagnostic(&self, severity: Severity, field: FieldPath, message: String) -> Diagnostic {
        Diagnostic {
            severity,
            pos: self.pos_of(&field),
            object: Some(self.resource.object_ref().to_string()),
            field,
            message,
            embedded_only: false,
        }
    }
}
