//! Semantic checks: what a Kubernetes API server (`kube`) or Istio's
//! validating webhook (`istio`) would reject, and, across resources, what
//! `istioctl analyze` would report (`analyze`).

pub mod analyze;
pub mod ingress;
pub mod istio;
pub mod kube;
pub mod limits;
pub mod rollout;
pub mod unreachable;

use crate::diagnostic::Severity;
use crate::path::FieldPath;

/// A problem in one object, at a field.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The field.
    pub field: FieldPath,
    /// What is wrong.
    pub message: String,
    /// Whether it concerns only weir's embedded runtime (see [`crate::diagnostic::Diagnostic`]).
    pub embedded_only: bool,
}

/// Collects findings while walking one object.
#[derive(Default)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    /// Records an error at `field`.
    pub fn error(&mut self, field: &FieldPath, message: impl Into<String>) {
        self.0.push(Finding {
            severity: Severity::Error,
            field: field.clone(),
            message: message.into(),
            embedded_only: false,
        });
    }

    /// Records a warning at `field`.
    pub fn warning(&mut self, field: &FieldPath, message: impl Into<String>) {
        self.0.push(Finding {
            severity: Severity::Warning,
            field: field.clone(),
            message: message.into(),
            embedded_only: false,
        });
    }

    /// Records a warning at `field` that only weir's embedded runtime needs.
    pub fn embedded_warning(&mut self, field: &FieldPath, message: impl Into<String>) {
        self.0.push(Finding {
            severity: Severity::Warning,
            field: field.clone(),
            message: message.into(),
            embedded_only: true,
        });
    }
}
