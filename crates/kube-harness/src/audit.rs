//! The API server's own record of a client's requests: its audit log,
//! kept for one user only (the one [`crate::ControlPlane::recorded_kubeconfig`]
//! authenticates as), at the `Metadata` level (verb, URI with its query;
//! no bodies), one event per request, when it is received.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The user whose requests are recorded.
pub const RECORDED_USER: &str = "weir-recorded";

/// One request as the API server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The Kubernetes verb (`get`, `list`, `watch`, `patch`, `delete`, …).
    pub verb: String,
    /// The path, without the query.
    pub path: String,
    /// The query's parameters, decoded.
    pub query: Vec<(String, String)>,
}

impl Recorded {
    /// The value of query parameter `name`, if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `verb path`, for comparing a conversation at a glance.
    pub fn line(&self) -> String {
        format!("{} {}", self.verb, self.path)
    }
}

/// Writes the audit policy into `dir` and returns its path.
pub fn write_policy(dir: &Path) -> PathBuf {
    let path = dir.join("audit-policy.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [ResponseStarted, ResponseComplete, Panic]
rules:
- level: Metadata
  users: [{RECORDED_USER}]
- level: None
"
        ),
    )
    .expect("the audit policy");
    path
}

/// Where the API server writes its audit log.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("audit.log")
}

/// The recorded requests, in the order received.
pub fn read(dir: &Path) -> Vec<Recorded> {
    let text = std::fs::read_to_string(log_path(dir)).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("an audit event"))
        .map(|event| {
            let uri = event["requestURI"].as_str().expect("a request URI");
            let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
            Recorded {
                verb: event["verb"].as_str().unwrap_or_default().to_owned(),
                path: path.to_owned(),
                query: form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect(),
            }
        })
        .collect()
}
