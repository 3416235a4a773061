//! Prometheus service discovery for what `weir up` runs, so a Prometheus
//! finds every pod (including those an HPA adds) and the gateway without a
//! hand-written target list: file_sd target lists in the state dir, replaced
//! atomically whenever they change, and the configuration that reads them
//! ([`prometheus_config`], printed by `weir prometheus-config`).
//!
//! File-based rather than HTTP discovery: Prometheus watches the files
//! (inotify) and picks a change up at once, and nothing is served on the
//! network — the state dir stays the only place that lists the pods, private
//! to its owner. Each pod is listed as Kubernetes' pod role lists it (one
//! target per declared container port, the IP alone when none, with the same
//! `__meta_kubernetes_*` labels), so the configuration's relabeling is the
//! well-known `kubernetes-pods` job's: keep pods annotated
//! `prometheus.io/scrape: "true"`, take `prometheus.io/port` and
//! `prometheus.io/path`, map the pod's labels, add `namespace` and `pod`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::pods::{Phase, Pod};

/// The directory of the target lists, inside the state dir.
pub const DIR: &str = "prometheus";
/// The pods' target list.
pub const PODS_FILE: &str = "pods.json";
/// The gateway's target list.
pub const GATEWAY_FILE: &str = "gateway.json";

/// One entry of a file_sd list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetGroup {
    /// `host:port` addresses (or a bare host).
    pub targets: Vec<String>,
    /// Labels of every target in the group.
    pub labels: BTreeMap<String, String>,
}

/// A label name as Prometheus' Kubernetes discovery writes it: every
/// character other than an ASCII letter, digit or `_` becomes `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The pods as Kubernetes' pod role lists them. Pending pods have no
/// container yet and are left out; running ones are listed whether ready or
/// not (`__meta_kubernetes_pod_ready` says which), terminating ones until
/// they are gone, as on a cluster.
pub fn pod_targets<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Vec<TargetGroup> {
    let mut groups = Vec::new();
    for pod in pods {
        if pod.phase == Phase::Pending {
            continue;
        }
        let id = &pod.id;
        let ip = id.ip.to_string();
        let mut labels = BTreeMap::from([
            (
                "__meta_kubernetes_namespace".to_owned(),
                id.namespace.clone(),
            ),
            ("__meta_kubernetes_pod_name".to_owned(), id.name.clone()),
            ("__meta_kubernetes_pod_ip".to_owned(), ip.clone()),
            (
                "__meta_kubernetes_pod_phase".to_owned(),
                "Running".to_owned(),
            ),
            (
                "__meta_kubernetes_pod_ready".to_owned(),
                pod.ready.to_string(),
            ),
            (
                "__meta_kubernetes_pod_controller_kind".to_owned(),
                "ReplicaSet".to_owned(),
            ),
            (
                "__meta_kubernetes_pod_controller_name".to_owned(),
                format!("{}-{}", id.deployment, id.template_hash),
            ),
            (
                "__meta_kubernetes_pod_container_name".to_owned(),
                id.container.name.clone(),
            ),
        ]);
        for (key, value) in &id.labels {
            let key = sanitize(key);
            labels.insert(format!("__meta_kubernetes_pod_label_{key}"), value.clone());
            labels.insert(
                format!("__meta_kubernetes_pod_labelpresent_{key}"),
                "true".to_owned(),
            );
        }
        for (key, value) in &id.annotations {
            let key = sanitize(key);
            labels.insert(
                format!("__meta_kubernetes_pod_annotation_{key}"),
                value.clone(),
            );
            labels.insert(
                format!("__meta_kubernetes_pod_annotationpresent_{key}"),
                "true".to_owned(),
            );
        }
        let ports = id.container.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            groups.push(TargetGroup {
                targets: vec![ip.clone()],
                labels,
            });
            continue;
        }
        for port in ports {
            let mut labels = labels.clone();
            labels.insert(
                "__meta_kubernetes_pod_container_port_number".to_owned(),
                port.container_port.to_string(),
            );
            labels.insert(
                "__meta_kubernetes_pod_container_port_protocol".to_owned(),
                port.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
            );
            if let Some(name) = &port.name {
                labels.insert(
                    "__meta_kubernetes_pod_container_port_name".to_owned(),
                    name.clone(),
                );
            }
            let address = match id.ip {
                std::net::IpAddr::V6(v6) => format!("[{v6}]:{}", port.container_port),
                std::net::IpAddr::V4(v4) => format!("{v4}:{}", port.container_port),
            };
            groups.push(TargetGroup {
                targets: vec![address],
                labels,
            });
        }
    }
    groups
}

/// The gateway's metrics endpoint as a target list (empty when it serves none).
pub fn gateway_targets(metrics: Option<SocketAddr>) -> Vec<TargetGroup> {
    metrics
        .map(|addr| TargetGroup {
            targets: vec![addr.to_string()],
            labels: BTreeMap::from([("namespace".to_owned(), "istio-system".to_owned())]),
        })
        .into_iter()
        .collect()
}

/// Where a state dir keeps a target list.
pub fn path(state_dir: &Path, file: &str) -> PathBuf {
    state_dir.join(DIR).join(file)
}

/// Replaces a target list atomically (a new file renamed over the old, so
/// Prometheus never reads half of one), private to its owner.
pub fn write(state_dir: &Path, file: &str, groups: &[TargetGroup]) -> std::io::Result<()> {
    let dir = state_dir.join(DIR);
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::to_vec_pretty(groups).map_err(std::io::Error::other)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    tmp.write_all(&json)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(file)).map_err(|e| e.error)?;
    Ok(())
}

/// A complete Prometheus configuration for a state dir's target lists: the
/// pods (`kubernetes-pods`, relabeled as on Kubernetes) and the gateway
/// (`weir-gateway`), scraped every `scrape_interval`.
pub fn prometheus_config(state_dir: &Path, scrape_interval: Duration) -> String {
    let interval = humantime::format_duration(scrape_interval).to_string();
    let pods = path(state_dir, PODS_FILE);
    let gateway = path(state_dir, GATEWAY_FILE);
    format!(
        r#"# Prometheus configuration for the weir runtime of {dir}
# (weir prometheus-config). The target lists are kept current by `weir up`;
# Prometheus re-reads them on every change.
global:
  scrape_interval: {interval}
  evaluation_interval: {interval}
scrape_configs:
# Pods, as the common Kubernetes pod job: those annotated
# prometheus.io/scrape: "true", at prometheus.io/port and prometheus.io/path,
# with their labels (app, version, ...), namespace and pod.
- job_name: kubernetes-pods
  file_sd_configs:
  - files: [{pods:?}]
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
    action: keep
    regex: "true"
  - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
    action: replace
    target_label: __metrics_path__
    regex: (.+)
  - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
    action: replace
    regex: ([^:]+)(?::\d+)?;(\d+)
    replacement: $1:$2
    target_label: __address__
  - action: labelmap
    regex: __meta_kubernetes_pod_label_(.+)
  - source_labels: [__meta_kubernetes_namespace]
    target_label: namespace
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: pod
# The ingress gateway's Istio metrics (istio_requests_total, ...).
- job_name: weir-gateway
  file_sd_configs:
  - files: [{gateway:?}]
"#,
        dir = state_dir.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testing::pod;

    #[test]
    fn pods_are_listed_as_kubernetes_pod_discovery_lists_them() {
        use weir_api::k8s_openapi::api::core::v1::ContainerPort;
        let mut running = pod("my-app-v2-abc-x1", "my-app-v2", "abc", Phase::Running);
        running.ready = true;
        running.id.labels = BTreeMap::from([
            ("app".to_owned(), "my-app".to_owned()),
            ("version".to_owned(), "v2.0.0".to_owned()),
            ("app.kubernetes.io/part-of".to_owned(), "shop".to_owned()),
        ]);
        running.id.annotations = BTreeMap::from([
            ("prometheus.io/scrape".to_owned(), "true".to_owned()),
            ("prometheus.io/port".to_owned(), "9101".to_owned()),
        ]);
        running.id.container.name = "my-app".into();
        running.id.container.ports = Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..ContainerPort::default()
            },
            ContainerPort {
                container_port: 8086,
                protocol: Some("UDP".into()),
                ..ContainerPort::default()
            },
        ]);
        let groups = pod_targets([&running]);
        assert_eq!(groups.len(), 2, "one target per declared port");
        assert_eq!(groups[0].targets, ["127.1.0.2:8080"]);
        assert_eq!(groups[1].targets, ["127.1.0.2:8086"]);
        let label = |g: &TargetGroup, k: &str| g.labels.get(k).cloned().unwrap_or_default();
        for (key, value) in [
            ("__meta_kubernetes_namespace", "default"),
            ("__meta_kubernetes_pod_name", "my-app-v2-abc-x1"),
            ("__meta_kubernetes_pod_ip", "127.1.0.2"),
            ("__meta_kubernetes_pod_ready", "true"),
            ("__meta_kubernetes_pod_phase", "Running"),
            ("__meta_kubernetes_pod_controller_kind", "ReplicaSet"),
            ("__meta_kubernetes_pod_controller_name", "my-app-v2-abc"),
            ("__meta_kubernetes_pod_container_name", "my-app"),
            ("__meta_kubernetes_pod_label_app", "my-app"),
            ("__meta_kubernetes_pod_label_version", "v2.0.0"),
            (
                "__meta_kubernetes_pod_label_app_kubernetes_io_part_of",
                "shop",
            ),
            ("__meta_kubernetes_pod_labelpresent_version", "true"),
            (
                "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
                "true",
            ),
            (
                "__meta_kubernetes_pod_annotation_prometheus_io_port",
                "9101",
            ),
            (
                "__meta_kubernetes_pod_annotationpresent_prometheus_io_port",
                "true",
            ),
            ("__meta_kubernetes_pod_container_port_number", "8080"),
            ("__meta_kubernetes_pod_container_port_name", "http"),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
        ] {
            assert_eq!(label(&groups[0], key), value, "{key}");
        }
        assert_eq!(
            label(&groups[1], "__meta_kubernetes_pod_container_port_protocol"),
            "UDP"
        );
        assert!(
            !groups[1]
                .labels
                .contains_key("__meta_kubernetes_pod_container_port_name")
        );
        // No ports: the address alone, as Kubernetes lists it.
        running.id.container.ports = None;
        assert_eq!(pod_targets([&running])[0].targets, ["127.1.0.2"]);
        // A pod without a container yet is not listed.
        let pending = pod("p", "d", "h", Phase::Pending);
        assert!(pod_targets([&pending]).is_empty());
    }

    #[test]
    fn label_names_are_sanitized_as_prometheus_does() {
        assert_eq!(sanitize("app.kubernetes.io/name"), "app_kubernetes_io_name");
        assert_eq!(sanitize("prometheus.io/scrape"), "prometheus_io_scrape");
        assert_eq!(sanitize("version"), "version");
    }

    #[test]
    fn the_gateway_is_listed_only_when_it_serves_metrics() {
        assert!(gateway_targets(None).is_empty());
        let groups = gateway_targets(Some("127.0.0.1:15090".parse().unwrap()));
        assert_eq!(groups[0].targets, ["127.0.0.1:15090"]);
    }

    #[test]
    fn the_target_list_is_replaced_whole_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let groups = gateway_targets(Some("127.0.0.1:1".parse().unwrap()));
        write(dir.path(), GATEWAY_FILE, &groups).unwrap();
        write(dir.path(), GATEWAY_FILE, &[]).unwrap();
        let file = path(dir.path(), GATEWAY_FILE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "[]");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let leftovers = std::fs::read_dir(dir.path().join(DIR)).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }
}
