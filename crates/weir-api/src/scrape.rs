//! Where a pod's own metrics are, by the annotations the seed repository's
//! Prometheus configuration reads (`prometheus.io/scrape: "true"`,
//! `prometheus.io/port`, `prometheus.io/path`): what `weir top` reads the
//! application's `http_requests_total` from, as the repository's Grafana
//! dashboard does.

use serde_json::Value;

/// One pod's metrics endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// The pod's name.
    pub pod: String,
    /// The pod's IP, when it has one.
    pub ip: Option<String>,
    /// The port (the annotation's number, or a container port it names).
    pub port: u16,
    /// The path, `/metrics` unless annotated.
    pub path: String,
}

/// The endpoint a running pod (Kubernetes' JSON) asks to be scraped at;
/// `None` when it does not ask, is not running, or names no usable port.
pub fn scrape_target(pod: &Value) -> Option<ScrapeTarget> {
    let annotations = &pod["metadata"]["annotations"];
    if annotations["prometheus.io/scrape"].as_str() != Some("true")
        || pod["status"]["phase"].as_str() != Some("Running")
        || pod["metadata"].get("deletionTimestamp").is_some()
    {
        return None;
    }
    let declared = annotations["prometheus.io/port"].as_str()?.trim();
    let port = match declared.parse::<u16>() {
        Ok(port) => port,
        Err(_) => pod["spec"]["containers"]
            .as_array()?
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| p["name"].as_str() == Some(declared))?["containerPort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())?,
    };
    if port == 0 {
        return None;
    }
    let path = match annotations["prometheus.io/path"].as_str() {
        Some(p) if p.starts_with('/') => p.to_owned(),
        _ => "/metrics".to_owned(),
    };
    Some(ScrapeTarget {
        pod: pod["metadata"]["name"].as_str()?.to_owned(),
        ip: pod["status"]["podIP"].as_str().map(str::to_owned),
        port,
        path,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(annotations: Value, phase: &str) -> Value {
        json!({
            "metadata": {"name": "my-app-v1-abc", "annotations": annotations},
            "spec": {"containers": [{"ports": [{"name": "metrics", "containerPort": 9101}]}]},
            "status": {"phase": phase, "podIP": "127.0.0.7"}
        })
    }

    #[test]
    fn pods_are_scraped_where_their_annotations_say() {
        let target = |port: u16, path: &str| {
            Some(ScrapeTarget {
                pod: "my-app-v1-abc".into(),
                ip: Some("127.0.0.7".into()),
                port,
                path: path.into(),
            })
        };
        let rows = [
            (
                json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9101"}),
                "Running",
                target(9101, "/metrics"),
            ),
            (
                json!({"prometheus.io/scrape": "true", "prometheus.io/port": "metrics", "prometheus.io/path": "/stats"}),
                "Running",
                target(9101, "/stats"),
            ),
            (
                json!({"prometheus.io/scrape": "false", "prometheus.io/port": "9101"}),
                "Running",
                None,
            ),
            (json!({"prometheus.io/scrape": "true"}), "Running", None),
            (
                json!({"prometheus.io/scrape": "true", "prometheus.io/port": "web"}),
                "Running",
                None,
            ),
            (
                json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9101"}),
                "Pending",
                None,
            ),
            (
                json!({"prometheus.io/scrape": "true", "prometheus.io/port": "0"}),
                "Running",
                None,
            ),
        ];
        for (annotations, phase, want) in rows {
            assert_eq!(
                scrape_target(&pod(annotations.clone(), phase)),
                want,
                "{annotations} {phase}"
            );
        }
        let mut terminating = pod(
            json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9101"}),
            "Running",
        );
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(scrape_target(&terminating), None);
    }
}
