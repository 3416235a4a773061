//! A Rollout's webhooks (`spec.webhooks[]`): Flagger's hooks, their
//! kinds and defaults. Apart from `rollout.rs` (the Rollout's spec), which
//! holds a list of them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `spec.webhooks[]`: one HTTP hook, as Flagger's `analysis.webhooks[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    /// Its name, unique in the Rollout.
    pub name: String,
    /// When it is called.
    #[serde(rename = "type")]
    pub kind: WebhookKind,
    /// Where: an `http://` URL.
    pub url: String,
    /// How long one call may take (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Sent as the payload's `metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
}

/// When a webhook is called, and what its answer does (Flagger's types).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookKind {
    /// Before the canary gets traffic: a non-2xx answer holds the rollout
    /// until it answers 2xx.
    ConfirmRollout,
    /// Before the canary gets traffic, after `confirm-rollout`: a non-2xx
    /// answer is a failed check (`failureLimit` in a row roll back).
    PreRollout,
    /// Every analysis interval while the canary has traffic: a non-2xx
    /// answer is a failed check.
    #[default]
    Rollout,
    /// Before the rollout completes: a non-2xx answer holds it.
    ConfirmPromotion,
    /// Once it ended (Succeeded, RolledBack or Aborted): told, not asked.
    PostRollout,
    /// While the canary has traffic: a 2xx answer rolls it back (a manual
    /// rollback gate).
    Rollback,
}

impl WebhookKind {
    /// Its name in the spec.
    pub fn name(self) -> &'static str {
        match self {
            WebhookKind::ConfirmRollout => "confirm-rollout",
            WebhookKind::PreRollout => "pre-rollout",
            WebhookKind::Rollout => "rollout",
            WebhookKind::ConfirmPromotion => "confirm-promotion",
            WebhookKind::PostRollout => "post-rollout",
            WebhookKind::Rollback => "rollback",
        }
    }
}

/// The default `webhooks[].timeout`.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
