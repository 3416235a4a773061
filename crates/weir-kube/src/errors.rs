//! API server answers turned into weir's errors, one exit code each
//! (`docs/CLI.md`), with the object and the server's own message — read as
//! the API server means them, not by the HTTP code alone.

use kube::core::Status;
use weir_api::backend::BackendError;
use weir_api::resource::ObjectRef;

/// What a failed call was about, for messages.
pub struct Call<'a> {
    /// The API server, as `Connection::server` names it.
    pub server: &'a str,
    /// The object, when the call was about one.
    pub object: Option<&'a ObjectRef>,
}

/// How the API server answered a failed call, by what it means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The object does not exist (a `Status` with reason `NotFound` about it).
    ObjectNotFound,
    /// The namespace the object would go into does not exist.
    NamespaceNotFound(String),
    /// The URL is not served at all: a 404 that is not a `Status` (the API
    /// server's plain `404 page not found`) — a missing CRD or a version
    /// the server does not serve.
    PathNotServed,
    /// A JSON patch whose `test` failed: a 422 without causes whose
    /// message is [`PATCH_NOT_APPLICABLE`].
    TestFailed,
    /// The object was refused: schema validation (422 with causes), an
    /// admission policy (422 with causes) or an admission webhook (400, or
    /// any code it chose, 422 without causes included).
    Rejected,
    /// Another field manager owns a field being set (409).
    Conflict,
    /// The credentials may not do this (401, 403).
    Forbidden,
    /// 503: the server (often an aggregated API such as `metrics.k8s.io`
    /// whose backing service is not ready) cannot answer now.
    NotReady,
    /// Anything else.
    Other,
}

/// How kube-apiserver words a JSON patch it cannot apply to the stored
/// object (a failed `test`): a 422 `Invalid` with this message and no
/// causes (`apiserver/pkg/endpoints/handlers/patch.go`). A webhook that
/// refuses with a 422 of its own has its name in the message instead.
pub const PATCH_NOT_APPLICABLE: &str =
    "the server rejected our request due to an error in our request";

/// Classifies a failed answer.
pub fn classify(status: &Status) -> Failure {
    let is_status = status.reason != "Failed to parse error data";
    let details = status.details.as_ref();
    match status.code {
        404 if !is_status => Failure::PathNotServed,
        404 => match details {
            Some(d) if d.kind == "namespaces" && d.group.is_empty() => {
                Failure::NamespaceNotFound(d.name.clone())
            }
            _ => Failure::ObjectNotFound,
        },
        422 if details.is_none_or(|d| d.causes.is_empty())
            && status.message.starts_with(PATCH_NOT_APPLICABLE) =>
        {
            Failure::TestFailed
        }
        400 | 422 => Failure::Rejected,
        409 => Failure::Conflict,
        401 | 403 => Failure::Forbidden,
        503 => Failure::NotReady,
        _ => Failure::Other,
    }
}

/// The field manager a conflict names (`conflict with "weir" using
/// networking.istio.io/v1`, as the API server words each cause).
pub fn conflicting_manager(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("conflict with \"")?;
    rest.split_once('"').map(|(manager, _)| manager)
}

/// Whether `weir apply` takes over the fields of a 409 without being told
/// to (`--force-conflicts`), so that the file wins as it does on the
/// embedded runtime and with `kubectl apply`: when every conflicting field
/// was last set by weir itself (`weir route` patches as an update by
/// `own_manager`, a different owner than its applies), or is the
/// `spec.replicas` of a Deployment an HPA in the same manifests scales.
/// Conflicts with any other writer still need the flag.
pub fn file_wins(status: &Status, own_manager: &str, scaled_by_hpa: bool) -> bool {
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    status.code == 409
        && !causes.is_empty()
        && causes.iter().all(|c| {
            conflicting_manager(&c.message) == Some(own_manager)
                || (scaled_by_hpa && c.field == ".spec.replicas")
        })
}

impl Call<'_> {
    /// Maps a kube error: 404 → not found (2; a missing namespace says so),
    /// a plain 404 → the API is not served (1), 400/422 → invalid (2),
    /// 409 → conflict (1), 401/403 → forbidden (1), 503 → not ready (1),
    /// transport → unreachable (3).
    pub fn error(&self, e: kube::Error) -> BackendError {
        match e {
            kube::Error::Api(status) => self.status_error(&status),
            kube::Error::HyperError(e) => self.unreachable(e.to_string()),
            kube::Error::Service(e) => self.unreachable(e.to_string()),
            other => BackendError::Failed(format!("{}: {other}", self.about())),
        }
    }

    /// Maps a failed answer, as [`Call::error`].
    pub fn status_error(&self, status: &Status) -> BackendError {
        let about = self.about();
        match (classify(status), self.object) {
            (Failure::ObjectNotFound, Some(object)) => BackendError::NotFound(object.clone()),
            (Failure::NamespaceNotFound(namespace), _) => BackendError::Invalid(vec![format!(
                "{about}: namespace {namespace:?} does not exist on {}: create it first (kubectl create namespace {namespace})",
                self.server
            )]),
            (Failure::PathNotServed, _) => BackendError::Failed(format!(
                "{about}: the API server does not serve this kind at this version (it answered {:?})",
                status.message
            )),
            (Failure::Conflict, Some(object)) => BackendError::Conflict {
                object: object.clone(),
                reason: status.message.clone(),
            },
            (Failure::TestFailed | Failure::Rejected, _) => {
                BackendError::Invalid(vec![format!("{about}: {}", status.message)])
            }
            (Failure::Forbidden, _) => {
                BackendError::Forbidden(format!("{about}: {}", status.message))
            }
            (Failure::NotReady, _) => BackendError::Failed(format!(
                "{about}: not ready: the API server answered 503 ({}); an aggregated API such as metrics.k8s.io answers so while its server is not ready",
                status.message
            )),
            (_, _) => BackendError::Failed(format!(
                "{about}: the API server answered {} {}: {}",
                status.code, status.reason, status.message
            )),
        }
    }

    fn about(&self) -> String {
        self.object
            .map_or_else(|| self.server.to_owned(), ToString::to_string)
    }

    fn unreachable(&self, reason: String) -> BackendError {
        BackendError::Unreachable {
            what: self.server.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::core::response::{StatusCause, StatusDetails};

    use super::*;

    fn status(code: u16, reason: &str, details: Option<StatusDetails>) -> Status {
        Status {
            code,
            reason: reason.to_owned(),
            message: "m".to_owned(),
            details,
            ..Status::default()
        }
    }

    fn details(kind: &str, name: &str, causes: usize) -> Option<StatusDetails> {
        Some(StatusDetails {
            kind: kind.to_owned(),
            name: name.to_owned(),
            group: String::new(),
            uid: String::new(),
            retry_after_seconds: 0,
            causes: (0..causes)
                .map(|_| StatusCause {
                    reason: "FieldValueInvalid".to_owned(),
                    message: "bad".to_owned(),
                    field: "spec.x".to_owned(),
                })
                .collect(),
        })
    }

    fn conflict(causes: &[(&str, &str)]) -> Status {
        let mut s = status(409, "Conflict", details("deployments", "my-app-v1", 0));
        if let Some(d) = s.details.as_mut() {
            d.causes = causes
                .iter()
                .map(|(manager, field)| StatusCause {
                    reason: "FieldManagerConflict".to_owned(),
                    message: format!("conflict with \"{manager}\" using apps/v1"),
                    field: (*field).to_owned(),
                })
                .collect();
        }
        s
    }

    #[test]
    fn the_file_wins_over_weirs_own_changes_and_an_hpas_replicas_only() {
        let hpa = "kube-controller-manager";
        let cases = [
            (conflict(&[("weir", ".spec.http")]), false, true),
            (conflict(&[(hpa, ".spec.replicas")]), true, true),
            (conflict(&[(hpa, ".spec.replicas")]), false, false),
            (
                conflict(&[("weir", ".spec.http"), ("kubectl-edit", ".spec.hosts")]),
                false,
                false,
            ),
            (
                conflict(&[("kubectl-client-side-apply", ".spec.selector")]),
                true,
                false,
            ),
            (conflict(&[]), true, false),
            (status(422, "Invalid", None), true, false),
        ];
        for (i, (status, scaled, expected)) in cases.into_iter().enumerate() {
            assert_eq!(file_wins(&status, "weir", scaled), expected, "case {i}");
        }
        assert_eq!(
            conflicting_manager(
                "conflict with \"kube-controller-manager\" with subresource \"scale\" using apps/v1"
            ),
            Some("kube-controller-manager")
        );
    }

    #[test]
    fn answers_are_read_as_the_api_server_means_them() {
        let plain =
            Status::failure("404 page not found", "Failed to parse error data").with_code(404);
        let cases = [
            (
                status(404, "NotFound", details("virtualservices", "my-app", 0)),
                Failure::ObjectNotFound,
            ),
            (status(404, "NotFound", None), Failure::ObjectNotFound),
            (
                status(404, "NotFound", details("namespaces", "canary", 0)),
                Failure::NamespaceNotFound("canary".into()),
            ),
            (plain, Failure::PathNotServed),
            (
                Status {
                    message: PATCH_NOT_APPLICABLE.to_owned(),
                    ..status(422, "Invalid", details("", "", 0))
                },
                Failure::TestFailed,
            ),
            // A webhook that refuses with a 422 and no causes.
            (
                Status {
                    message: "admission webhook \"weights.example.com\" denied the request: weights are frozen".to_owned(),
                    ..status(422, "Invalid", None)
                },
                Failure::Rejected,
            ),
            (status(422, "Invalid", None), Failure::Rejected),
            (
                status(422, "Invalid", details("virtualservices", "my-app", 1)),
                Failure::Rejected,
            ),
            (status(400, "BadRequest", None), Failure::Rejected),
            (status(409, "Conflict", None), Failure::Conflict),
            (status(403, "Forbidden", None), Failure::Forbidden),
            (status(401, "Unauthorized", None), Failure::Forbidden),
            (status(503, "ServiceUnavailable", None), Failure::NotReady),
            (status(500, "InternalError", None), Failure::Other),
        ];
        for (status, expected) in cases {
            assert_eq!(classify(&status), expected, "{status:?}");
        }
    }
}
