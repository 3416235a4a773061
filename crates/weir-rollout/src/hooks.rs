//! Webhooks at Flagger's points of a rollout, decided purely: which hooks
//! a Rollout wants called now ([`wanted`]; the backend calls them, paced
//! and bounded, and reports each one's latest answer), and what their
//! answers do to the engine's decision — a gate that holds
//! (`confirm-rollout` and `pre-rollout` before the canary gets traffic,
//! `confirm-promotion` before the rollout completes), a failed check
//! (`pre-rollout`, `rollout`: counted with the analysis' Fails toward
//! `failureLimit`), or a rollback (`rollback` answering 2xx). An answer
//! counts only when it was sent for the current attempt (at or after the
//! step it gates began), and a failure is counted once.

use serde::Serialize;
use weir_api::rollout::{RolloutSpec, Webhook, WebhookKind};

pub use crate::status::HookAnswer;
use crate::status::{Phase, RolloutStatus};

/// What the hooks say about going on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Go on.
    Open,
    /// Wait: why.
    Hold(String),
    /// A failed check: why (counted toward `failureLimit`).
    Failed(String),
    /// Roll back now: why.
    RollBack(String),
}

/// The JSON a hook is sent: Flagger's `CanaryWebhookPayload`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Payload<'a> {
    /// The Rollout's name.
    pub name: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// Flagger's phase names: `Waiting`, `Progressing`,
    /// `WaitingPromotion`, `Succeeded`, `Failed`.
    pub phase: &'static str,
    /// What is being rolled out: the canary revision, else the plan hash.
    pub checksum: &'a str,
    /// The hook's `metadata`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<&'a std::collections::BTreeMap<String, String>>,
}

/// The payload for `hook` of the Rollout `name` in `status`.
pub fn payload<'a>(
    name: &'a str,
    namespace: &'a str,
    hook: &'a Webhook,
    status: &'a RolloutStatus,
) -> Payload<'a> {
    let phase = match (hook.kind, status.phase) {
        (WebhookKind::ConfirmRollout, _) => "Waiting",
        (WebhookKind::ConfirmPromotion, _) => "WaitingPromotion",
        (_, Phase::Succeeded) => "Succeeded",
        (_, Phase::RolledBack | Phase::Aborted) => "Failed",
        _ => "Progressing",
    };
    Payload {
        name,
        namespace,
        phase,
        checksum: status
            .canary_revision
            .as_deref()
            .unwrap_or(&status.plan_hash),
        metadata: hook.metadata.as_ref(),
    }
}

fn of_kind(spec: &RolloutSpec, kind: WebhookKind) -> impl Iterator<Item = &Webhook> {
    spec.webhooks.iter().filter(move |h| h.kind == kind)
}

fn answer<'a>(answers: &'a [HookAnswer], hook: &Webhook) -> Option<&'a HookAnswer> {
    answers.iter().find(|a| a.name == hook.name)
}

/// Whether the rollout is before the canary's first traffic: the start
/// gates apply.
pub fn before_traffic(s: &RolloutStatus, served_weight: u32) -> bool {
    s.current_step == 0 && s.desired_weight.unwrap_or(0) == 0 && served_weight == 0
}

/// The hooks to call now: the start gates before the canary's first
/// traffic (`pre-rollout` once every `confirm-rollout` said yes), the
/// checks while it has traffic, `confirm-promotion` at the end of the
/// steps, `post-rollout` once after it ended. The backend paces them.
pub fn wanted<'a>(
    spec: &'a RolloutSpec,
    s: &RolloutStatus,
    served_weight: u32,
    answers: &[HookAnswer],
) -> Vec<&'a Webhook> {
    let fresh_ok =
        |h: &Webhook| answer(answers, h).is_some_and(|a| a.ok && a.sent >= s.step_started);
    let mut out: Vec<&Webhook> = Vec::new();
    let running = matches!(s.phase, Phase::Progressing | Phase::Paused);
    if running && before_traffic(s, served_weight) {
        let confirms: Vec<&Webhook> = of_kind(spec, WebhookKind::ConfirmRollout).collect();
        let confirmed = confirms.iter().all(|h| fresh_ok(h));
        out.extend(confirms.into_iter().filter(|h| !fresh_ok(h)));
        if confirmed {
            out.extend(of_kind(spec, WebhookKind::PreRollout).filter(|h| !fresh_ok(h)));
        }
    }
    if running && served_weight > 0 {
        out.extend(of_kind(spec, WebhookKind::Rollout));
        out.extend(of_kind(spec, WebhookKind::Rollback));
    }
    if running && s.current_step >= spec.steps.len() {
        out.extend(of_kind(spec, WebhookKind::ConfirmPromotion).filter(|h| !fresh_ok(h)));
    }
    if let (true, Some(ended)) = (s.phase.is_final(), s.finished) {
        out.extend(
            of_kind(spec, WebhookKind::PostRollout)
                .filter(|h| answer(answers, h).is_none_or(|a| a.sent < ended)),
        );
    }
    out
}

/// The gate before the canary's first traffic: every `confirm-rollout`
/// hook answered 2xx for this attempt, then every `pre-rollout` hook; a
/// `pre-rollout` failure not counted yet is a failed check.
pub fn start_gate(spec: &RolloutSpec, s: &mut RolloutStatus, answers: &[HookAnswer]) -> Gate {
    let since = s.step_started;
    for hook in of_kind(spec, WebhookKind::ConfirmRollout) {
        match answer(answers, hook) {
            Some(a) if a.ok && a.sent >= since => {}
            Some(a) if a.sent >= since => {
                return Gate::Hold(format!(
                    "waiting for confirm-rollout hook {:?} (it answered {})",
                    hook.name, a.detail
                ));
            }
            _ => {
                return Gate::Hold(format!("waiting for confirm-rollout hook {:?}", hook.name));
            }
        }
    }
    for hook in of_kind(spec, WebhookKind::PreRollout) {
        match answer(answers, hook) {
            Some(a) if a.ok && a.sent >= since => {}
            Some(a) if a.sent >= since && count_once(s, a) => {
                return Gate::Failed(format!(
                    "pre-rollout hook {:?} failed: {}",
                    hook.name, a.detail
                ));
            }
            Some(a) if a.sent >= since => {
                return Gate::Hold(format!(
                    "waiting for pre-rollout hook {:?} (it answered {})",
                    hook.name, a.detail
                ));
            }
            _ => {
                return Gate::Hold(format!("waiting for pre-rollout hook {:?}", hook.name));
            }
        }
    }
    Gate::Open
}

/// The checks while the canary has traffic: a `rollback` hook's 2xx rolls
/// back; a `rollout` hook's failure not counted yet is a failed check.
pub fn running_checks(spec: &RolloutSpec, s: &mut RolloutStatus, answers: &[HookAnswer]) -> Gate {
    let since = s.step_started.min(s.last_progress);
    for hook in of_kind(spec, WebhookKind::Rollback) {
        if let Some(a) = answer(answers, hook)
            && a.ok
            && a.sent >= since
            && count_once(s, a)
        {
            return Gate::RollBack(format!(
                "rollback hook {:?} answered {}: rolled back",
                hook.name, a.detail
            ));
        }
    }
    for hook in of_kind(spec, WebhookKind::Rollout) {
        if let Some(a) = answer(answers, hook)
            && !a.ok
            && count_once(s, a)
        {
            return Gate::Failed(format!("rollout hook {:?} failed: {}", hook.name, a.detail));
        }
    }
    Gate::Open
}

/// The gate before the rollout completes: every `confirm-promotion` hook
/// answered 2xx since the last step began.
pub fn promotion_gate(spec: &RolloutSpec, s: &RolloutStatus, answers: &[HookAnswer]) -> Gate {
    for hook in of_kind(spec, WebhookKind::ConfirmPromotion) {
        match answer(answers, hook) {
            Some(a) if a.ok && a.sent >= s.step_started => {}
            Some(a) if a.sent >= s.step_started => {
                return Gate::Hold(format!(
                    "waiting for confirm-promotion hook {:?} (it answered {})",
                    hook.name, a.detail
                ));
            }
            _ => {
                return Gate::Hold(format!(
                    "waiting for confirm-promotion hook {:?}",
                    hook.name
                ));
            }
        }
    }
    Gate::Open
}

/// Whether `a` was not counted yet; marks it counted.
fn count_once(s: &mut RolloutStatus, a: &HookAnswer) -> bool {
    if s.hooks_counted.is_some_and(|t| a.sent <= t) {
        return false;
    }
    s.hooks_counted = Some(a.sent);
    true
}

#[cfg(test)]
mod tests;
