//! `weir verify`: a statistical verdict on the split (`--expect`), and/or a
//! wait for the scaling the walkthrough asks to check (`--replicas`).

use std::time::Duration;

use clap::Args;
use weir_api::backend::{Backend, BackendError};
use weir_api::resource::{Kind, ObjectRef};
use weir_load::classify::belongs;
use weir_load::stats::{Verdict, sample_size, verdict};

use crate::commands::fail;
use crate::commands::load::{LoadArgs, options, run_with_progress};
use crate::target::TargetArgs;
use crate::{exit, parse_duration};

/// `weir verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Target URL (default: the gateway, as for `weir load`).
    pub url: Option<String>,
    /// Expected split, e.g. `v1=90,v2=10` (names match versions: `v1` ⊇ `v1.0.0`).
    #[arg(long, value_parser = parse_expect)]
    pub expect: Option<Expectation>,
    /// Requests to send (default: enough to detect a 5-point deviation).
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Wait for `DEPLOYMENT>=N` ready replicas.
    #[arg(long, value_parser = parse_replicas)]
    pub replicas: Option<(String, i64)>,
    /// How long to wait for `--replicas`.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub within: Duration,
    /// Output: `json` for scripts.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Namespace of the --replicas Deployment (default: the backend's).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// An expected split: names and percentages.
#[derive(Clone, Debug)]
pub struct Expectation(pub Vec<(String, f64)>);

fn parse_expect(s: &str) -> Result<Expectation, String> {
    let pairs: Result<Vec<(String, f64)>, String> = s
        .split(',')
        .map(|pair| {
            let (name, pct) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?}: expected NAME=PERCENT"))?;
            let pct: f64 = pct
                .parse()
                .map_err(|_| format!("{pair:?}: {pct:?} is not a number"))?;
            if !(0.0..=100.0).contains(&pct) || name.is_empty() {
                return Err(format!("{pair:?}: the percentage must be from 0 to 100"));
            }
            Ok((name.to_owned(), pct))
        })
        .collect();
    let pairs = pairs?;
    if pairs.iter().map(|(_, p)| p).sum::<f64>() <= 0.0 {
        return Err("the expected shares total 0".into());
    }
    Ok(Expectation(pairs))
}

fn parse_replicas(s: &str) -> Result<(String, i64), String> {
    let (name, n) = s
        .split_once(">=")
        .ok_or_else(|| format!("{s:?}: expected DEPLOYMENT>=N"))?;
    let n: i64 = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {n:?} is not a whole number"))?;
    Ok((name.trim().to_owned(), n))
}

/// Checks the split; returns the verdict (or an error message).
pub async fn check_split(
    url: Option<String>,
    expect: &[(String, f64)],
    requests: Option<u64>,
    target: &TargetArgs,
    show: bool,
) -> Result<Verdict, String> {
    let total: f64 = expect.iter().map(|(_, p)| p).sum();
    let shares: Vec<f64> = expect.iter().map(|(_, p)| p / total).collect();
    let n = requests.unwrap_or_else(|| sample_size(&shares, 0.05));
    let load = LoadArgs::closed_loop(url, 4, Some(Duration::from_secs(120)), Some(n), target);
    let options = options(&load).await?;
    let report = run_with_progress(options, show).await?;
    let counts: Vec<u64> = expect
        .iter()
        .map(|(name, _)| {
            report
                .versions
                .iter()
                .filter(|(v, _)| belongs(v, name))
                .map(|(_, c)| c)
                .sum()
        })
        .collect();
    let answered: u64 = report.requests + report.errors;
    let other = answered.saturating_sub(counts.iter().sum());
    Ok(verdict(expect, &counts, other))
}

/// Prints a verdict as a table and a sentence.
pub fn print_verdict(v: &Verdict) {
    println!(
        "{:<10} {:>9} {:>9}   {:<15} {:>7}",
        "VERSION", "EXPECTED", "OBSERVED", "95% CI", "COUNT"
    );
    for s in &v.shares {
        println!(
            "{:<10} {:>8.1}% {:>8.1}%   {:<15} {:>7}",
            s.name,
            s.expected * 100.0,
            s.observed * 100.0,
            format!("{:.1}%–{:.1}%", s.interval.0 * 100.0, s.interval.1 * 100.0),
            s.count
        );
    }
    if v.other > 0 {
        println!(
            "{:<10} {:>9} {:>9}   {:<15} {:>7}",
            "(other)", "-", "-", "-", v.other
        );
    }
    println!("chi-square {:.3}, p = {:.4}", v.chi_square, v.p_value);
    println!("{}: {}", if v.passed { "PASS" } else { "FAIL" }, v.reason);
}

/// Waits until a Deployment has at least `n` ready replicas; the seconds it took.
pub async fn wait_replicas(
    target: &TargetArgs,
    namespace: Option<&str>,
    deployment: &str,
    n: i64,
    within: Duration,
) -> Result<Result<f64, i64>, BackendError> {
    let backend = target.backend().await?;
    let deployment = ObjectRef {
        kind: Kind::Deployment,
        namespace: backend.namespace(namespace),
        name: deployment.to_owned(),
    };
    let started = tokio::time::Instant::now();
    let mut ready = 0;
    loop {
        ready = backend
            .get(&deployment)
            .await?
            .and_then(|d| d.object["status"]["readyReplicas"].as_i64())
            .unwrap_or(ready);
        if ready >= n {
            return Ok(Ok(started.elapsed().as_secs_f64()));
        }
        if started.elapsed() >= within {
            return Ok(Err(ready));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs `weir verify`.
pub async fn run(args: VerifyArgs) -> u8 {
    if args.expect.is_none() && args.replicas.is_none() {
        eprintln!("error: give --expect NAME=PCT,... and/or --replicas DEPLOYMENT>=N");
        return exit::BAD_INPUT;
    }
    let json = args.output.as_deref() == Some("json");
    let mut passed = true;
    let mut out = serde_json::Map::new();
    if let Some((deployment, n)) = &args.replicas {
        match wait_replicas(
            &args.target,
            args.namespace.as_deref(),
            deployment,
            *n,
            args.within,
        )
        .await
        {
            Ok(Ok(secs)) => {
                if !json {
                    println!(
                        "PASS: {deployment} has at least {n} ready replicas (after {secs:.1}s)"
                    );
                }
                out.insert("replicas".into(), serde_json::json!({"deployment": deployment, "wanted": n, "passed": true, "seconds": secs}));
            }
            Ok(Err(ready)) => {
                passed = false;
                if !json {
                    println!(
                        "FAIL: {deployment} has {ready} ready replicas, not {n}, after {:?}",
                        args.within
                    );
                }
                out.insert("replicas".into(), serde_json::json!({"deployment": deployment, "wanted": n, "passed": false, "ready": ready}));
            }
            Err(e) => return fail(e),
        }
    }
    if let Some(expect) = &args.expect {
        match check_split(
            args.url.clone(),
            &expect.0,
            args.requests,
            &args.target,
            !json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .await
        {
            Ok(v) => {
                passed &= v.passed;
                if json {
                    out.insert("split".into(), serde_json::to_value(&v).unwrap_or_default());
                } else {
                    print_verdict(&v);
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return exit::BAD_INPUT;
            }
        }
    }
    if json {
        out.insert("passed".into(), passed.into());
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    }
    if passed { exit::OK } else { exit::FAILED }
}
