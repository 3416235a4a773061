//! Which of a Rollout's webhooks the controller calls now, paced: the
//! decision of what is wanted is `weir_rollout::hooks`'; this adds the
//! runtime's part (one call in flight per hook, at most one per analysis
//! interval) and builds each call's JSON.

use std::collections::HashMap;
use std::time::SystemTime;

use weir_api::resource::ObjectRef;
use weir_api::rollout::RolloutSpec;
use weir_rollout::engine::RolloutStatus;
use weir_rollout::hooks::HookAnswer;

use super::action::Action;
use crate::webhooks::{HookKey, HookState};

/// The webhooks to call now: those the status wants
/// (`weir_rollout::hooks::wanted`) with no call in flight, each at most
/// once per analysis interval.
pub fn hook_calls(
    rollout: &ObjectRef,
    spec: &RolloutSpec,
    status: &RolloutStatus,
    answers: &[HookAnswer],
    hooks: &HashMap<HookKey, HookState>,
    now: SystemTime,
) -> Vec<Action> {
    let pace = spec
        .analysis
        .as_ref()
        .and_then(|a| a.interval.as_deref())
        .and_then(|i| weir_api::duration::parse(i).ok())
        .unwrap_or(weir_api::rollout::defaults::INTERVAL);
    weir_rollout::hooks::wanted(spec, status, status.canary_weight, answers)
        .into_iter()
        .filter(|h| {
            let state = hooks.get(&(rollout.clone(), h.name.clone()));
            let busy = state.is_some_and(|s| s.in_flight);
            let recent = state
                .and_then(|s| s.answer.as_ref())
                .is_some_and(|a| now.duration_since(a.sent).unwrap_or_default() < pace);
            !busy && !recent
        })
        .map(|h| {
            let payload =
                weir_rollout::hooks::payload(&rollout.name, &rollout.namespace, h, status);
            Action::CallWebhook {
                rollout: rollout.clone(),
                hook: h.clone(),
                payload: serde_json::to_vec(&payload).unwrap_or_default(),
            }
        })
        .collect()
}
