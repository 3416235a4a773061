//! `weir top`: what the walkthrough's Grafana graph shows and more, live —
//! per version: request rate, share, p99 latency, error rate (from the
//! gateway's Istio metrics, over the last interval); per Deployment: ready
//! and desired replicas and HPA utilization against target; and, live, how
//! each changed over the last minutes (sparklines) and when a route's
//! weights changed (`top_story`). This module gathers: the
//! per-version rows from two scrapes are `top_metrics.rs`, the snapshot's
//! shape and `--once` text `top_snapshot.rs`, drawing `top_view.rs`, the
//! story of changes `top_story.rs`.

use std::time::Duration;

use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use weir_api::backend::{Backend, BackendError};
use weir_api::resource::Kind;

use super::top_metrics::{app_version_rows, version_rows};
use super::top_snapshot::{
    DeploymentRow, RolloutRow, RouteWeights, Snapshot, TrafficSource, once_lines,
};
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
