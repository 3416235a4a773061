//! `weir route VIRTUALSERVICE SUBSET=WEIGHT...`: changes one rule's weights
//! and returns once the gateway serves them.

use std::time::Duration;

use clap::Args;
use weir_api::backend::{Backend, BackendError, RuleSelector};
use weir_api::istio::VirtualServiceSpec;
use weir_api::resource::{Kind, ObjectRef};
use weir_api::rollout::{CommandIntent, RolloutCommand, RolloutSpec, rule_owner};
use weir_api::route::selected_rule;
use weir_kube::{ApplyOptions, ConfirmOptions};

use crate::exit;
use crate::exit::fail;
use crate::target::{AnyBackend, TargetArgs};

/// `weir route` arguments.
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The VirtualService.
    pub virtual_service: String,
    /// New weights, `SUBSET=WEIGHT` (a destination without subset by its host).
    #[arg(required = true, value_parser = parse_weight)]
    pub weights: Vec<(String, u32)>,
    /// Which http rule: its name or index (default: the first with several destinations).
    #[arg(long)]
    pub rule: Option<String>,
    /// Namespace (default: the backend's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// On a cluster: the longest wait for the data plane to serve the new
    /// weights (each gateway replica's Envoy routes, else sampling); exit 1
    /// after it.
    #[arg(long, default_value = "60s", value_parser = weir_api::duration::parse)]
    pub confirm_timeout: Duration,
    /// On a cluster: sample through this gateway URL instead of the
    /// istio-ingressgateway Service's address.
    #[arg(long)]
    pub gateway_url: Option<String>,
    /// On a cluster: the Host the confirming samples carry (the
    /// VirtualService's host when it is not `*`).
    #[arg(long, value_parser = crate::drive::parse_host)]
    pub host: Option<http::HeaderValue>,
    /// On a cluster: a header every confirming sample carries, `NAME: VALUE`
    /// (repeatable), to reach a rule that matches on headers.
    #[arg(short = 'H', long = "header", value_parser = crate::drive::parse_header)]
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Route a rule a Rollout drives: the Rollout is paused and stops
    /// holding its weights until `weir rollout resume` (refused without).
    #[arg(long)]
    pub force: bool,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

fn parse_weight(s: &str) -> Result<(String, u32), String> {
    let (subset, weight) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected SUBSET=WEIGHT"))?;
    let weight = weight
        .parse::<u32>()
        .ok()
        .filter(|w| i32::try_from(*w).is_ok())
        .ok_or_else(|| format!("{s:?}: the weight must be a whole number from 0 to 2147483647"))?;
    if subset.is_empty() {
        return Err(format!("{s:?}: the subset is empty"));
    }
    Ok((subset.to_owned(), weight))
}

/// Runs `weir route`.
pub async fn run(args: RouteArgs) -> u8 {
    let rule = match args.rule {
        None => RuleSelector::Default,
        Some(r) => match r.parse::<usize>() {
            Ok(i) => RuleSelector::Index(i),
            Err(_) => RuleSelector::Named(r),
        },
    };
    let confirm = ConfirmOptions {
        timeout: args.confirm_timeout,
        gateway_url: args.gateway_url,
        host: args.host,
        headers: args.headers,
        ..ConfirmOptions::default()
    };
    let backend = match args
        .target
        .backend_with(ApplyOptions::default(), confirm)
        .await
    {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let vs = ObjectRef {
        kind: Kind::VirtualService,
        namespace: backend.namespace(args.namespace.as_deref()),
        name: args.virtual_service,
    };
    match owning_rollout(&backend, &vs, &rule).await {
        Ok(None) => {}
        Ok(Some((owner, index))) if !args.force => {
            eprintln!(
                "error: {vs} http[{index}] is driven by Rollout {owner:?}: its weights are the Rollout's (`weir rollout pause|abort {owner}`); `--force` pauses it and routes by hand"
            );
            return exit::FAILED;
        }
        Ok(Some((owner, _))) => {
            if let Err(code) = yield_route(&backend, &vs.namespace, &owner).await {
                return code;
            }
        }
        Err(e) => return fail(e),
    }
    match backend.set_route_weights(&vs, &rule, &args.weights).await {
        Ok(change) => {
            let pairs: Vec<String> = change
                .before
                .iter()
                .zip(&change.after)
                .map(|((s, b), (_, a))| format!("{s} {b}→{a}"))
                .collect();
            println!("{vs} http[{}]: {}", change.rule_index, pairs.join(", "));
            let named: Vec<&str> = args.weights.iter().map(|(s, _)| s.as_str()).collect();
            if let Some(line) = shares_line(&change.after, &named) {
                println!("{line}");
            }
            println!(
                "served: {} ({:.1} ms)",
                change.confirmed_by,
                change.elapsed.as_secs_f64() * 1000.0
            );
            exit::OK
        }
        Err(e) => fail(e),
    }
}

/// The Rollout driving the rule `rule` selects, and the rule's index;
/// `None` when none does (or the VirtualService is absent: the change
/// reports that).
async fn owning_rollout(
    backend: &AnyBackend,
    vs: &ObjectRef,
    rule: &RuleSelector,
) -> Result<Option<(String, usize)>, BackendError> {
    let Some(live) = backend.get(vs).await? else {
        return Ok(None);
    };
    let Ok(spec) = serde_json::from_value::<VirtualServiceSpec>(live.object["spec"].clone()) else {
        return Ok(None);
    };
    let Ok(index) = selected_rule(&spec, rule) else {
        return Ok(None);
    };
    // Where Rollouts cannot be listed (a cluster without weir's CRD, which
    // runs none), none owns the rule; a backend out of reach says so on
    // the change itself.
    let listed = match backend.list(Kind::Rollout, &vs.namespace).await {
        Ok(listed) => listed,
        Err(BackendError::Unreachable { what, reason }) => {
            return Err(BackendError::Unreachable { what, reason });
        }
        Err(_) => Vec::new(),
    };
    let rollouts: Vec<(String, RolloutSpec)> = listed
        .into_iter()
        .filter_map(|o| {
            let spec = serde_json::from_value(o.object["spec"].clone()).ok()?;
            Some((o.name().to_owned(), spec))
        })
        .collect();
    Ok(rule_owner(
        &vs.name,
        &spec,
        index,
        rollouts.iter().map(|(n, s)| (n.as_str(), s)),
    )
    .map(|owner| (owner.to_owned(), index)))
}

/// Pauses the Rollout `name` and has it stop holding its rule's weights
/// (`--force`); the exit code when it did not.
async fn yield_route(backend: &AnyBackend, namespace: &str, name: &str) -> Result<(), u8> {
    let rollout = ObjectRef {
        kind: Kind::Rollout,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let intent = CommandIntent {
        id: format!("{:016x}", fastrand::u64(..)),
        command: RolloutCommand::YieldRoute,
        step: None,
    };
    let object = backend
        .rollout_command(&rollout, &intent)
        .await
        .map_err(fail)?;
    let status = object
        .map(|o| o.object["status"].clone())
        .unwrap_or_default();
    let outcome = status["commands"]
        .as_array()
        .and_then(|acks| acks.iter().find(|a| a["id"] == intent.id.as_str()))
        .and_then(|a| a["outcome"].as_str())
        .unwrap_or("not acknowledged yet");
    if outcome != "applied" {
        eprintln!("error: {rollout}: {outcome}: not routed");
        return Err(exit::FAILED);
    }
    println!(
        "{rollout} paused: its rule's weights are routed by hand until `weir rollout resume {name}`"
    );
    Ok(())
}

/// What each destination now gets, when the command line alone does not
/// say it: some destination was not named, or the weights do not add up
/// to 100 (the gateway splits by weight ÷ total, as Envoy does).
fn shares_line(after: &[(String, u32)], named: &[&str]) -> Option<String> {
    let total: u32 = after.iter().map(|(_, w)| w).sum();
    let all_named = after.iter().all(|(s, _)| named.contains(&s.as_str()));
    if all_named && total == 100 {
        return None;
    }
    let shares: Vec<String> = after
        .iter()
        .map(|(s, w)| {
            let share = if total == 0 {
                0.0
            } else {
                f64::from(*w) * 100.0 / f64::from(total)
            };
            format!("{s} {share:.1} %")
        })
        .collect();
    Some(format!(
        "shares: {} (weights add up to {total})",
        shares.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_shown_when_the_command_line_does_not_say_them() {
        let after = |a: u32, b: u32| vec![("v1".to_owned(), a), ("v2".to_owned(), b)];
        assert_eq!(shares_line(&after(0, 100), &["v1", "v2"]), None);
        assert_eq!(
            shares_line(&after(90, 50), &["v2"]).unwrap(),
            "shares: v1 64.3 %, v2 35.7 % (weights add up to 140)"
        );
        assert_eq!(
            shares_line(&after(10, 90), &["v2"]).unwrap(),
            "shares: v1 10.0 %, v2 90.0 % (weights add up to 100)"
        );
        assert_eq!(
            shares_line(&after(1, 1), &["v1", "v2"]).unwrap(),
            "shares: v1 50.0 %, v2 50.0 % (weights add up to 2)"
        );
    }
}
