//! `weir rollout plan -f FILE`, and the line `weir apply` prints for each
//! Rollout: what each analysis gate will take before the canary is exposed
//! — canary requests for a clean canary's Pass and a bad one's Fail, the
//! time at the rule's rate, and what cannot be met by the deadline
//! (`weir_rollout::plan`). The rate is `--rate`, or measured from the
//! running gateway: two scrapes two seconds apart, summed over the
//! versions the Rollout's subsets select.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use weir_api::backend::Backend;
use weir_api::istio::service_for_host;
use weir_api::load::{Manifests, load_paths};
use weir_api::resource::Resource;
use weir_api::rollout::Rollout;
use weir_rollout::plan::{Plan, plan};

use super::top_metrics::version_rows;
use crate::exit;
use crate::target::TargetArgs;

/// `weir rollout plan` arguments.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Manifest files or directories holding the Rollout.
    #[arg(short = 'f', long = "filename", required = true)]
    pub paths: Vec<PathBuf>,
    /// Requests per second through the Rollout's rule; measured from the
    /// running gateway when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// `json` for the plan as data.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// The versions a Rollout's subsets select, from the DestinationRules in
/// `manifests` (empty when they are not there).
fn subset_versions(manifests: &Manifests, rollout: &Rollout) -> Vec<String> {
    let service = manifests.resources().find_map(|r| match r {
        Resource::VirtualService(vs)
            if vs.metadata.name.as_deref() == Some(rollout.spec.virtual_service.as_str()) =>
        {
            vs.spec
                .http
                .iter()
                .flat_map(|h| h.route.iter().flatten())
                .next()
                .map(|d| service_for_host(&d.destination.host, r.namespace()))
        }
        _ => None,
    });
    manifests
        .resources()
        .filter_map(|r| match r {
            Resource::DestinationRule(dr)
                if Some(service_for_host(&dr.spec.host, r.namespace())) == service =>
            {
                Some(dr)
            }
            _ => None,
        })
        .flat_map(|dr| dr.spec.subsets.iter())
        .filter(|s| s.name == rollout.spec.stable || s.name == rollout.spec.canary)
        .filter_map(|s| s.labels.get("version").cloned())
        .collect()
}

/// The running gateway's rate over `versions` (all when empty), req/s;
/// `None` when no gateway answers.
async fn measured_rate(target: &TargetArgs, versions: &[String]) -> Option<f64> {
    let backend = target.backend().await.ok()?;
    let before = backend.gateway_metrics().await.ok()?;
    let span = Duration::from_secs(2);
    tokio::time::sleep(span).await;
    let after = backend.gateway_metrics().await.ok()?;
    let rows = version_rows(&before, &after, span.as_secs_f64());
    Some(
        rows.iter()
            .filter(|r| versions.is_empty() || versions.contains(&r.version))
            .map(|r| r.rps)
            .sum(),
    )
}

/// A plan in lines for a person.
pub fn plan_lines(name: &str, p: &Plan) -> Vec<String> {
    let mut lines = vec![format!(
        "rollout {name}: confidence {:.3} for the whole rollout: false promotion ≤ {:.4}, false rollback ≤ {:.4} ({} analysed steps × {} goals, {:.5} each)",
        1.0 - p.budget.alpha,
        p.budget.false_pass,
        p.budget.false_fail,
        p.budget.windows,
        p.budget.goals,
        p.budget.fail_per_test
    )];
    let rate = p.rate.map_or("rate unknown (--rate)".to_owned(), |r| {
        format!("{r:.1} req/s")
    });
    for gate in &p.gates {
        for g in &gate.goals {
            let count = |n: Option<u64>| n.map_or("over 10⁷".to_owned(), |n| format!("~{n}"));
            let time = |t: Option<f64>| {
                t.map_or(String::new(), |t| {
                    format!(
                        " ({})",
                        humantime::format_duration(Duration::from_secs(t.ceil() as u64))
                    )
                })
            };
            lines.push(format!(
                "  step {} at canary {} %, {}: Pass of a clean canary {} requests{}, Fail of a bad one {}{} — at {rate}",
                gate.step,
                gate.weight,
                g.metric,
                count(g.pass_requests),
                time(g.pass_seconds),
                count(g.fail_requests),
                time(g.fail_seconds),
            ));
        }
    }
    lines.extend(p.warnings.iter().map(|w| format!("  warning: {w}")));
    lines
}

/// The line `weir apply` prints for an applied Rollout: what a clean
/// canary needs at each gate (the most any goal there needs), and where to
/// see times.
pub fn apply_line(name: &str, p: &Plan) -> Option<String> {
    if p.gates.is_empty() {
        return None;
    }
    let gates: Vec<String> = p
        .gates
        .iter()
        .map(|g| {
            let most = g
                .goals
                .iter()
                .map(|goal| goal.pass_requests)
                .max()
                .flatten();
            let count = most.map_or("over 10⁷".to_owned(), |n| format!("~{n}"));
            format!("step {} (canary {} %) {count}", g.step, g.weight)
        })
        .collect();
    Some(format!(
        "rollout.weir.dev/{name} plan: a clean canary passes {} canary requests; `weir rollout plan -f` gives the times at the current rate",
        gates.join(", ")
    ))
}

/// Runs `weir rollout plan`.
pub async fn run(args: &PlanArgs, target: &TargetArgs) -> u8 {
    let json = match args.output.as_deref() {
        None => false,
        Some("json") => true,
        Some(other) => {
            eprintln!("error: -o {other:?}: the plan is shown as text or json");
            return exit::BAD_INPUT;
        }
    };
    let manifests = match load_paths(&args.paths) {
        Ok(m) => m,
        Err(e) => {
            eprint!("{e}");
            return exit::BAD_INPUT;
        }
    };
    let rollouts: Vec<&Rollout> = manifests
        .resources()
        .filter_map(|r| match r {
            Resource::Rollout(ro) => Some(ro),
            _ => None,
        })
        .collect();
    if rollouts.is_empty() {
        eprintln!("error: no Rollout in {:?}", args.paths);
        return exit::BAD_INPUT;
    }
    if let Some(r) = args.rate
        && !(r >= 0.0 && r.is_finite())
    {
        eprintln!("error: --rate {r}: requests per second, 0 or more");
        return exit::BAD_INPUT;
    }
    let mut plans = Vec::new();
    for ro in rollouts {
        let rate = match args.rate {
            Some(r) => Some(r),
            None => measured_rate(target, &subset_versions(&manifests, ro)).await,
        };
        plans.push((
            ro.metadata.name.clone().unwrap_or_default(),
            plan(&ro.spec, rate),
        ));
    }
    if json {
        let value: serde_json::Map<String, serde_json::Value> = plans
            .iter()
            .map(|(name, p)| (name.clone(), serde_json::to_value(p).unwrap_or_default()))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        for (name, p) in &plans {
            for line in plan_lines(name, p) {
                println!("{line}");
            }
        }
    }
    exit::OK
}
