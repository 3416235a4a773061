//! `weir route VIRTUALSERVICE SUBSET=WEIGHT...`: changes one rule's weights
//! and returns once the gateway serves them.

use std::time::Duration;

use clap::Args;
use weir_api::backend::{Backend, RuleSelector};
use weir_api::resource::{Kind, ObjectRef};
use weir_kube::{ApplyOptions, ConfirmOptions};

use crate::exit;
use crate::exit::fail;
use crate::target::TargetArgs;

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
    /// weights (Istio's Reconciled condition, else sampling); exit 1 after it.
    #[arg(long, default_value = "60s", value_parser = weir_api::duration::parse)]
    pub confirm_timeout: Duration,
    /// On a cluster: sample through this gateway URL instead of the
    /// istio-ingressgateway Service's address.
    #[arg(long)]
    pub gateway_url: Option<String>,
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
    match backend.set_route_weights(&vs, &rule, &args.weights).await {
        Ok(change) => {
            let pairs: Vec<String> = change
                .before
                .iter()
                .zip(&change.after)
                .map(|((s, b), (_, a))| format!("{s} {b}→{a}"))
                .collect();
            println!("{vs} http[{}]: {}", change.rule_index, pairs.join(", "));
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
