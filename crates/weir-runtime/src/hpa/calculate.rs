//! `GetResourceReplicas` of Kubernetes' `replica_calculator.go`: the
//! recommendation from one CPU metric, with pod grouping (ignored, unready,
//! missing), integer-truncated utilization, the tolerance band and the
//! rebalancing of missing and unready pods.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::spec::{Settings, Target, Tolerances};

/// One pod as the HPA sees it.
#[derive(Clone, Debug)]
pub struct PodSample {
    /// The pod's name.
    pub name: String,
    /// Phase `Pending` (not started yet).
    pub pending: bool,
    /// Phase `Failed`, or being deleted: dropped entirely.
    pub gone: bool,
    /// When it started (`status.startTime`); `None` if not yet.
    pub started: Option<Instant>,
    /// Its Ready condition: status and last transition; `None` if it has none.
    pub ready: Option<(bool, Instant)>,
    /// Σ `resources.requests.cpu` over its containers, in millicores;
    /// `Err(container)` names a container without a CPU request.
    pub request_millis: Result<i64, String>,
    /// Its CPU usage, when measured.
    pub usage: Option<Usage>,
}

/// A CPU measurement of one pod.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Average usage over the window, millicores.
    pub millis: i64,
    /// When the window ended.
    pub timestamp: Instant,
    /// The window's length.
    pub window: Duration,
}

/// A recommendation and what the status reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calculation {
    /// Recommended replicas.
    pub replicas: i32,
    /// Current utilization (percent of requests; the *original*, not the
    /// rebalanced one, as Kubernetes reports it), for Utilization targets.
    pub utilization: Option<i32>,
    /// Current average usage in millicores.
    pub average_millis: i64,
}

/// Why no recommendation could be made (the HPA takes no action).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalculationError {
    /// A container has no CPU request.
    #[error("missing request for cpu in container {container} of Pod {pod}")]
    MissingRequest {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
    /// No ready pod had a metric.
    #[error("did not receive metrics for any ready pods")]
    NoMetrics,
}

/// Pods sorted into Kubernetes' groups (`groupPods`).
struct Groups {
    ready_count: usize,
    unready: Vec<String>,
    missing: Vec<String>,
    ignored: Vec<String>,
}

fn group(pods: &[PodSample], now: Instant, settings: &Settings) -> Groups {
    let mut g = Groups {
        ready_count: 0,
        unready: Vec::new(),
        missing: Vec::new(),
        ignored: Vec::new(),
    };
    for pod in pods {
        if pod.gone {
            g.ignored.push(pod.name.clone());
            continue;
        }
        if pod.pending {
            g.unready.push(pod.name.clone());
            continue;
        }
        let Some(metric) = pod.usage else {
            g.missing.push(pod.name.clone());
            continue;
        };
        let unready = match (pod.ready, pod.started) {
            (None, _) | (_, None) => true,
            (Some((ready, transition)), Some(started)) => {
                if started + settings.cpu_initialization_period > now {
                    // Within initialization: unready, or no full window since it became ready.
                    !ready || metric.timestamp < transition + metric.window
                } else {
                    // Unready and never ready within the initial readiness delay.
                    !ready && started + settings.initial_readiness_delay > transition
                }
            }
        };
        if unready {
            g.unready.push(pod.name.clone());
        } else {
            g.ready_count += 1;
        }
    }
    g
}

/// `GetResourceUtilizationRatio` for a utilization target:
/// (ratio, utilization, average millis) over the pods in `metrics`.
fn ratio(
    metrics: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: Target,
) -> (f64, i32, i64) {
    let mut usage = 0i64;
    let mut requested = 0i64;
    for (pod, m) in metrics {
        if let Some(r) = requests.get(pod) {
            usage += m;
            requested += r;
        }
    }
    let n = metrics.len().max(1) as i64;
    let average = usage / n;
    match target {
        Target::Utilization(t) => {
            let utilization = if requested == 0 {
                0
            } else {
                (usage * 100 / requested) as i32
            };
            (f64::from(utilization) / f64::from(t), utilization, average)
        }
        Target::AverageMillis(t) => (usage as f64 / (t as f64 * n as f64), 0, average),
    }
}

/// The recommendation for one CPU target; `current` is the scale target's
/// `spec.replicas`.
pub fn calculate(
    current: i32,
    target: Target,
    pods: &[PodSample],
    now: Instant,
    settings: &Settings,
    tolerances: Tolerances,
) -> Result<Calculation, CalculationError> {
    // Kubernetes asks the metrics API first: no sample at all is that error,
    // before any pod's requests are read.
    if pods.iter().all(|p| p.usage.is_none()) {
        return Err(CalculationError::NoMetrics);
    }
    let g = group(pods, now, settings);
    let mut requests = BTreeMap::new();
    for pod in pods {
        match &pod.request_millis {
            Ok(r) => {
                requests.insert(pod.name.clone(), *r);
            }
            Err(container) => {
                return Err(CalculationError::MissingRequest {
                    pod: pod.name.clone(),
                    container: container.clone(),
                });
            }
        }
    }
    let mut metrics: BTreeMap<String, i64> = pods
        .iter()
        .filter(|p| !g.ignored.contains(&p.name) && !g.unready.contains(&p.name))
        .filter_map(|p| Some((p.name.clone(), p.usage?.millis)))
        .collect();
    if metrics.is_empty() {
        return Err(CalculationError::NoMetrics);
    }
    let (usage_ratio, utilization, average) = ratio(&metrics, &requests, target);
    let report = |replicas| Calculation {
        replicas,
        utilization: matches!(target, Target::Utilization(_)).then_some(utilization),
        average_millis: average,
    };
    let scale_up_with_unready = !g.unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if tolerances.within(usage_ratio) {
            return Ok(report(current));
        }
        return Ok(report((usage_ratio * g.ready_count as f64).ceil() as i32));
    }
    if !g.missing.is_empty() {
        for pod in &g.missing {
            let request = requests.get(pod).copied().unwrap_or(0);
            let assumed = match target {
                // Scale-down: missing pods count as using their whole request
                // (or the target, if higher); scale-up: as using nothing.
                Target::Utilization(t) if usage_ratio < 1.0 => {
                    request * i64::from(t.max(100)) / 100
                }
                Target::AverageMillis(t) if usage_ratio < 1.0 => t,
                _ => 0,
            };
            if usage_ratio != 1.0 {
                metrics.insert(pod.clone(), assumed);
            }
        }
    }
    if scale_up_with_unready {
        for pod in &g.unready {
            metrics.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _, _) = ratio(&metrics, &requests, target);
    if tolerances.within(new_ratio)
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(report(current));
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(report(current));
    }
    Ok(report(replicas))
}
