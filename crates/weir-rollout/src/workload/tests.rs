//! A workload's releases driven through time against a small backend
//! stand-in: what runs, what each subset selects, the weight.

use std::time::Duration;

use weir_api::rollout::{CommandIntent, RolloutCommand};

use super::*;
use crate::test_steps::weight;

/// The backend's part: weights served at once, revisions run as asked,
/// their pods ready when `ready` says.
struct Sim {
    spec: RolloutSpec,
    status: Option<RolloutStatus>,
    unreadable: bool,
    now: SystemTime,
    served: u32,
    workload: WorkloadObservation,
    selected: (String, String),
    pods_ready: bool,
    command: Option<CommandIntent>,
}

impl Sim {
    fn new(steps: Vec<weir_api::rollout::RolloutStep>, replicas: i32) -> Self {
        Self {
            spec: RolloutSpec {
                virtual_service: "my-app".into(),
                stable: "stable".into(),
                canary: "canary".into(),
                steps,
                scale_down_delay: Some("30s".into()),
                ..RolloutSpec::default()
            },
            status: None,
            unreadable: false,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            served: 0,
            workload: WorkloadObservation {
                template: "a".into(),
                replicas,
                revisions: BTreeMap::new(),
            },
            selected: (String::new(), String::new()),
            pods_ready: true,
            command: None,
        }
    }

    /// One decision, carried out; the actions it asked for.
    fn tick(&mut self) -> Vec<WorkloadStep> {
        let obs = Observation {
            now: self.now,
            served_weight: self.served,
            window: None,
            command: self.command.as_ref(),
            capacity: None,
            canary_revision: None,
            hooks: &[],
            header_route: None,
            mirror: 0,
            generation: None,
        };
        let prior = match (&self.status, self.unreadable) {
            (_, true) => Prior::Unreadable("garbled"),
            (Some(s), false) => Prior::Known(s),
            (None, false) => Prior::New,
        };
        let d = step(&self.spec, prior, &obs, &self.workload);
        self.unreadable = false;
        for a in &d.actions {
            match a {
                WorkloadStep::Rollout(RolloutAction::SetCanaryWeight(w)) => self.served = *w,
                WorkloadStep::Rollout(_) => {}
                WorkloadStep::Revision(RevisionAction::Run {
                    revision,
                    role,
                    replicas,
                }) => {
                    // Not ready: no new pod becomes ready, the old stay.
                    let before = self.workload.revisions.get(revision).map_or(0, |r| r.ready);
                    let ready = if self.pods_ready {
                        *replicas
                    } else {
                        before.min(*replicas)
                    };
                    self.workload.revisions.insert(
                        revision.clone(),
                        Running {
                            role: *role,
                            replicas: *replicas,
                            ready,
                        },
                    );
                }
                WorkloadStep::Revision(RevisionAction::Remove { revision }) => {
                    self.workload.revisions.remove(revision);
                }
                WorkloadStep::Revision(RevisionAction::Select { stable, canary }) => {
                    self.selected = (stable.clone(), canary.clone());
                }
            }
        }
        self.status = Some(d.status);
        self.now += Duration::from_secs(1);
        d.actions
    }

    fn status(&self) -> &RolloutStatus {
        self.status.as_ref().unwrap()
    }

    fn running(&self) -> Vec<(String, RevisionRole, i32)> {
        self.workload
            .revisions
            .iter()
            .map(|(k, r)| (k.clone(), r.role, r.replicas))
            .collect()
    }

    /// Ticks until the status' phase is `phase` and no canary runs, at
    /// most `n` times.
    fn until(&mut self, n: usize, done: impl Fn(&Self) -> bool) {
        for _ in 0..n {
            if self.status.is_some() && done(self) {
                return;
            }
            self.tick();
        }
        assert!(done(self), "{:#?}", self.status);
    }
}

fn sel(stable: &str, canary: &str) -> (String, String) {
    (stable.to_owned(), canary.to_owned())
}

#[test]
fn the_first_template_is_the_stable_with_no_steps() {
    let mut sim = Sim::new(vec![weight(20), weight(100)], 3);
    sim.served = 40;
    sim.tick();
    let s = sim.status();
    assert_eq!(s.phase, Phase::Succeeded);
    assert_eq!(s.stable_revision.as_deref(), Some("a"));
    assert_eq!(s.canary_revision, None);
    assert_eq!(sim.running(), [("a".into(), RevisionRole::Stable, 3)]);
    assert_eq!(sim.selected, sel("a", "a"));
    assert_eq!(sim.served, 0, "a weight set by hand is put back to 0");
}

#[test]
fn a_new_template_runs_beside_the_stable_and_is_promoted_after_its_steps() {
    let mut sim = Sim::new(vec![weight(20), weight(50), weight(100)], 4);
    sim.tick();
    sim.workload.template = "b".into();
    sim.tick();
    let s = sim.status().clone();
    assert_eq!((s.phase, s.current_step), (Phase::Progressing, 0));
    assert_eq!(s.canary_revision.as_deref(), Some("b"));
    assert_eq!(sim.served, 0, "a new canary starts at weight 0");
    assert_eq!(
        sim.running(),
        [
            ("a".into(), RevisionRole::Stable, 4),
            // No gate between the setWeights: the share ahead is 100 %,
            // and its replicas come before its traffic.
            ("b".into(), RevisionRole::Canary, 4),
        ]
    );
    assert_eq!(sim.selected, sel("a", "b"));
    sim.until(20, |s| s.status().stable_revision.as_deref() == Some("b"));
    let s = sim.status().clone();
    assert_eq!(s.phase, Phase::Succeeded);
    assert_eq!(s.canary_revision, None);
    assert_eq!(sim.selected, sel("b", "b"));
    assert_eq!(sim.served, 0, "all traffic to the stable subset, now b");
    assert_eq!(
        sim.running(),
        [
            ("a".into(), RevisionRole::Retiring, 4),
            ("b".into(), RevisionRole::Stable, 4),
        ]
    );
    let at = s.revisions.iter().find(|r| r.revision == "a").unwrap();
    assert_eq!(
        at.scale_down_at,
        Some(sim.now - Duration::from_secs(1) + Duration::from_secs(30))
    );
    // The former stable keeps its pods for scaleDownDelay, then goes.
    for _ in 0..28 {
        sim.tick();
    }
    assert!(sim.workload.revisions.contains_key("a"));
    sim.until(3, |s| !s.workload.revisions.contains_key("a"));
    assert_eq!(sim.running(), [("b".into(), RevisionRole::Stable, 4)]);
    assert!(sim.status().revisions.iter().all(|r| r.revision == "b"));
}

#[test]
fn promotion_waits_for_the_canary_to_have_the_stables_replicas_ready() {
    // Steps that end at 50 %: the canary has half the replicas when done.
    let mut sim = Sim::new(vec![weight(50)], 4);
    sim.tick();
    sim.workload.template = "b".into();
    sim.tick();
    assert_eq!(sim.workload.revisions["b"].ready, 2);
    sim.pods_ready = false;
    sim.until(10, |s| {
        s.status().phase == Phase::Succeeded && s.served == 50
    });
    sim.tick();
    assert_eq!(sim.status().stable_revision.as_deref(), Some("a"));
    assert!(
        sim.status().message.contains("waiting for its 4 replicas"),
        "{}",
        sim.status().message
    );
    assert_eq!(sim.selected, sel("a", "b"));
    assert_eq!(sim.served, 50);
    sim.pods_ready = true;
    sim.tick();
    sim.tick();
    assert_eq!(sim.status().stable_revision.as_deref(), Some("b"));
    assert_eq!(sim.selected, sel("b", "b"));
    assert_eq!(sim.served, 0);
}

#[test]
fn a_weight_grows_only_once_the_canarys_replicas_are_ready() {
    let mut sim = Sim::new(vec![weight(10), weight(100)], 3);
    sim.tick();
    sim.pods_ready = false;
    sim.workload.template = "b".into();
    for _ in 0..5 {
        sim.tick();
    }
    assert_eq!(sim.served, 0);
    let s = sim.status();
    assert_eq!((s.phase, s.current_step), (Phase::Progressing, 0));
    assert!(
        s.message.contains("3 replicas to be ready (0 are)"),
        "{}",
        s.message
    );
    sim.pods_ready = true;
    sim.until(10, |s| s.status().stable_revision.as_deref() == Some("b"));
}

#[test]
fn a_template_change_mid_rollout_restarts_with_the_newest_revision_at_weight_0() {
    let mut sim = Sim::new(vec![weight(20), pause_forever(), weight(100)], 2);
    sim.tick();
    sim.workload.template = "b".into();
    sim.until(10, |s| s.served == 20);
    sim.workload.template = "c".into();
    let actions = sim.tick();
    // The weight leaves the canary subset before its revision changes.
    let first_revision_step = actions
        .iter()
        .position(|a| matches!(a, WorkloadStep::Revision(_)))
        .unwrap();
    assert_eq!(
        actions[..first_revision_step],
        [WorkloadStep::Rollout(RolloutAction::SetCanaryWeight(0))]
    );
    assert!(
        actions.contains(&WorkloadStep::Revision(RevisionAction::Remove {
            revision: "b".into()
        }))
    );
    let s = sim.status();
    assert_eq!((s.phase, s.current_step), (Phase::Progressing, 0));
    assert_eq!(s.canary_revision.as_deref(), Some("c"));
    assert!(s.message.contains("replaces canary b"), "{}", s.message);
    assert_eq!(sim.selected, sel("a", "c"));
    assert_eq!(
        sim.running(),
        [
            ("a".into(), RevisionRole::Stable, 2),
            ("c".into(), RevisionRole::Canary, 1)
        ]
    );
}

#[test]
fn the_template_back_to_the_stables_aborts_at_once() {
    let mut sim = Sim::new(vec![weight(50), pause_forever(), weight(100)], 2);
    sim.tick();
    sim.workload.template = "b".into();
    sim.until(10, |s| s.served == 50);
    sim.workload.template = "a".into();
    sim.tick();
    let s = sim.status().clone();
    assert_eq!(s.phase, Phase::Aborted);
    assert_eq!(s.canary_revision, None);
    assert_eq!(sim.served, 0);
    assert_eq!(sim.selected, sel("a", "a"));
    assert_eq!(sim.running(), [("a".into(), RevisionRole::Stable, 2)]);
    // Then it stays there, and the next template starts a new canary.
    sim.tick();
    assert_eq!(sim.status().phase, Phase::Aborted);
    sim.workload.template = "c".into();
    sim.tick();
    assert_eq!(sim.status().phase, Phase::Progressing);
}

#[test]
fn rolled_back_the_canary_is_scaled_to_zero_and_retry_brings_it_back() {
    let mut sim = Sim::new(vec![weight(50), pause_forever(), weight(100)], 2);
    sim.tick();
    sim.workload.template = "b".into();
    sim.until(10, |s| s.served == 50);
    sim.command = Some(intent("1", RolloutCommand::Abort));
    sim.tick();
    sim.tick();
    assert_eq!(sim.status().phase, Phase::Aborted);
    assert_eq!(sim.served, 0);
    assert_eq!(
        sim.running(),
        [
            ("a".into(), RevisionRole::Stable, 2),
            ("b".into(), RevisionRole::Canary, 0)
        ]
    );
    sim.command = Some(intent("2", RolloutCommand::Retry));
    sim.until(10, |s| s.served == 50);
    assert_eq!(sim.workload.revisions["b"].replicas, 1);
}

#[test]
fn a_command_with_no_canary_to_act_on_is_answered_not_applied() {
    let mut sim = Sim::new(vec![weight(50), weight(100)], 1);
    sim.tick();
    sim.command = Some(intent("1", RolloutCommand::Promote));
    sim.tick();
    let ack = sim.status().commands.last().unwrap().clone();
    assert_eq!(ack.id, "1");
    assert!(
        ack.outcome.starts_with("not applied: no canary"),
        "{}",
        ack.outcome
    );
}

#[test]
fn an_unreadable_status_adopts_what_runs_and_never_promotes_the_canary_unjudged() {
    let mut sim = Sim::new(vec![weight(50), pause_forever(), weight(100)], 2);
    sim.tick();
    sim.workload.template = "b".into();
    sim.until(10, |s| s.served == 50);
    sim.unreadable = true;
    sim.tick();
    let s = sim.status();
    assert_eq!(
        s.stable_revision.as_deref(),
        Some("a"),
        "the running stable, not the template"
    );
    assert_eq!((s.phase, s.current_step), (Phase::Progressing, 0));
    assert_eq!(s.canary_revision.as_deref(), Some("b"));
    assert_eq!(sim.served, 0, "restarted at weight 0");
    assert_eq!(sim.selected, sel("a", "b"));
}

#[test]
fn the_canarys_replicas_follow_the_share_it_is_about_to_get() {
    // (steps, from step, holding, share)
    let cases = [
        (vec![weight(10), weight(50)], 0, 0, 50),
        (vec![weight(10), pause_forever(), weight(50)], 0, 0, 10),
        (vec![weight(10), pause_forever(), weight(50)], 1, 10, 10),
        (vec![weight(10), pause_forever(), weight(50)], 2, 10, 50),
        (vec![weight(30)], 1, 30, 30),
    ];
    for (steps, from, holding, share) in cases {
        let spec = RolloutSpec {
            steps,
            ..RolloutSpec::default()
        };
        assert_eq!(next_share(&spec, from, holding), share, "from {from}");
    }
    // (total, share, replicas): at least one, rounded up.
    for (total, share, replicas) in [(4, 50, 2), (4, 10, 1), (10, 15, 2), (0, 50, 1), (3, 100, 3)] {
        assert_eq!(
            share_replicas(total, share),
            replicas,
            "{total} × {share} %"
        );
    }
}

fn pause_forever() -> weir_api::rollout::RolloutStep {
    crate::test_steps::pause(None)
}

fn intent(id: &str, command: RolloutCommand) -> CommandIntent {
    CommandIntent {
        id: id.into(),
        command,
        step: None,
    }
}

#[test]
fn a_command_taken_while_the_canary_waits_for_replicas_is_kept() {
    let mut sim = Sim::new(vec![weight(10), pause_forever(), weight(100)], 4);
    sim.tick();
    sim.workload.template = "b".into();
    sim.until(10, |s| s.status().phase == Phase::Paused);
    // Promoted past the pause: the next weight (100 %) needs 4 replicas.
    sim.pods_ready = false;
    sim.command = Some(intent("1", RolloutCommand::Promote));
    sim.tick();
    let s = sim.status().clone();
    assert_eq!(
        s.commands.last().map(|a| a.outcome.as_str()),
        Some("applied")
    );
    assert_eq!((s.phase, s.current_step), (Phase::Progressing, 2));
    assert_eq!(sim.served, 10, "the weight waits for the replicas");
    assert!(
        s.message.contains("4 replicas to be ready"),
        "{}",
        s.message
    );
    sim.pods_ready = true;
    sim.until(10, |s| s.status().stable_revision.as_deref() == Some("b"));
}
