//! The engine's decisions, driven through time: one test per behaviour,
//! each a rollout played against the engine by a small backend stand-in
//! (`Sim`). Over 600 lines because every behaviour of the state machine has
//! its case here.

use std::time::Duration;

use weir_api::rollout::{AnalysisSpec, RolloutStep, SuccessRateGoal};
use weir_api::version_stats::{BucketEdges, LatencyHistogram, VersionCounts};

use super::*;
use crate::capacity::{CanaryHpa, CpuTarget};
use crate::test_steps::{gate, pause, weight};

fn spec(steps: Vec<RolloutStep>, failure_limit: u32) -> RolloutSpec {
    RolloutSpec {
        virtual_service: "my-app".into(),
        stable: "v1".into(),
        canary: "v2".into(),
        steps,
        analysis: Some(AnalysisSpec {
            interval: Some("5s".into()),
            success_rate: Some(SuccessRateGoal {
                min: Some(99.0),
                max_drop_from_stable: None,
            }),
            failure_limit: Some(failure_limit),
            ..AnalysisSpec::default()
        }),
        progress_deadline: Some("2m".into()),
        ..RolloutSpec::default()
    }
}

/// A rollout driven through time; the backend's part (the gateway
/// serving a weight change at once, windows of counts from a baseline
/// taken when a step begins) is played here.
struct Sim {
    spec: RolloutSpec,
    status: Option<RolloutStatus>,
    now: SystemTime,
    served: u32,
    canary: VersionCounts,
    stable: VersionCounts,
    baseline: (SystemTime, VersionCounts, VersionCounts),
    set: Vec<u32>,
    capacity: Option<CapacityInputs>,
    scaled: Vec<i32>,
    revision: Option<String>,
    /// Intents issued so far (their ids are their numbers).
    issued: u32,
    /// The header route the gateway serves (its step), and the mirror.
    header: Option<usize>,
    mirror: u32,
}

impl Sim {
    fn new(spec: RolloutSpec) -> Self {
        let empty = VersionCounts {
            latency: LatencyHistogram::empty(BucketEdges::Fine),
            ..VersionCounts::default()
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        Self {
            spec,
            status: None,
            now,
            served: 0,
            canary: empty.clone(),
            stable: empty.clone(),
            baseline: (now, empty.clone(), empty),
            set: Vec::new(),
            capacity: None,
            scaled: Vec::new(),
            revision: Some("rev1".into()),
            issued: 0,
            header: None,
            mirror: 0,
        }
    }

    /// `secs` later, with `requests` canary requests of which `errors` 5xx.
    fn tick(&mut self, secs: u64, requests: u64, errors: u64, command: Option<Command>) -> Phase {
        let intent = command.map(|command| {
            self.issued += 1;
            CommandIntent {
                id: self.issued.to_string(),
                command,
                step: None,
            }
        });
        self.traffic(secs, (requests, errors), (0, 0), intent.as_ref())
    }

    /// `secs` later, with canary and stable `(requests, errors)`.
    fn traffic(
        &mut self,
        secs: u64,
        canary: (u64, u64),
        stable: (u64, u64),
        command: Option<&CommandIntent>,
    ) -> Phase {
        self.now += Duration::from_secs(secs);
        for (counts, (requests, errors)) in [(&mut self.canary, canary), (&mut self.stable, stable)]
        {
            counts.requests += requests;
            counts.failures += errors;
            counts.latency.add(1.0, requests);
        }
        let window = Window {
            start: self.baseline.0,
            end: self.now,
            canary: self.canary.since(&self.baseline.1),
            stable: self.stable.since(&self.baseline.2),
        };
        let obs = Observation {
            now: self.now,
            served_weight: self.served,
            window: Some(&window),
            command,
            capacity: self.capacity.as_ref(),
            canary_revision: self.revision.as_deref(),
            hooks: &[],
            header_route: self.header,
            mirror: self.mirror,
            generation: None,
        };
        let prior = self.status.as_ref().map_or(Prior::New, Prior::Known);
        let (status, actions) = step(&self.spec, prior, &obs);
        for action in actions {
            match action {
                RolloutAction::SetCanaryWeight(w) => {
                    self.served = w;
                    self.set.push(w);
                }
                RolloutAction::ScaleCanary(n) => {
                    self.scaled.push(n);
                    if let Some(c) = &mut self.capacity {
                        c.replicas = n;
                    }
                }
                RolloutAction::SetHeaderRoute(step) => self.header = step,
                RolloutAction::SetMirror(p) => self.mirror = p,
            }
        }
        if status.step_started != self.baseline.0 {
            self.baseline = (self.now, self.canary.clone(), self.stable.clone());
        }
        let phase = status.phase;
        self.status = Some(status);
        phase
    }

    fn step_index(&self) -> usize {
        self.status.as_ref().unwrap().current_step
    }

    fn status(&self) -> &RolloutStatus {
        self.status.as_ref().unwrap()
    }

    fn history_has(&self, text: &str) -> bool {
        self.status()
            .history
            .iter()
            .any(|e| e.message.contains(text))
    }
}

#[test]
fn steps_run_in_order_each_weight_served_before_the_next() {
    let mut sim = Sim::new(spec(
        vec![
            weight(10),
            gate(),
            weight(50),
            pause(Some("10s")),
            weight(100),
        ],
        1,
    ));
    assert_eq!(sim.tick(0, 0, 0, None), Phase::Progressing);
    assert_eq!(sim.set, [10], "the first step asks for 10 %");
    assert_eq!(
        sim.step_index(),
        0,
        "not past it until the gateway serves it"
    );
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.step_index(), 1, "served: on to the analysis gate");
    // The gate waits for a conclusive Pass: 600 good requests do it.
    sim.tick(5, 600, 0, None);
    assert_eq!(
        sim.step_index(),
        2,
        "{:?}",
        sim.status.as_ref().unwrap().verdicts
    );
    assert_eq!(sim.set, [10, 50]);
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.step_index(), 3);
    sim.tick(5, 0, 0, None);
    assert_eq!(sim.step_index(), 3, "pausing 10 s");
    sim.tick(5, 0, 0, None);
    assert_eq!(sim.set, [10, 50, 100]);
    assert_eq!(sim.tick(1, 0, 0, None), Phase::Succeeded);
    assert_eq!(sim.served, 100);
}

/// 100 req/s at 1 ms of CPU each; one canary pod may use 50m.
fn one_ready_canary_replica() -> CapacityInputs {
    CapacityInputs {
        rate: Some(100.0),
        cpu_per_request: Some(1.0),
        hpa: Some(CanaryHpa {
            min: 1,
            max: 10,
            targets: vec![CpuTarget::Utilization(50)],
        }),
        cpu_request: Some(100),
        replicas: 1,
        ready: 1,
    }
}

#[test]
fn the_canary_gets_its_replicas_before_its_share_grows() {
    let mut sim = Sim::new(spec(vec![weight(10), weight(100), weight(0)], 1));
    sim.capacity = Some(one_ready_canary_replica());
    sim.tick(0, 0, 0, None);
    assert_eq!(sim.set, [10], "10 % fits the one ready replica");
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.scaled, [2], "100 % needs two: scaled first");
    assert_eq!(sim.set, [10], "and not shifted yet");
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.set, [10], "one of two ready: waiting");
    let status = sim.status.clone().unwrap();
    assert!(
        status
            .message
            .contains("waiting for 2 ready canary replicas"),
        "{}",
        status.message
    );
    sim.capacity.as_mut().unwrap().ready = 2;
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.set, [10, 100], "both ready: shifted");
    let status = sim.status.clone().unwrap();
    let estimate = status.capacity.clone().unwrap();
    assert_eq!(
        (estimate.share, estimate.needed, estimate.decision),
        (100, Some(2), CapacityDecision::Shift)
    );
    let history: Vec<&str> = status.history.iter().map(|e| e.message.as_str()).collect();
    let scaling = history
        .iter()
        .position(|m| m.contains("needs 2 replicas") && m.contains("scaling the canary from 1"))
        .unwrap();
    let ready = history
        .iter()
        .position(|m| m.contains("2 canary replicas ready for canary 100 %"))
        .unwrap();
    assert!(scaling < ready, "{history:#?}");
    // Lowering the weight never waits for capacity.
    sim.capacity.as_mut().unwrap().ready = 0;
    sim.tick(1, 0, 0, None);
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.set, [10, 100, 0]);
}

#[test]
fn a_canary_that_never_gets_ready_is_rolled_back_at_the_deadline() {
    let mut sim = Sim::new(spec(vec![weight(10), weight(100)], 1));
    sim.capacity = Some(one_ready_canary_replica());
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.scaled, [2]);
    for _ in 0..23 {
        assert_eq!(sim.tick(5, 0, 0, None), Phase::Progressing);
    }
    assert_eq!(sim.tick(6, 0, 0, None), Phase::RolledBack);
    assert_eq!(sim.set, [10, 0]);
    let status = sim.status.clone().unwrap();
    assert!(
        status
            .message
            .contains("waiting for 2 ready canary replicas"),
        "{}",
        status.message
    );
}

#[test]
fn an_analysis_still_inconclusive_at_the_deadline_pauses_for_a_person_instead_of_rolling_back() {
    let mut sim = Sim::new(spec(vec![weight(10), gate(), weight(100)], 1));
    sim.tick(0, 0, 0, None);
    for _ in 0..23 {
        assert_eq!(sim.tick(5, 1, 0, None), Phase::Progressing);
    }
    let status = sim.status().clone();
    assert_eq!(status.current_step, 1, "still at the gate");
    assert_eq!(status.verdicts[0].verdict, Verdict::Inconclusive);
    assert!(status.verdicts[0].requests_needed.is_some());
    assert!(
        status.message.contains("waiting for a conclusive analysis"),
        "{}",
        status.message
    );
    assert_eq!(sim.tick(20, 1, 0, None), Phase::Paused);
    assert_eq!(
        sim.served, 10,
        "nothing found wrong: the canary keeps its share"
    );
    let held = &sim.status().conditions[0];
    assert_eq!(
        (held.kind.as_str(), held.reason.as_str()),
        ("Held", "InconclusiveAtDeadline")
    );
    // Analysis goes on while paused, and the deadline does not roll back.
    assert_eq!(sim.tick(600, 1, 0, None), Phase::Paused);
    // `resume` starts the deadline's clock again; `promote` passes the gate.
    assert_eq!(
        sim.tick(1, 0, 0, Some(Command::Promote)),
        Phase::Progressing
    );
    assert_eq!(sim.set, [10, 100]);
    assert!(sim.status().conditions.is_empty());
}

#[test]
fn a_command_is_applied_once_and_only_at_the_step_it_was_meant_for() {
    let mut sim = Sim::new(spec(
        vec![
            weight(10),
            pause(None),
            weight(50),
            pause(None),
            weight(100),
        ],
        1,
    ));
    sim.tick(0, 0, 0, None);
    assert_eq!(sim.tick(1, 0, 0, None), Phase::Paused);
    let promote = CommandIntent {
        id: "a".into(),
        command: Command::Promote,
        step: Some(1),
    };
    sim.traffic(1, (0, 0), (0, 0), Some(&promote));
    assert_eq!(sim.set, [10, 50]);
    // Delivered again (a retried request): acknowledged already, ignored.
    sim.traffic(1, (0, 0), (0, 0), Some(&promote));
    assert_eq!(
        sim.step_index(),
        3,
        "paused at the second pause, not past it"
    );
    // Another promote meant for step 1 arrives late: not applied.
    let late = CommandIntent {
        id: "b".into(),
        ..promote.clone()
    };
    assert_eq!(sim.traffic(1, (0, 0), (0, 0), Some(&late)), Phase::Paused);
    assert_eq!(sim.step_index(), 3);
    let acks = &sim.status().commands;
    assert_eq!(acks.len(), 2);
    assert_eq!(
        (acks[0].id.as_str(), acks[0].outcome.as_str()),
        ("a", "applied")
    );
    assert!(
        acks[1]
            .outcome
            .contains("meant for step 1, the rollout is at step 3"),
        "{acks:?}"
    );
    // One that does not apply in this phase says so.
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Retry)), Phase::Paused);
    assert!(
        sim.status().commands[2]
            .outcome
            .contains("nothing to Retry in phase Paused")
    );
}

#[test]
fn analysis_goes_on_while_paused_and_a_fail_there_rolls_back() {
    let mut sim = Sim::new(spec(vec![weight(10), pause(None), weight(100)], 1));
    sim.tick(0, 0, 0, None);
    assert_eq!(sim.tick(1, 0, 0, None), Phase::Paused);
    assert_eq!(sim.tick(5, 100, 0, None), Phase::Paused);
    assert_eq!(sim.tick(5, 300, 60, None), Phase::RolledBack);
    assert_eq!(sim.set, [10, 0]);
    // Under a manual pause too.
    let mut sim = Sim::new(spec(vec![weight(10), pause(Some("1h")), weight(100)], 1));
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Pause)), Phase::Paused);
    assert_eq!(sim.tick(5, 300, 60, None), Phase::RolledBack);
}

#[test]
fn pauses_are_exempt_from_the_progress_deadline() {
    // A 2m deadline and a 1h pause: the pause runs its hour.
    let mut sim = Sim::new(spec(vec![weight(10), pause(Some("1h")), weight(100)], 1));
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    for _ in 0..59 {
        assert_eq!(sim.tick(60, 0, 0, None), Phase::Progressing);
    }
    sim.tick(61, 0, 0, None);
    assert_eq!(sim.tick(1, 0, 0, None), Phase::Succeeded);
    assert_eq!(sim.set, [10, 100]);
}

#[test]
fn the_weight_it_set_is_held_in_every_phase_and_the_history_says_so() {
    let mut sim = Sim::new(spec(vec![weight(20), pause(Some("1m")), weight(100)], 1));
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    // Someone routes by hand mid-pause: put back.
    sim.served = 50;
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.served, 20);
    assert!(sim.history_has("served canary 50 % where this rollout holds 20 %: put back"));
    sim.tick(60, 0, 0, None);
    assert_eq!(sim.tick(1, 0, 0, None), Phase::Succeeded);
    // Succeeded: a GitOps re-sync of the old weights is put back too.
    sim.served = 0;
    assert_eq!(sim.tick(1, 0, 0, None), Phase::Succeeded);
    assert_eq!(sim.served, 100);
    assert_eq!(sim.set, [20, 20, 100, 100]);
}

#[test]
fn a_new_canary_revision_restarts_it_and_an_edit_while_rolled_back_does_not_re_promote() {
    let mut sim = Sim::new(spec(vec![weight(10), pause(Some("1h")), weight(100)], 1));
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.step_index(), 1);
    assert_eq!(sim.status().canary_revision.as_deref(), Some("rev1"));
    sim.revision = Some("rev2".into());
    sim.tick(1, 0, 0, None);
    assert!(sim.history_has("new canary revision rev2 (was rev1): restarted from step 0"));
    assert_eq!(sim.status().canary_revision.as_deref(), Some("rev2"));
    // Rolled back, an edit of the plan leaves it rolled back.
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Abort)), Phase::Aborted);
    sim.spec.steps[1] = pause(Some("30m"));
    assert_eq!(sim.tick(1, 0, 0, None), Phase::Aborted);
    assert_eq!(sim.served, 0);
    assert!(sim.history_has("stays rolled back"));
    // A new revision starts it again.
    sim.revision = Some("rev3".into());
    assert_eq!(sim.tick(1, 0, 0, None), Phase::Progressing);
    assert_eq!(sim.served, 10);
}

#[test]
fn fields_that_do_not_change_the_plan_do_not_restart_it() {
    let mut sim = Sim::new(spec(vec![weight(10), pause(Some("1h")), weight(100)], 1));
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    sim.spec.progress_deadline = Some("20m".into());
    sim.spec.analysis.as_mut().unwrap().failure_limit = Some(3);
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.step_index(), 1);
    assert!(!sim.history_has("restarted"));
}

#[test]
fn an_unreadable_status_holds_the_served_weight_until_abort_or_retry() {
    let mut sim = Sim::new(spec(vec![weight(10), gate(), weight(100)], 1));
    sim.served = 50;
    let obs = Observation {
        now: sim.now,
        served_weight: 50,
        window: None,
        command: None,
        capacity: None,
        canary_revision: None,
        hooks: &[],
        header_route: None,
        mirror: 0,
        generation: None,
    };
    let (held, actions) = step(
        &sim.spec,
        Prior::Unreadable("expected value at line 1"),
        &obs,
    );
    assert!(actions.is_empty(), "never restarts from step 0");
    assert_eq!((held.phase, held.desired_weight), (Phase::Paused, Some(50)));
    assert_eq!(held.conditions[0].reason, "StatusUnreadable");
    sim.status = Some(held);
    // Promote and resume cannot go on from an unknown step.
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Promote)), Phase::Paused);
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Resume)), Phase::Paused);
    assert_eq!(sim.served, 50);
    assert_eq!(
        sim.tick(600, 0, 0, None),
        Phase::Paused,
        "held, not rolled back"
    );
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Retry)), Phase::Progressing);
    assert_eq!(sim.served, 10, "retried from step 0");
}

#[test]
fn a_shared_incident_holds_instead_of_blaming_the_canary() {
    let mut sim = Sim::new(spec(vec![weight(10), gate(), weight(100)], 1));
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    // Both versions at 10 % errors: a dependency, not the canary.
    assert_eq!(
        sim.traffic(5, (300, 30), (2700, 270), None),
        Phase::Progressing
    );
    let status = sim.status().clone();
    assert_eq!(status.conditions[0].reason, "SharedIncident");
    assert!(
        status.message.contains("shared incident"),
        "{}",
        status.message
    );
    assert_eq!(sim.served, 10);
    // Held past the deadline, and judged again when it is over.
    assert_eq!(
        sim.traffic(200, (300, 30), (2700, 270), None),
        Phase::Progressing
    );
    assert_eq!(sim.step_index(), 1);
}

#[test]
fn a_capacity_decision_is_kept_when_a_measurement_goes_missing() {
    let mut sim = Sim::new(spec(vec![weight(10), weight(100)], 1));
    sim.capacity = Some(one_ready_canary_replica());
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.scaled, [2], "100 % needs two");
    // The stable's CPU cannot be measured any more: still waiting for two.
    sim.capacity.as_mut().unwrap().cpu_per_request = None;
    for _ in 0..3 {
        sim.tick(2, 0, 0, None);
        assert_eq!(sim.set, [10], "{}", sim.status().message);
    }
    assert!(
        sim.status()
            .message
            .contains("waiting for 2 ready canary replicas")
    );
    sim.capacity.as_mut().unwrap().ready = 2;
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.set, [10, 100]);
}

#[test]
fn fail_verdicts_roll_back_at_the_failure_limit() {
    let mut sim = Sim::new(spec(vec![weight(10), gate(), weight(100)], 2));
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    // 10 % errors: a conclusive Fail at the first analysis.
    assert_eq!(
        sim.tick(5, 300, 30, None),
        Phase::Progressing,
        "one Fail of two allowed"
    );
    assert_eq!(sim.status.as_ref().unwrap().failures_in_row, 1);
    assert_eq!(sim.tick(5, 300, 30, None), Phase::RolledBack);
    assert_eq!(sim.set, [10, 0]);
    let status = sim.status.clone().unwrap();
    assert!(
        status
            .message
            .starts_with("analysis failed (success-rate Fail"),
        "{}",
        status.message
    );
    // Retry starts again from step 0.
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Retry)), Phase::Progressing);
    assert_eq!(sim.step_index(), 0);
    assert_eq!(sim.set, [10, 0, 10]);
}

#[test]
fn pause_resume_promote_and_promote_full() {
    let mut sim = Sim::new(spec(
        vec![
            weight(10),
            pause(None),
            weight(50),
            pause(Some("1h")),
            weight(100),
        ],
        1,
    ));
    sim.tick(0, 0, 0, None);
    assert_eq!(sim.tick(1, 0, 0, None), Phase::Paused, "pause: {{}} waits");
    // A paused rollout's deadline does not run.
    assert_eq!(sim.tick(600, 0, 0, None), Phase::Paused);
    assert_eq!(
        sim.tick(1, 0, 0, Some(Command::Promote)),
        Phase::Progressing
    );
    assert_eq!(sim.set, [10, 50]);
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.step_index(), 3, "the hour-long pause");
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Pause)), Phase::Paused);
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Resume)), Phase::Progressing);
    assert_eq!(sim.step_index(), 3, "a timed pause goes on after resume");
    assert_eq!(
        sim.tick(1, 0, 0, Some(Command::PromoteFull)),
        Phase::Progressing
    );
    assert_eq!(sim.served, 100);
    assert_eq!(sim.tick(1, 0, 0, None), Phase::Succeeded);
    // Commands after the end change nothing.
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Abort)), Phase::Succeeded);
    assert_eq!(sim.served, 100);
}

#[test]
fn abort_rolls_back_at_once_and_retry_starts_over() {
    let mut sim = Sim::new(spec(vec![weight(30), pause(Some("1m")), weight(100)], 1));
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Abort)), Phase::Aborted);
    assert_eq!(sim.served, 0);
    assert_eq!(sim.tick(100, 0, 0, None), Phase::Aborted, "stays aborted");
    assert_eq!(sim.tick(1, 0, 0, Some(Command::Retry)), Phase::Progressing);
    assert_eq!(sim.served, 30);
    assert_eq!(sim.step_index(), 0);
}

#[test]
fn a_spec_edit_restarts_from_step_zero() {
    let mut sim = Sim::new(spec(vec![weight(10), pause(Some("1h")), weight(100)], 1));
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.step_index(), 1);
    sim.spec.steps[1] = pause(Some("30m"));
    sim.tick(1, 0, 0, None);
    let status = sim.status.clone().unwrap();
    assert_eq!(
        status.current_step, 1,
        "restarted, and its first weight is already served"
    );
    assert!(
        status
            .history
            .iter()
            .any(|e| e.message == "spec changed: restarted from step 0")
    );
}

#[test]
fn own_traffic_is_asked_for_only_while_a_gate_waits() {
    let mut with_traffic = spec(vec![weight(10), gate(), weight(100)], 1);
    with_traffic.traffic = Some(weir_api::rollout::TrafficSpec { rate: 50.0 });
    let mut sim = Sim::new(with_traffic);
    sim.tick(0, 0, 0, None);
    assert_eq!(
        sim.status.as_ref().unwrap().traffic_rate,
        None,
        "setting a weight"
    );
    sim.tick(1, 0, 0, None);
    assert_eq!(
        sim.status.as_ref().unwrap().traffic_rate,
        Some(50.0),
        "the gate lacks requests"
    );
    sim.tick(5, 600, 0, None);
    assert_eq!(sim.step_index(), 2);
    assert_eq!(
        sim.status.as_ref().unwrap().traffic_rate,
        None,
        "concluded: no more"
    );
    // Without spec.traffic, a waiting gate asks for nothing.
    let mut plain = Sim::new(spec(vec![weight(10), gate()], 1));
    plain.tick(0, 0, 0, None);
    plain.tick(1, 0, 0, None);
    assert_eq!(plain.status.as_ref().unwrap().traffic_rate, None);
}

#[test]
fn a_rollback_keeps_the_stable_at_all_traffic_until_retried() {
    let mut sim = Sim::new(spec(vec![weight(50), gate(), weight(100)], 1));
    sim.tick(0, 0, 0, None);
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.tick(5, 200, 100, None), Phase::RolledBack);
    // Someone sets the weights by hand afterwards: the rollback holds.
    sim.served = 20;
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.served, 0);
}

#[test]
fn a_command_that_does_nothing_in_its_phase_is_not_applied_and_says_why() {
    // (phase, command, applied); `Paused` is a user's pause mid-step.
    use Command::*;
    use Phase::*;
    let cases = [
        (Progressing, Pause, true),
        (Paused, Pause, false),
        (Progressing, Resume, false),
        (Paused, Resume, true),
        (Progressing, Promote, true),
        (Paused, Promote, true),
        (Succeeded, Promote, false),
        (RolledBack, Promote, false),
        (Succeeded, PromoteFull, false),
        (Aborted, PromoteFull, false),
        (Progressing, Abort, true),
        (Succeeded, Abort, false),
        (Aborted, Abort, false),
        (Progressing, Retry, false),
        (Succeeded, Retry, false),
        (RolledBack, Retry, true),
        (Aborted, Retry, true),
        (Succeeded, YieldRoute, true),
    ];
    for (phase, command, applied) in cases {
        let mut sim = Sim::new(spec(vec![weight(20), pause(None), weight(100)], 1));
        sim.tick(1, 0, 0, None);
        sim.tick(1, 0, 0, None);
        let s = sim.status.as_mut().unwrap();
        s.phase = phase;
        if phase == Succeeded {
            s.current_step = 3;
        }
        sim.tick(1, 0, 0, Some(command));
        let ack = sim
            .status
            .as_ref()
            .unwrap()
            .commands
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            ack.outcome == "applied",
            applied,
            "{command:?} in {phase:?}: {}",
            ack.outcome
        );
        if !applied {
            assert!(
                ack.outcome
                    .contains(&format!("nothing to {command:?} in phase {phase:?}")),
                "{}",
                ack.outcome
            );
        }
    }
}

#[test]
fn header_and_mirror_steps_are_served_judged_and_cleared_at_the_end() {
    use weir_api::rollout::{HeaderRouteStep, MirrorStep};
    let header = RolloutStep {
        set_header_route: Some(HeaderRouteStep {
            matches: vec![weir_api::istio::HttpMatchRequest::default()],
        }),
        ..RolloutStep::default()
    };
    let mirror = |percentage| RolloutStep {
        set_mirror: Some(MirrorStep { percentage }),
        ..RolloutStep::default()
    };
    let mut sim = Sim::new(spec(
        vec![header, gate(), mirror(50), gate(), weight(100)],
        1,
    ));
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.header, Some(0), "the header route of step 0");
    assert_eq!(sim.served, 0);
    // At weight 0 the header route's requests are judged.
    for _ in 0..12 {
        sim.tick(5, 100, 0, None);
    }
    assert_eq!(
        sim.mirror,
        50,
        "{:?}",
        sim.status.as_ref().map(|s| &s.message)
    );
    let phase = (0..24)
        .map(|_| sim.tick(5, 100, 0, None))
        .find(|p| *p != Phase::Progressing);
    assert_eq!(phase, Some(Phase::Succeeded));
    assert_eq!(sim.served, 100);
    assert_eq!((sim.header, sim.mirror), (None, 0), "cleared at the end");
}

#[test]
fn a_canary_failing_its_header_route_is_rolled_back_and_loses_the_route() {
    use weir_api::rollout::HeaderRouteStep;
    let header = RolloutStep {
        set_header_route: Some(HeaderRouteStep {
            matches: vec![weir_api::istio::HttpMatchRequest::default()],
        }),
        ..RolloutStep::default()
    };
    let mut sim = Sim::new(spec(vec![header, gate(), weight(100)], 1));
    sim.tick(1, 0, 0, None);
    assert_eq!(sim.header, Some(0));
    let phase = (0..20).map(|_| sim.tick(5, 100, 30, None)).last().unwrap();
    assert_eq!(phase, Phase::RolledBack);
    assert_eq!((sim.served, sim.header), (0, None));
}
