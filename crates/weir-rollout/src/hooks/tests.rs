//! The hooks through the engine's decisions: each answer's effect, and
//! which hooks are wanted when.

use std::time::{Duration, SystemTime};

use weir_api::rollout::AnalysisSpec;

use super::*;
use crate::engine::{Observation, Prior, RolloutAction, step};
use crate::test_steps::weight;

fn hook(name: &str, kind: WebhookKind) -> Webhook {
    Webhook {
        name: name.into(),
        kind,
        url: "http://127.0.0.1:1/".into(),
        ..Webhook::default()
    }
}

fn spec(hooks: Vec<Webhook>, failure_limit: u32) -> RolloutSpec {
    RolloutSpec {
        virtual_service: "my-app".into(),
        stable: "v1".into(),
        canary: "v2".into(),
        steps: vec![weight(20), weight(100)],
        analysis: Some(AnalysisSpec {
            failure_limit: Some(failure_limit),
            ..AnalysisSpec::default()
        }),
        progress_deadline: Some("1m".into()),
        webhooks: hooks,
        ..RolloutSpec::default()
    }
}

/// A rollout driven by hand: each decision at `now`, weights served at
/// once, hooks' answers as given.
struct Run {
    spec: RolloutSpec,
    status: Option<RolloutStatus>,
    now: SystemTime,
    served: u32,
    answers: Vec<HookAnswer>,
}

impl Run {
    fn new(spec: RolloutSpec) -> Self {
        Self {
            spec,
            status: None,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            served: 0,
            answers: Vec::new(),
        }
    }

    fn tick(&mut self, secs: u64) -> Vec<RolloutAction> {
        self.now += Duration::from_secs(secs);
        let obs = Observation {
            now: self.now,
            served_weight: self.served,
            window: None,
            command: None,
            capacity: None,
            canary_revision: None,
            hooks: &self.answers,
            header_route: None,
            mirror: 0,
            generation: None,
        };
        let prior = self.status.as_ref().map_or(Prior::New, Prior::Known);
        let (status, actions) = step(&self.spec, prior, &obs);
        for a in &actions {
            if let RolloutAction::SetCanaryWeight(w) = a {
                self.served = *w;
            }
        }
        self.status = Some(status);
        actions
    }

    /// `name` answers a call sent just after the last decision (which
    /// wanted it).
    fn answer(&mut self, name: &str, ok: bool) {
        self.answers.retain(|a| a.name != name);
        self.answers.push(HookAnswer {
            name: name.into(),
            sent: self.now + Duration::from_millis(1),
            ok,
            detail: if ok { "HTTP 200" } else { "HTTP 403" }.into(),
        });
    }

    fn status(&self) -> &RolloutStatus {
        self.status.as_ref().unwrap()
    }

    fn wanted(&self) -> Vec<String> {
        wanted(&self.spec, self.status(), self.served, &self.answers)
            .iter()
            .map(|h| h.name.clone())
            .collect()
    }
}

#[test]
fn confirm_rollout_holds_the_canary_at_zero_past_the_deadline_until_it_says_yes() {
    let mut run = Run::new(spec(
        vec![
            hook("gate", WebhookKind::ConfirmRollout),
            hook("smoke", WebhookKind::PreRollout),
        ],
        1,
    ));
    run.tick(1);
    assert_eq!(run.wanted(), ["gate"]);
    for _ in 0..10 {
        assert!(run.tick(30).is_empty());
    }
    run.answer("gate", false);
    assert!(run.tick(1).is_empty());
    let s = run.status();
    assert_eq!((s.phase, run.served), (Phase::Progressing, 0));
    assert!(
        s.message
            .contains("confirm-rollout hook \"gate\" (it answered HTTP 403)"),
        "{}",
        s.message
    );
    run.answer("gate", true);
    assert!(run.tick(1).is_empty(), "then pre-rollout is asked");
    assert_eq!(run.wanted(), ["smoke"]);
    assert!(
        run.status()
            .message
            .contains("waiting for pre-rollout hook \"smoke\"")
    );
    run.answer("smoke", true);
    assert_eq!(run.tick(1), [RolloutAction::SetCanaryWeight(20)]);
    assert!(run.wanted().is_empty());
}

#[test]
fn a_failing_pre_rollout_hook_counts_once_per_answer_and_rolls_back_at_the_limit() {
    let mut run = Run::new(spec(vec![hook("smoke", WebhookKind::PreRollout)], 2));
    run.tick(1);
    run.answer("smoke", false);
    run.tick(1);
    run.tick(1);
    let s = run.status();
    assert_eq!(
        (s.phase, s.failures_in_row),
        (Phase::Progressing, 1),
        "{}",
        s.message
    );
    assert!(s.message.contains("it answered HTTP 403"), "{}", s.message);
    assert!(
        s.history
            .last()
            .unwrap()
            .message
            .contains("(1 of 2 failures in a row)")
    );
    run.tick(1);
    run.answer("smoke", false);
    run.tick(1);
    let s = run.status();
    assert_eq!(s.phase, Phase::RolledBack, "{}", s.message);
    assert!(
        s.message
            .contains("pre-rollout hook \"smoke\" failed: HTTP 403")
    );
    assert_eq!(run.served, 0);
}

#[test]
fn with_traffic_a_failing_rollout_hook_or_a_yes_from_a_rollback_hook_rolls_back() {
    for (kind, ok, words) in [
        (WebhookKind::Rollout, false, "rollout hook \"h\" failed"),
        (
            WebhookKind::Rollback,
            true,
            "rollback hook \"h\" answered HTTP 200",
        ),
    ] {
        let mut run = Run::new(RolloutSpec {
            steps: vec![weight(20), crate::test_steps::pause(None), weight(100)],
            ..spec(vec![hook("h", kind)], 1)
        });
        run.tick(1);
        run.tick(1);
        assert_eq!(run.served, 20);
        assert_eq!(run.wanted(), ["h"]);
        // The other answer does nothing.
        run.answer("h", !ok);
        run.tick(1);
        assert_eq!(run.status().phase, Phase::Paused, "{kind:?}");
        run.answer("h", ok);
        run.tick(1);
        let s = run.status();
        assert_eq!(s.phase, Phase::RolledBack, "{kind:?}");
        assert!(s.message.contains(words), "{}", s.message);
        assert_eq!(run.served, 0);
    }
}

#[test]
fn confirm_promotion_holds_the_end_until_it_says_yes_then_post_rollout_is_told_once() {
    let mut run = Run::new(spec(
        vec![
            hook("promote?", WebhookKind::ConfirmPromotion),
            hook("tell", WebhookKind::PostRollout),
        ],
        1,
    ));
    for _ in 0..4 {
        run.tick(1);
    }
    assert_eq!(run.served, 100);
    assert_eq!(run.status().phase, Phase::Progressing);
    assert!(
        run.status().message.contains("confirm-promotion"),
        "{}",
        run.status().message
    );
    assert_eq!(run.wanted(), ["promote?"]);
    run.answer("promote?", true);
    run.tick(1);
    assert_eq!(run.status().phase, Phase::Succeeded);
    assert_eq!(run.wanted(), ["tell"]);
    run.tick(1);
    run.answer("tell", false);
    assert!(run.wanted().is_empty(), "told once, whatever it answered");
}

#[test]
fn the_payload_is_flaggers() {
    let status = RolloutStatus {
        canary_revision: Some("abc123".into()),
        phase: Phase::RolledBack,
        ..RolloutStatus::default()
    };
    let mut h = hook("tell", WebhookKind::PostRollout);
    h.metadata = Some([("cmd".to_owned(), "hey".to_owned())].into());
    assert_eq!(
        serde_json::to_value(payload("my-app", "default", &h, &status)).unwrap(),
        serde_json::json!({
            "name": "my-app",
            "namespace": "default",
            "phase": "Failed",
            "checksum": "abc123",
            "metadata": {"cmd": "hey"}
        })
    );
    let gate = hook("gate", WebhookKind::ConfirmRollout);
    let v = serde_json::to_value(payload("my-app", "default", &gate, &status)).unwrap();
    assert_eq!(v["phase"], "Waiting");
    assert!(v.get("metadata").is_none());
}
