//! `weir top`: what the walkthrough's Grafana graph shows and more, live —
//! per version: request rate, share, p99 latency, error rate (from the
//! gateway's Istio metrics, over the last interval); per Deployment: ready
//! and desired replicas and HPA utilization against target; and, live, how
//! each changed over the last minutes (sparklines) and when a route's
//! weights changed (`top_story`). Over 600 lines because it is the
//! command's sampling and aggregation (rates, shares, p99 from histogram
//! deltas, per-Deployment rows) with their table tests; drawing is
//! `top_view.rs`, the story of changes `top_story.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use prometheus_parse::{Scrape, Value as PromValue};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use serde::Serialize;
use weir_api::backend::{Backend, BackendError};
use weir_api::resource::Kind;

use super::top_story::Story;
use crate::exit;
use crate::exit::fail;
use crate::output::wants_json;
use crate::target::{AnyBackend, TargetArgs};

/// `weir top` arguments.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one snapshot (after one interval) and exit, for pipes and scripts.
    #[arg(long)]
    pub once: bool,
    /// With --once: `json`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Refresh interval.
    #[arg(long, default_value = "1s", value_parser = weir_api::duration::parse)]
    pub interval: Duration,
    /// Namespace of the Deployments (default: the backend's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

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

/// Every rule with several destinations, and its weights.
async fn route_weights(backend: &AnyBackend, namespace: &str) -> Vec<RouteWeights> {
    let Ok(list) = backend.list(Kind::VirtualService, namespace).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for vs in list {
        let name = vs.object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for (i, rule) in vs.object["spec"]["http"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let destinations = rule["route"].as_array().cloned().unwrap_or_default();
            if destinations.len() < 2 {
                continue;
            }
            let weights: Vec<String> = destinations
                .iter()
                .map(|d| {
                    let who = d["destination"]["subset"]
                        .as_str()
                        .or_else(|| d["destination"]["host"].as_str())
                        .unwrap_or_default();
                    format!("{who} {}", d["weight"].as_i64().unwrap_or(0))
                })
                .collect();
            out.push(RouteWeights {
                route: format!("{name} http[{i}]"),
                weights: weights.join(", "),
            });
        }
    }
    out
}

/// Per version: (requests, 5xx answers, cumulative duration buckets by upper bound in µs).
type Counts = BTreeMap<String, (f64, f64, BTreeMap<u64, f64>)>;

/// How one exposition names its per-version request counts.
struct Dialect {
    /// The label naming the version.
    version: &'static str,
    /// The request counter.
    requests: &'static str,
    /// The label with the status code.
    code: &'static str,
    /// The latency histogram.
    duration: &'static str,
    /// Microseconds in the histogram's unit.
    micros_per_unit: f64,
}

/// The gateway's: Istio's standard metrics.
const ISTIO: Dialect = Dialect {
    version: "destination_version",
    requests: "istio_requests_total",
    code: "response_code",
    duration: "istio_request_duration_milliseconds",
    micros_per_unit: 1_000.0,
};

/// An application's own (my-app's, the Go app's): `http_requests_total` by
/// `version` and `code`, and `request_duration_seconds`.
const APP: Dialect = Dialect {
    version: "version",
    requests: "http_requests_total",
    code: "code",
    duration: "request_duration_seconds",
    micros_per_unit: 1_000_000.0,
};

/// Per version: (requests, 5xx, duration buckets by `le` in µs).
fn counts(text: &str, dialect: &Dialect) -> Counts {
    let mut out = Counts::new();
    let Ok(scrape) = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))) else {
        return out;
    };
    for s in &scrape.samples {
        let Some(version) = s.labels.get(dialect.version) else {
            continue;
        };
        let entry = out.entry(version.to_owned()).or_default();
        match &s.value {
            PromValue::Counter(v) | PromValue::Untyped(v) if s.metric == dialect.requests => {
                entry.0 += v;
                if s.labels
                    .get(dialect.code)
                    .is_some_and(|c| c.starts_with('5'))
                {
                    entry.1 += v;
                }
            }
            PromValue::Histogram(buckets) if s.metric == dialect.duration => {
                for b in buckets {
                    let le = if b.less_than.is_finite() {
                        (b.less_than * dialect.micros_per_unit) as u64
                    } else {
                        u64::MAX
                    };
                    *entry.2.entry(le).or_default() += b.count;
                }
            }
            _ => {}
        }
    }
    out
}

/// Prometheus' `histogram_quantile` over cumulative buckets keyed by their
/// upper bound in µs (`u64::MAX` for +Inf): linear interpolation within
/// the bucket, in milliseconds.
fn quantile(q: f64, buckets: &BTreeMap<u64, f64>) -> Option<f64> {
    let bounds: Vec<(f64, f64)> = buckets
        .iter()
        .map(|(le, c)| {
            (
                if *le == u64::MAX {
                    f64::INFINITY
                } else {
                    *le as f64 / 1000.0
                },
                *c,
            )
        })
        .collect();
    let total = bounds.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (upper, cumulative) in bounds {
        if cumulative >= rank {
            if upper.is_infinite() {
                return Some(lower);
            }
            let in_bucket = cumulative - below;
            let fraction = if in_bucket > 0.0 {
                (rank - below) / in_bucket
            } else {
                1.0
            };
            return Some(lower + (upper - lower) * fraction);
        }
        (lower, below) = (upper, cumulative);
    }
    None
}

/// `after − before` per version; a counter that went down was reset (its
/// process restarted), so all of `after` is new, as Prometheus' `rate` reads it.
fn delta(before: &Counts, after: &Counts) -> Counts {
    let since = |now: f64, then: f64| if now >= then { now - then } else { now };
    after
        .iter()
        .map(|(v, (req, err, buckets))| {
            let (req0, err0, buckets0) = before.get(v).cloned().unwrap_or_default();
            let db = buckets
                .iter()
                .map(|(le, c)| (*le, since(*c, buckets0.get(le).copied().unwrap_or(0.0))))
                .collect();
            (v.clone(), (since(*req, req0), since(*err, err0), db))
        })
        .collect()
}

/// Differences between two scrapes of the gateway, `seconds` apart.
pub fn version_rows(before: &str, after: &str, seconds: f64) -> Vec<VersionRow> {
    rows(
        &delta(&counts(before, &ISTIO), &counts(after, &ISTIO)),
        seconds,
    )
}

/// Differences between two scrapes of every pod (`(pod, text)`), `seconds`
/// apart, summed per version: a pod's counters are compared with its own,
/// so pods that start or stop between the scrapes count what they served.
pub fn app_version_rows(
    before: &[(String, String)],
    after: &[(String, String)],
    seconds: f64,
) -> Vec<VersionRow> {
    let mut sum = Counts::new();
    for (pod, text) in after {
        let then = before
            .iter()
            .find(|(p, _)| p == pod)
            .map(|(_, t)| counts(t, &APP))
            .unwrap_or_default();
        for (version, (req, err, buckets)) in delta(&then, &counts(text, &APP)) {
            let entry = sum.entry(version).or_default();
            entry.0 += req;
            entry.1 += err;
            for (le, c) in buckets {
                *entry.2.entry(le).or_default() += c;
            }
        }
    }
    rows(&sum, seconds)
}

/// Rows from per-version deltas over `seconds`.
fn rows(deltas: &Counts, seconds: f64) -> Vec<VersionRow> {
    let deltas: Vec<(String, f64, f64, BTreeMap<u64, f64>)> = deltas
        .iter()
        .filter(|(v, _)| v.as_str() != "unknown")
        .map(|(v, (req, err, buckets))| (v.clone(), *req, *err, buckets.clone()))
        .collect();
    let total: f64 = deltas.iter().map(|d| d.1).sum();
    deltas
        .into_iter()
        .map(|(version, req, err, buckets)| VersionRow {
            version,
            rps: req / seconds.max(1e-9),
            share: if total > 0.0 {
                req * 100.0 / total
            } else {
                0.0
            },
            p99_ms: quantile(0.99, &buckets),
            error_rate: if req > 0.0 { err * 100.0 / req } else { 0.0 },
        })
        .collect()
}

/// Whether every `matchLabels` entry of a Deployment's selector is on the pod.
fn selects(deployment: &serde_json::Value, pod: &serde_json::Value) -> bool {
    let wanted = deployment["spec"]["selector"]["matchLabels"].as_object();
    wanted.is_some_and(|w| w.iter().all(|(k, v)| &pod["metadata"]["labels"][k] == v))
}

async fn deployments(
    backend: &AnyBackend,
    namespace: &str,
) -> Result<Vec<DeploymentRow>, BackendError> {
    let object = |o: weir_api::backend::LiveObject| o.object;
    let deployments: Vec<_> = backend
        .list(Kind::Deployment, namespace)
        .await?
        .into_iter()
        .map(object)
        .collect();
    let hpas: Vec<_> = backend
        .list(Kind::HorizontalPodAutoscaler, namespace)
        .await?
        .into_iter()
        .map(object)
        .collect();
    let pods: Vec<_> = backend
        .list(Kind::Pod, namespace)
        .await?
        .into_iter()
        .map(object)
        .collect();
    let cpu = backend.pod_cpu(namespace).await.unwrap_or_default();
    Ok(deployments
        .iter()
        .map(|d| {
            let name = d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let hpa = hpas
                .iter()
                .find(|h| h["spec"]["scaleTargetRef"]["name"] == name.as_str());
            let measured: Vec<i64> = pods
                .iter()
                .filter(|p| selects(d, p))
                .filter_map(|p| cpu.get(p["metadata"]["name"].as_str()?).copied())
                .collect();
            DeploymentRow {
                cpu_millis: (!measured.is_empty()).then(|| measured.iter().sum()),
                ready: d["status"]["readyReplicas"].as_i64().unwrap_or(0),
                desired: d["spec"]["replicas"].as_i64().unwrap_or(1),
                cpu_utilization: hpa
                    .and_then(|h| h["status"]["currentCPUUtilizationPercentage"].as_i64()),
                cpu_target: hpa.map(|h| {
                    h["spec"]["targetCPUUtilizationPercentage"]
                        .as_i64()
                        .or_else(|| {
                            h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
                                .as_i64()
                        })
                        .unwrap_or(80)
                }),
                name,
            }
        })
        .collect())
}

/// The Rollouts of a namespace; none where the backend has no such kind
/// (a cluster without weir's CRD).
async fn rollouts(backend: &AnyBackend, namespace: &str) -> Vec<RolloutRow> {
    let Ok(list) = backend.list(Kind::Rollout, namespace).await else {
        return Vec::new();
    };
    list.into_iter()
        .map(|o| {
            let o = o.object;
            let steps = o["spec"]["steps"].as_array().map_or(0, Vec::len);
            RolloutRow {
                name: o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                phase: o["status"]["phase"]
                    .as_str()
                    .unwrap_or("Pending")
                    .to_owned(),
                step: o["status"]["currentStep"]
                    .as_u64()
                    .map_or("-".to_owned(), |s| {
                        format!("{}/{steps}", (s as usize).min(steps))
                    }),
                canary_weight: o["status"]["canaryWeight"].as_u64().unwrap_or(0),
            }
        })
        .collect()
}

/// One snapshot: two scrapes `interval` apart.
pub async fn snapshot(
    backend: &AnyBackend,
    namespace: &str,
    interval: Duration,
) -> Result<Snapshot, BackendError> {
    let before = backend.gateway_metrics().await?;
    let pods_before = backend.app_metrics(namespace).await?;
    let started = tokio::time::Instant::now();
    tokio::time::sleep(interval).await;
    let after = backend.gateway_metrics().await?;
    let pods_after = backend.app_metrics(namespace).await?;
    let seconds = started.elapsed().as_secs_f64();
    let gateway = version_rows(&before, &after, seconds);
    let (source, versions) = if gateway.iter().any(|v| v.rps > 0.0) {
        (TrafficSource::Gateway, gateway)
    } else {
        let pods = app_version_rows(&pods_before, &pods_after, seconds);
        if pods.iter().any(|v| v.rps > 0.0) {
            (TrafficSource::Pods, pods)
        } else {
            (TrafficSource::Gateway, gateway)
        }
    };
    Ok(Snapshot {
        source,
        versions,
        deployments: deployments(backend, namespace).await?,
        rollouts: rollouts(backend, namespace).await,
        weights: route_weights(backend, namespace).await,
    })
}

/// Runs `weir top`.
pub async fn run(args: TopArgs) -> u8 {
    let json = match wants_json(args.output.as_deref()) {
        Ok(json) => json,
        Err(code) => return code,
    };
    let backend = match args.target.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let namespace = backend.namespace(args.namespace.as_deref());
    if args.once {
        return match snapshot(&backend, &namespace, args.interval).await {
            Ok(s) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                } else {
                    for line in once_lines(&s) {
                        println!("{line}");
                    }
                }
                exit::OK
            }
            Err(e) => fail(e),
        };
    }
    if let Err(e) = backend.gateway_metrics().await {
        return fail(e);
    }
    let mut terminal = ratatui::init();
    let mut story = Story::default();
    let (code, why) = loop {
        if let Err(e) = terminal.draw(|f| super::top_view::draw(f, &story)) {
            break (exit::FAILED, format!("cannot draw: {e}"));
        }
        let quit = tokio::task::spawn_blocking(|| {
            event::poll(Duration::from_millis(10)).ok().filter(|&ready| ready).and_then(|_| event::read().ok()).is_some_and(|e| {
                matches!(e, Event::Key(k) if k.code == KeyCode::Char('q') || k.code == KeyCode::Esc || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)))
            })
        })
        .await
        .unwrap_or(true);
        if quit {
            break (exit::OK, "stopped: quit".to_owned());
        }
        match snapshot(&backend, &namespace, args.interval).await {
            Ok(s) => story.push(std::time::SystemTime::now(), s),
            Err(e) => break (e.exit_code(), format!("stopped: {e}")),
        }
    };
    ratatui::restore();
    eprintln!("weir top: {why}");
    code
}

#[cfg(test)]
mod tests {

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

    /// my-app's exposition, as a pod serves it.
    fn app(version: &str, ok: u64, errors: u64, fast: u64) -> String {
        format!(
            "# TYPE http_requests_total counter\n\
             http_requests_total{{code=\"200\",method=\"get\",version=\"{version}\"}} {ok}\n\
             http_requests_total{{code=\"500\",method=\"get\",version=\"{version}\"}} {errors}\n\
             # TYPE request_duration_seconds histogram\n\
             request_duration_seconds_bucket{{version=\"{version}\",le=\"0.001\"}} {fast}\n\
             request_duration_seconds_bucket{{version=\"{version}\",le=\"0.01\"}} {all}\n\
             request_duration_seconds_bucket{{version=\"{version}\",le=\"+Inf\"}} {all}\n\
             request_duration_seconds_sum{{version=\"{version}\"}} 0.1\n\
             request_duration_seconds_count{{version=\"{version}\"}} {all}\n",
            all = ok + errors
        )
    }

    #[test]
    fn pods_rates_are_summed_per_version_pod_by_pod() {
        let pod = |name: &str, text: String| (name.to_owned(), text);
        let before = vec![
            pod("v1-a", app("v1.0.0", 100, 0, 100)),
            pod("v1-b", app("v1.0.0", 50, 0, 50)),
            pod("v1-gone", app("v1.0.0", 70, 0, 70)),
        ];
        let after = vec![
            // +20 each on a and b; b restarted (its counter went down: 5 new).
            pod("v1-a", app("v1.0.0", 120, 0, 120)),
            pod("v1-b", app("v1.0.0", 5, 0, 5)),
            // A pod that started between the scrapes: all of its count.
            pod("v2-new", app("v2.0.0", 8, 2, 0)),
        ];
        let rows = app_version_rows(&before, &after, 2.0);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let v1 = &rows[0];
        assert_eq!(v1.version, "v1.0.0");
        assert!((v1.rps - 12.5).abs() < 1e-9, "{v1:?}");
        assert!((v1.share - 25.0 / 35.0 * 100.0).abs() < 1e-9, "{v1:?}");
        assert_eq!(v1.error_rate, 0.0);
        assert!(v1.p99_ms.is_some_and(|p| p <= 1.0), "{v1:?}");
        let v2 = &rows[1];
        assert!((v2.rps - 5.0).abs() < 1e-9, "{v2:?}");
        assert!((v2.error_rate - 20.0).abs() < 1e-9, "{v2:?}");
        assert!(v2.p99_ms.is_some_and(|p| p > 1.0 && p <= 10.0), "{v2:?}");
        // Nothing new: zero rates, not negative ones.
        let idle = app_version_rows(&after, &after, 1.0);
        assert!(idle.iter().all(|r| r.rps == 0.0), "{idle:?}");
    }

    use super::*;

    #[test]
    fn quantile_interpolates_like_prometheus() {
        let buckets: BTreeMap<u64, f64> = [(1000, 50.0), (5000, 100.0), (u64::MAX, 100.0)].into();
        assert_eq!(quantile(0.5, &buckets), Some(1.0));
        let p99 = quantile(0.99, &buckets).unwrap();
        assert!((p99 - 4.92).abs() < 1e-9, "{p99}");
    }
}
