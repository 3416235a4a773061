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
    /// The document as written, as JSON: what a backend that stores
    /// manifests elsewhere (the Kubernetes API) sends on, unchanged.
    pub document: serde_json::Value,
    pub(crate) positions: Positions,
}

impl Object {
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
