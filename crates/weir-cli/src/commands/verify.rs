//! `weir verify`: a statistical verdict on the split (`--expect`), and/or a
//! wait for the scaling the walkthrough asks to check (`--replicas`).

use std::time::Duration;

use clap::Args;
use weir_load::stats::Verdict;

use weir_api::backend::Backend;
use weir_api::resource::Kind;

use crate::checks::{check_split, wait_replicas};
use crate::drive::LoadSpec;
use crate::exit::{self, fail};
use crate::output::wants_json;
use crate::target::TargetArgs;

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
    #[arg(long, default_value = "90s", value_parser = weir_api::duration::parse)]
    pub within: Duration,
    /// Output: `json` for scripts.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Namespace of the --replicas Deployment (default: the backend's).
    #[arg(long)]
    pub namespace: Option<String>,
    /// A header for every request, `NAME: VALUE` (repeatable).
    #[arg(short = 'H', long = "header", value_parser = crate::drive::parse_header)]
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The Host header to send instead of the URL's.
    #[arg(long, value_parser = crate::drive::parse_host)]
    pub host: Option<http::HeaderValue>,
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
    let total: f64 = pairs.iter().map(|(_, p)| p).sum();
    if (total - 100.0).abs() > 0.01 {
        return Err(format!(
            "the expected shares add up to {total}, not 100 (every version that answers must be named)"
        ));
    }
    Ok(Expectation(pairs))
}

/// Every name in `expect` is a version some destination has: a subset of
/// a DestinationRule, or a prefix of a `version` label it selects (`v1` ⊇
/// `v1.0.0`), as the split check matches answers. Unchecked when the
/// backend cannot say (the load then reports why).
async fn known_versions(target: &TargetArgs, expect: &[(String, f64)]) -> Result<(), String> {
    let Ok(backend) = target.backend().await else {
        return Ok(());
    };
    let namespace = backend.namespace(None);
    let Ok(rules) = backend.list(Kind::DestinationRule, &namespace).await else {
        return Ok(());
    };
    let mut known: Vec<String> = Vec::new();
    for rule in &rules {
        for subset in rule.object["spec"]["subsets"]
            .as_array()
            .into_iter()
            .flatten()
        {
            known.extend(subset["name"].as_str().map(str::to_owned));
            known.extend(
                subset["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, v)| v.as_str().map(str::to_owned)),
            );
        }
    }
    if known.is_empty() {
        return Ok(());
    }
    for (name, _) in expect {
        if !known.iter().any(|k| k.starts_with(name.as_str())) {
            known.sort();
            known.dedup();
            return Err(format!(
                "--expect names {name:?}, which no destination has (subsets and versions: {})",
                known.join(", ")
            ));
        }
    }
    Ok(())
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

/// Runs `weir verify`.
pub async fn run(args: VerifyArgs) -> u8 {
    if args.expect.is_none() && args.replicas.is_none() {
        eprintln!("error: give --expect NAME=PCT,... and/or --replicas DEPLOYMENT>=N");
        return exit::BAD_INPUT;
    }
    let json = match wants_json(args.output.as_deref()) {
        Ok(json) => json,
        Err(code) => return code,
    };
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
        if let Err(e) = known_versions(&args.target, &expect.0).await {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
        let mut load = LoadSpec::closed_loop(
            args.url.clone(),
            4,
            Some(Duration::from_secs(120)),
            args.requests,
        );
        load.headers = args.headers.clone();
        load.host = args.host.clone();
        match check_split(
            load,
            &expect.0,
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
            Err(e) => return e.report(),
        }
    }
    if json {
        out.insert("passed".into(), passed.into());
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    }
    if passed { exit::OK } else { exit::FAILED }
}
