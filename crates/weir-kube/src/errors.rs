//! API server answers turned into weir's errors, one exit code each
//! (`docs/CLI.md`), with the object and the server's own message.

use weir_api::backend::BackendError;
use weir_api::resource::ObjectRef;

/// What a failed call was about, for messages.
pub struct Call<'a> {
    /// The API server, as `Connection::server` names it.
    pub server: &'a str,
    /// The object, when the call was about one.
    pub object: Option<&'a ObjectRef>,
}

impl Call<'_> {
    /// Maps a kube error: 404 → not found (2), 400/422 → invalid (2),
    /// 409 → conflict (1), 401/403 → forbidden (1), transport → unreachable (3).
    pub fn error(&self, e: kube::Error) -> BackendError {
        let about = self
            .object
            .map_or_else(|| self.server.to_owned(), ToString::to_string);
        match e {
            kube::Error::Api(status) => match (status.code, self.object) {
                (404, Some(object)) => BackendError::NotFound(object.clone()),
                (409, Some(object)) => BackendError::Conflict {
                    object: object.clone(),
                    reason: status.message,
                },
                (400 | 422, _) => {
                    BackendError::Invalid(vec![format!("{about}: {}", status.message)])
                }
                (401 | 403, _) => BackendError::Forbidden(format!("{about}: {}", status.message)),
                (code, _) => BackendError::Failed(format!(
                    "{about}: the API server answered {code} {}: {}",
                    status.reason, status.message
                )),
            },
            kube::Error::HyperError(e) => self.unreachable(e.to_string()),
            kube::Error::Service(e) => self.unreachable(e.to_string()),
            other => BackendError::Failed(format!("{about}: {other}")),
        }
    }

    fn unreachable(&self, reason: String) -> BackendError {
        BackendError::Unreachable {
            what: self.server.to_owned(),
            reason,
        }
    }
}
