//! What the runtime does for a Rollout beyond pods and routes: its status
//! stored with its `weir_rollout_*` metrics, and the load weir sends through
//! the gateway when its analysis lacks requests.

use std::time::Duration;

use weir_api::resource::{ObjectRef, Resource};
use weir_api::rollout::RolloutSpec;
use weir_gateway::Gateway;
use weir_gateway::metrics::{
    RolloutInfoLabels, RolloutLabels, RolloutMetrics, RolloutPhaseLabels, RolloutVerdictLabels,
};
use weir_rollout::engine::{ALL_PHASES, RolloutStatus};
use weir_rollout::traffic::SyntheticRequest;

use crate::log;
use crate::state::State;
use crate::store::Store;

/// Records a Rollout's new status (and its metrics) when it changed,
/// clearing the command it took.
pub(crate) fn set_rollout_status(
    store: &Store,
    metrics: &RolloutMetrics,
    state: &mut State,
    rollout: ObjectRef,
    status: RolloutStatus,
    took_command: bool,
) {
    if took_command {
        state.rollout_commands.remove(&rollout);
        if let Err(e) = store.set_pending_command(&rollout, None) {
            log(&format!("cannot clear the command of {rollout}: {e}"));
        }
    }
    state.rollout_status_unreadable.remove(&rollout);
    if state.rollout_status.get(&rollout) == Some(&status) {
        return;
    }
    if let Some(Resource::Rollout(ro)) = state.objects.get(&rollout) {
        record_rollout_metrics(
            metrics,
            &rollout,
            &ro.spec,
            state.rollout_status.get(&rollout),
            &status,
        );
    }
    let text = serde_json::to_string(&status).unwrap_or_default();
    if let Err(e) = store.set_status(&rollout, &text) {
        log(&format!("cannot record the status of {rollout}: {e}"));
    }
    state.rollout_status.insert(rollout, status);
}

/// A task sending `rate` requests per second through the gateway (its
/// port 80 listener, else its first), in bounded one-second runs of
/// weir's load generator, until aborted.
pub(crate) async fn own_traffic(
    gateway: &Gateway,
    rate: f64,
    request: SyntheticRequest,
) -> Option<tokio::task::JoinHandle<()>> {
    let listeners = gateway.listeners().await;
    let port = request
        .port
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(80);
    let addr = listeners
        .get(&port)
        .or_else(|| listeners.values().next())
        .copied()?;
    let url: http::Uri = format!("http://{addr}{}", request.path).parse().ok()?;
    let host = request
        .host
        .as_deref()
        .and_then(|h| http::HeaderValue::from_str(h).ok());
    let headers: Vec<(http::HeaderName, http::HeaderValue)> = request
        .headers
        .iter()
        .filter_map(|(n, v)| {
            Some((
                http::HeaderName::from_bytes(n.as_bytes()).ok()?,
                http::HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    Some(tokio::spawn(async move {
        loop {
            let options = weir_load::generator::LoadOptions {
                url: url.clone(),
                connections: 2,
                duration: Some(Duration::from_secs(1)),
                requests: None,
                rate: Some(rate),
                users: None,
                http2: false,
                classifier: weir_load::classify::Classifier::default(),
                timeout: Duration::from_secs(5),
                host: host.clone(),
                headers: headers.clone(),
            };
            if weir_load::generator::run(options, Default::default())
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }))
}

/// Brings the `weir_rollout_*` metrics up to a Rollout's new status; a new
/// analysis counts its verdicts.
fn record_rollout_metrics(
    metrics: &RolloutMetrics,
    rollout: &ObjectRef,
    spec: &RolloutSpec,
    previous: Option<&RolloutStatus>,
    status: &RolloutStatus,
) {
    let labels = RolloutLabels {
        namespace: rollout.namespace.clone(),
        rollout: rollout.name.clone(),
    };
    metrics
        .info
        .get_or_create(&RolloutInfoLabels {
            namespace: rollout.namespace.clone(),
            rollout: rollout.name.clone(),
            virtual_service: spec.virtual_service.clone(),
            stable: spec.stable.clone(),
            canary: spec.canary.clone(),
        })
        .set(1);
    for phase in ALL_PHASES {
        metrics
            .phase
            .get_or_create(&RolloutPhaseLabels {
                namespace: rollout.namespace.clone(),
                rollout: rollout.name.clone(),
                phase: format!("{phase:?}"),
            })
            .set(i64::from(phase == status.phase));
    }
    metrics
        .canary_weight
        .get_or_create(&labels)
        .set(i64::from(status.canary_weight));
    metrics
        .step
        .get_or_create(&labels)
        .set(status.current_step as i64);
    if status.analyses > previous.map_or(0, |p| p.analyses) {
        for j in &status.verdicts {
            metrics
                .verdicts
                .get_or_create(&RolloutVerdictLabels {
                    namespace: rollout.namespace.clone(),
                    rollout: rollout.name.clone(),
                    metric: j.metric.clone(),
                    verdict: format!("{:?}", j.verdict),
                })
                .inc();
        }
    }
}

/// Removes a deleted Rollout's `weir_rollout_*` series (its verdict counts
/// stay, as counters do).
pub(crate) fn forget_rollout_metrics(
    metrics: &RolloutMetrics,
    rollout: &ObjectRef,
    spec: &RolloutSpec,
) {
    let labels = RolloutLabels {
        namespace: rollout.namespace.clone(),
        rollout: rollout.name.clone(),
    };
    metrics.info.remove(&RolloutInfoLabels {
        namespace: rollout.namespace.clone(),
        rollout: rollout.name.clone(),
        virtual_service: spec.virtual_service.clone(),
        stable: spec.stable.clone(),
        canary: spec.canary.clone(),
    });
    for phase in ALL_PHASES {
        metrics.phase.remove(&RolloutPhaseLabels {
            namespace: rollout.namespace.clone(),
            rollout: rollout.name.clone(),
            phase: format!("{phase:?}"),
        });
    }
    metrics.canary_weight.remove(&labels);
    metrics.step.remove(&labels);
}
