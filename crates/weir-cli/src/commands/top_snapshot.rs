//! What `weir top` shows, as data: per version, per Deployment, per
//! Rollout and per weighted route, and the text of `--once`. Gathered by
//! `top.rs`, told as a story by `top_story.rs`, drawn by `top_view.rs`.

use serde::Serialize;

/// One version's traffic over the last interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VersionRow {
    /// `destination_version`.
    pub version: String,
    /// Requests per second.
    pub rps: f64,
    /// Share of all requests, percent.
    pub share: f64,
    /// 99th percentile latency, ms (interpolated within Istio's buckets).
    pub p99_ms: Option<f64>,
    /// 5xx answers, percent.
    pub error_rate: f64,
}

/// One Rollout's progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RolloutRow {
    /// Its name.
    pub name: String,
    /// Its phase (`Pending` before the controller saw it).
    pub phase: String,
    /// The current step, of how many.
    pub step: String,
    /// The canary's served weight, percent.
    pub canary_weight: u64,
}

/// One Deployment's scale.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeploymentRow {
    /// Name.
    pub name: String,
    /// Ready replicas.
    pub ready: i64,
    /// Desired replicas.
    pub desired: i64,
    /// HPA utilization, percent, when measured.
    pub cpu_utilization: Option<i64>,
    /// HPA target, percent.
    pub cpu_target: Option<i64>,
    /// CPU use of its pods, millicores (the embedded runtime's measurement,
    /// or metrics.k8s.io on a cluster), when measured.
    pub cpu_millis: Option<i64>,
}

/// `weir top --once` as text: numbers with their units, `<unknown>` for
/// what is not measured yet (as `kubectl get hpa` writes it), `-` for
/// what does not exist (no HPA, no p99 without requests).
pub fn once_lines(s: &Snapshot) -> Vec<String> {
    let mut lines = Vec::new();
    for v in &s.versions {
        lines.push(format!(
            "{:<12} {:>8.1} req/s {:>6.1}%  p99 {:>8}  5xx {:.2}%{}",
            v.version,
            v.rps,
            v.share,
            v.p99_ms.map_or("-".into(), |p| format!("{p:.2}ms")),
            v.error_rate,
            match s.source {
                TrafficSource::Gateway => "",
                TrafficSource::Pods => "  (pods)",
            }
        ));
    }
    for d in &s.deployments {
        let hpa = match (d.cpu_utilization, d.cpu_target) {
            (_, None) => "-".to_owned(),
            (Some(u), Some(t)) => format!("{u}%/{t}%"),
            (None, Some(t)) => format!("<unknown>/{t}%"),
        };
        let cpu = d
            .cpu_millis
            .map_or("<unknown>".to_owned(), |m| format!("{m}m"));
        lines.push(format!(
            "{:<12} {}/{} ready  hpa cpu {hpa}  pods cpu {cpu}",
            d.name, d.ready, d.desired
        ));
    }
    for r in &s.rollouts {
        lines.push(format!(
            "rollout {:<12} {}  step {}  canary {} %",
            r.name, r.phase, r.step, r.canary_weight
        ));
    }
    lines
}

/// Where the per-version rows were measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficSource {
    /// The gateway's Istio metrics (Istio routes and Ingresses).
    #[default]
    Gateway,
    /// The pods' own `http_requests_total`, as the repository's Grafana
    /// dashboard reads it: for traffic that reaches the pods through a
    /// Service, which the gateway does not see request by request.
    Pods,
}

impl TrafficSource {
    /// Where the rows come from, for a title.
    pub fn describe(self) -> &'static str {
        match self {
            TrafficSource::Gateway => "the gateway's istio_requests_total",
            TrafficSource::Pods => "the pods' own http_requests_total",
        }
    }
}

/// Everything `weir top` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// Where `versions` was measured: the gateway when it saw requests in
    /// the interval, else the pods.
    pub source: TrafficSource,
    /// Per version.
    pub versions: Vec<VersionRow>,
    /// Per Deployment.
    pub deployments: Vec<DeploymentRow>,
    /// Per Rollout.
    pub rollouts: Vec<RolloutRow>,
    /// Each weighted route's weights.
    pub weights: Vec<RouteWeights>,
}

/// The weights of one VirtualService rule with several destinations.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RouteWeights {
    /// `VIRTUALSERVICE http[i]`.
    pub route: String,
    /// `v1 90, v2 10`.
    pub weights: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_prints_numbers_with_units_never_options() {
        let deployment =
            |name: &str, u: Option<i64>, t: Option<i64>, m: Option<i64>| DeploymentRow {
                name: name.into(),
                ready: 1,
                desired: 2,
                cpu_utilization: u,
                cpu_target: t,
                cpu_millis: m,
            };
        let s = Snapshot {
            versions: vec![VersionRow {
                version: "v1.0.0".into(),
                rps: 12.34,
                share: 90.0,
                p99_ms: None,
                error_rate: 0.0,
            }],
            deployments: vec![
                deployment("measured", Some(12), Some(50), Some(10)),
                deployment("warming", None, Some(50), None),
                deployment("no-hpa", None, None, Some(3)),
            ],
            ..Snapshot::default()
        };
        let lines = once_lines(&s);
        assert_eq!(
            lines[0],
            "v1.0.0           12.3 req/s   90.0%  p99        -  5xx 0.00%"
        );
        assert_eq!(
            lines[1],
            "measured     1/2 ready  hpa cpu 12%/50%  pods cpu 10m"
        );
        assert_eq!(
            lines[2],
            "warming      1/2 ready  hpa cpu <unknown>/50%  pods cpu <unknown>"
        );
        assert_eq!(lines[3], "no-hpa       1/2 ready  hpa cpu -  pods cpu 3m");
        assert!(
            lines
                .iter()
                .all(|l| !l.contains("Some(") && !l.contains("None"))
        );
        let from_pods = once_lines(&Snapshot {
            source: TrafficSource::Pods,
            ..s
        });
        assert_eq!(
            from_pods[0],
            "v1.0.0           12.3 req/s   90.0%  p99        -  5xx 0.00%  (pods)"
        );
    }
}
