//! The rollout state machine: given a Rollout's spec, its status, the time,
//! the weight the gateway serves, the gateway's cumulative per-version
//! counters and at most one user command, the next status and the weight
//! to set. Pure: the runtime's Rollout controller supplies every input and
//! carries out the weight change through the same path as `weir route`;
//! the next step starts only once the gateway serves the new weight.
//!
//! Choices where Argo Rollouts and Flagger differ or are silent:
//! - analysis runs in the background from the first non-zero canary weight
//!   over the traffic since the current step began, every interval; a
//!   `analysis` step waits for a Pass; `failureLimit` Fail verdicts in a
//!   row roll back (Inconclusive neither counts nor resets the row);
//! - `pause: {}` and `weir rollout pause` set phase Paused, which stops the
//!   progress deadline's clock (as Argo's pauses do);
//! - a rollback (Fail, deadline, abort) shifts all weight to the stable at
//!   once; `retry` starts again from step 0;
//! - editing the spec of a running Rollout restarts it from step 0;
//! - before a `setWeight` raises the canary's weight, the canary gets the
//!   replicas its new share needs ([`super::capacity`]) and the shift waits
//!   for them to be ready (the wait counts against the progress deadline);
//!   lowering it, rolling back and `promote --full` shift at once.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use weir_api::rollout::{RolloutSpec, StepKind, defaults};
use weir_gateway::version_stats::VersionCounts;

use super::analysis::{Goals, Judgement, Verdict, judge, overall};
use super::capacity::{CapacityDecision, CapacityEstimate, CapacityInputs, replicas_for_share};

/// Where a rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Working through its steps.
    Progressing,
    /// Waiting for `weir rollout promote` or `resume`.
    Paused,
    /// Every step done.
    Succeeded,
    /// Rolled back by a Fail verdict or the progress deadline.
    RolledBack,
    /// Rolled back by `weir rollout abort`.
    Aborted,
}

/// Every phase, for metrics that show one as 1 and the others as 0.
pub const ALL_PHASES: [Phase; 5] = [
    Phase::Progressing,
    Phase::Paused,
    Phase::Succeeded,
    Phase::RolledBack,
    Phase::Aborted,
];

impl Phase {
    /// Whether it is over (until `retry`).
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::RolledBack | Phase::Aborted)
    }
}

/// A user's command (`weir rollout ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Past the current pause or analysis gate.
    Promote,
    /// Straight to the end: all weight to the canary.
    PromoteFull,
    /// Stop where it is.
    Pause,
    /// Go on after a pause.
    Resume,
    /// All weight to the stable now.
    Abort,
    /// Start again after RolledBack or Aborted.
    Retry,
}

/// The counters at the start of the current step: the analysis window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The canary's.
    pub canary: VersionCounts,
    /// The stable's.
    pub stable: VersionCounts,
}

/// One line of the rollout's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When (RFC 3339).
    pub time: String,
    /// What happened.
    pub message: String,
}

/// How many history lines are kept.
pub const HISTORY: usize = 20;

/// A Rollout's status: what the runtime stores and `weir rollout status` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Where it is.
    pub phase: Phase,
    /// The step it is on (the number of steps when done).
    pub current_step: usize,
    /// The canary's weight the gateway serves.
    pub canary_weight: u32,
    /// Which spec this status is about (an edit restarts the rollout).
    pub spec_hash: String,
    /// When the current step began.
    pub step_started: SystemTime,
    /// When it last moved forward (the progress deadline's clock).
    pub last_progress: SystemTime,
    /// When the canary was last judged in the current step.
    pub last_analysis: Option<SystemTime>,
    /// How many times it was judged since the rollout started.
    #[serde(default)]
    pub analyses: u64,
    /// Fail verdicts in a row.
    pub failures_in_row: u32,
    /// The counters at the start of the current step.
    pub baseline: Baseline,
    /// The last judgement of each goal.
    pub verdicts: Vec<Judgement>,
    /// The rate (req/s) of the load weir sends itself while an analysis
    /// gate lacks requests (`spec.traffic`); `None`: none now.
    #[serde(default)]
    pub traffic_rate: Option<f64>,
    /// The last capacity estimate before raising the canary's weight.
    #[serde(default)]
    pub capacity: Option<CapacityEstimate>,
    /// What it is doing or waiting for, or why it ended.
    pub message: String,
    /// The latest events, oldest first.
    pub history: Vec<Event>,
}

/// What the engine observes at one moment.
pub struct Observation<'a> {
    /// The wall clock.
    pub now: SystemTime,
    /// The canary's weight the gateway serves now.
    pub served_weight: u32,
    /// The canary's cumulative counters.
    pub canary: &'a VersionCounts,
    /// The stable's cumulative counters.
    pub stable: &'a VersionCounts,
    /// A user's command, if one came.
    pub command: Option<Command>,
    /// What the canary's capacity is estimated from; `None`: the canary's
    /// Deployment is not known, and weights move without an estimate.
    pub capacity: Option<&'a CapacityInputs>,
}

/// What the engine asks of the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutAction {
    /// Route this share (percent) to the canary, the rest to the stable.
    SetCanaryWeight(u32),
    /// Raise the canary Deployment's replicas to this before its share grows.
    ScaleCanary(i32),
}

/// A short stable digest of a spec (FNV-1a over its JSON): an edit changes it.
pub fn spec_hash(spec: &RolloutSpec) -> String {
    let text = serde_json::to_string(spec).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl RolloutStatus {
    fn start(spec: &RolloutSpec, obs: &Observation<'_>, why: &str) -> Self {
        let mut s = Self {
            phase: Phase::Progressing,
            current_step: 0,
            canary_weight: obs.served_weight,
            spec_hash: spec_hash(spec),
            step_started: obs.now,
            last_progress: obs.now,
            last_analysis: None,
            analyses: 0,
            failures_in_row: 0,
            baseline: Baseline {
                canary: obs.canary.clone(),
                stable: obs.stable.clone(),
            },
            verdicts: Vec::new(),
            traffic_rate: None,
            capacity: None,
            message: why.to_owned(),
            history: Vec::new(),
        };
        s.record(obs.now, why);
        s
    }

    fn record(&mut self, now: SystemTime, message: &str) {
        self.history.push(Event {
            time: rfc3339(now),
            message: message.to_owned(),
        });
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
    }

    fn advance(&mut self, obs: &Observation<'_>) {
        self.current_step += 1;
        self.step_started = obs.now;
        self.last_progress = obs.now;
        self.last_analysis = None;
        self.baseline = Baseline {
            canary: obs.canary.clone(),
            stable: obs.stable.clone(),
        };
    }

    fn roll_back(&mut self, phase: Phase, why: String, obs: &Observation<'_>) {
        self.phase = phase;
        self.message = why.clone();
        self.record(obs.now, &why);
    }
}

/// One decision. `status` is `None` for a Rollout never seen before.
pub fn step(
    spec: &RolloutSpec,
    status: Option<&RolloutStatus>,
    obs: &Observation<'_>,
) -> (RolloutStatus, Vec<RolloutAction>) {
    let mut s = match status {
        None => RolloutStatus::start(spec, obs, "started"),
        Some(s) if s.spec_hash != spec_hash(spec) => {
            let mut fresh = RolloutStatus::start(spec, obs, "spec changed: restarted from step 0");
            fresh.history = [s.history.clone(), fresh.history].concat();
            fresh
                .history
                .drain(..fresh.history.len().saturating_sub(HISTORY));
            fresh
        }
        Some(s) => s.clone(),
    };
    s.canary_weight = obs.served_weight;
    // Only a waiting analysis gate asks for traffic, below.
    s.traffic_rate = None;
    let steps: Vec<Option<StepKind>> = spec.steps.iter().map(|st| st.kind()).collect();
    let final_weight = |s: &RolloutStatus| match s.phase {
        Phase::RolledBack | Phase::Aborted => Some(0),
        _ => None,
    };

    match obs.command {
        Some(Command::Abort) if !s.phase.is_final() => {
            s.roll_back(
                Phase::Aborted,
                "aborted by `weir rollout abort`: all traffic to the stable".into(),
                obs,
            );
        }
        Some(Command::Retry) if matches!(s.phase, Phase::RolledBack | Phase::Aborted) => {
            let history = s.history.clone();
            s = RolloutStatus::start(spec, obs, "retried from step 0");
            s.history = [history, s.history].concat();
            s.history.drain(..s.history.len().saturating_sub(HISTORY));
        }
        Some(Command::Pause) if s.phase == Phase::Progressing => {
            s.phase = Phase::Paused;
            s.message = "paused by `weir rollout pause`".into();
            s.record(obs.now, "paused by `weir rollout pause`");
        }
        Some(Command::Resume) if s.phase == Phase::Paused => {
            s.phase = Phase::Progressing;
            s.last_progress = obs.now;
            s.record(obs.now, "resumed");
            // An indefinite pause step is what held it: resuming passes it.
            if matches!(steps.get(s.current_step), Some(Some(StepKind::Pause(None)))) {
                s.advance(obs);
            }
        }
        Some(Command::Promote) if !s.phase.is_final() => {
            s.phase = Phase::Progressing;
            s.record(obs.now, &format!("promoted past step {}", s.current_step));
            s.advance(obs);
        }
        Some(Command::PromoteFull) if !s.phase.is_final() => {
            s.phase = Phase::Progressing;
            s.current_step = spec.steps.len();
            s.last_progress = obs.now;
            s.record(obs.now, "promoted to the end: all traffic to the canary");
            if obs.served_weight != 100 {
                s.message = "promoted to the end: setting the canary's weight to 100".into();
                return (s, vec![RolloutAction::SetCanaryWeight(100)]);
            }
        }
        _ => {}
    }

    if let Some(w) = final_weight(&s) {
        let actions = if obs.served_weight != w {
            vec![RolloutAction::SetCanaryWeight(w)]
        } else {
            vec![]
        };
        return (s, actions);
    }
    if s.phase == Phase::Succeeded || s.phase == Phase::Paused {
        return (s, vec![]);
    }

    let deadline = spec
        .progress_deadline
        .as_deref()
        .and_then(|d| weir_api::duration::parse(d).ok())
        .unwrap_or(defaults::PROGRESS_DEADLINE);
    if obs.now.duration_since(s.last_progress).unwrap_or_default() > deadline {
        let why = format!(
            "no progress for {}: rolled back at step {} ({})",
            humantime::format_duration(deadline),
            s.current_step,
            s.message
        );
        s.roll_back(Phase::RolledBack, why, obs);
        return (s, vec![RolloutAction::SetCanaryWeight(0)]);
    }

    // Background analysis, from the first non-zero canary weight.
    if let Some(analysis) = &spec.analysis
        && obs.served_weight > 0
    {
        let interval = analysis
            .interval
            .as_deref()
            .and_then(|d| weir_api::duration::parse(d).ok())
            .unwrap_or(defaults::INTERVAL);
        let due = s
            .last_analysis
            .is_none_or(|t| obs.now.duration_since(t).unwrap_or_default() >= interval)
            && obs.now.duration_since(s.step_started).unwrap_or_default() >= interval;
        if due {
            let canary = obs.canary.since(&s.baseline.canary);
            let stable = obs.stable.since(&s.baseline.stable);
            s.verdicts = judge(&Goals::of(analysis), &canary, &stable);
            s.last_analysis = Some(obs.now);
            s.analyses += 1;
            match overall(&s.verdicts) {
                Verdict::Fail => {
                    s.failures_in_row += 1;
                    let limit = analysis
                        .failure_limit
                        .unwrap_or(defaults::FAILURE_LIMIT)
                        .max(1);
                    if s.failures_in_row >= limit {
                        let why = format!(
                            "analysis failed ({}): all traffic to the stable",
                            summary(&s.verdicts)
                        );
                        s.roll_back(Phase::RolledBack, why, obs);
                        return (s, vec![RolloutAction::SetCanaryWeight(0)]);
                    }
                }
                Verdict::Pass => s.failures_in_row = 0,
                Verdict::Inconclusive => {}
            }
        }
    }

    // The steps, as far as they go now.
    loop {
        let Some(kind) = steps.get(s.current_step) else {
            if s.phase != Phase::Succeeded {
                s.phase = Phase::Succeeded;
                s.message = format!("succeeded: the canary serves {} %", obs.served_weight);
                s.record(obs.now, &s.message.clone());
            }
            return (s, vec![]);
        };
        match kind {
            // Validation refuses these; a stored one is skipped.
            None => s.advance(obs),
            Some(StepKind::SetWeight(w)) if obs.served_weight == *w => {
                s.record(
                    obs.now,
                    &format!("step {}: the gateway serves canary {w} %", s.current_step),
                );
                s.advance(obs);
            }
            Some(StepKind::SetWeight(w)) => {
                if *w > obs.served_weight
                    && let Some(inputs) = obs.capacity
                    && let Some(wait) = make_room(&mut s, inputs, *w, obs)
                {
                    return wait;
                }
                s.message = format!(
                    "step {}: setting the canary's weight to {w} %",
                    s.current_step
                );
                return (s, vec![RolloutAction::SetCanaryWeight(*w)]);
            }
            Some(StepKind::Analysis) => {
                let judged_here = s.last_analysis.is_some_and(|t| t >= s.step_started);
                if judged_here && overall(&s.verdicts) == Verdict::Pass {
                    s.record(
                        obs.now,
                        &format!(
                            "step {}: analysis passed ({})",
                            s.current_step,
                            summary(&s.verdicts)
                        ),
                    );
                    s.advance(obs);
                } else {
                    s.traffic_rate = spec.traffic.as_ref().map(|t| t.rate);
                    s.message = if judged_here {
                        format!(
                            "step {}: waiting for a conclusive analysis ({})",
                            s.current_step,
                            summary(&s.verdicts)
                        )
                    } else {
                        format!("step {}: analysing the canary", s.current_step)
                    };
                    return (s, vec![]);
                }
            }
            Some(StepKind::Pause(Some(d))) => {
                if obs.now.duration_since(s.step_started).unwrap_or_default() >= *d {
                    s.advance(obs);
                } else {
                    s.message = format!(
                        "step {}: pausing for {}",
                        s.current_step,
                        humantime::format_duration(*d)
                    );
                    return (s, vec![]);
                }
            }
            Some(StepKind::Pause(None)) => {
                s.phase = Phase::Paused;
                s.message = format!(
                    "step {}: paused until `weir rollout promote`",
                    s.current_step
                );
                s.record(obs.now, &s.message.clone());
                return (s, vec![]);
            }
        }
    }
}

/// Capacity before traffic: the estimate for canary `share` %, kept in
/// the status (a new decision also in the history). `Some`: what to return
/// instead of shifting now.
fn make_room(
    s: &mut RolloutStatus,
    inputs: &CapacityInputs,
    share: u32,
    obs: &Observation<'_>,
) -> Option<(RolloutStatus, Vec<RolloutAction>)> {
    let estimate = replicas_for_share(inputs, share);
    let same_kind = |a: &CapacityDecision, b: &CapacityDecision| {
        std::mem::discriminant(a) == std::mem::discriminant(b)
    };
    let new = s
        .capacity
        .as_ref()
        .is_none_or(|c| c.share != share || !same_kind(&c.decision, &estimate.decision));
    let step = s.current_step;
    let needed = estimate.needed.unwrap_or(inputs.ready);
    let line = match estimate.decision {
        CapacityDecision::Scale(n) => format!(
            "step {step}: canary {share} % needs {n} replicas ({}): scaling the canary from {} first",
            estimate.reason, inputs.replicas
        ),
        CapacityDecision::Wait if estimate.needed.is_some() => format!(
            "step {step}: waiting for {needed} ready canary replicas ({} ready) before canary {share} %",
            inputs.ready
        ),
        CapacityDecision::Wait => {
            format!("step {step}: {} before canary {share} %", estimate.reason)
        }
        CapacityDecision::Shift if estimate.needed.is_some() => format!(
            "step {step}: {} canary replicas ready for canary {share} % ({})",
            inputs.ready, estimate.reason
        ),
        CapacityDecision::Shift => {
            format!("step {step}: capacity not estimated: {}", estimate.reason)
        }
    };
    let decision = estimate.decision.clone();
    s.capacity = Some(estimate);
    if new {
        s.record(obs.now, &line);
    }
    match decision {
        CapacityDecision::Shift => None,
        CapacityDecision::Scale(n) => {
            s.message = line;
            Some((s.clone(), vec![RolloutAction::ScaleCanary(n)]))
        }
        CapacityDecision::Wait => {
            s.message = line;
            Some((s.clone(), vec![]))
        }
    }
}

/// Verdicts in a few words: `success-rate Fail (95.0 %, n 200, needs ≥ 99)`.
fn summary(verdicts: &[Judgement]) -> String {
    verdicts
        .iter()
        .map(|j| {
            let estimate = j.estimate.map_or("-".to_owned(), |e| format!("{e:.3}"));
            let needed = j
                .requests_needed
                .map_or(String::new(), |n| format!(", conclusive at ~{n} requests"));
            format!(
                "{} {:?}: {estimate} over {} requests against {}{needed}",
                j.metric, j.verdict, j.n, j.threshold
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weir_api::rollout::{AnalysisGate, AnalysisSpec, PauseStep, RolloutStep, SuccessRateGoal};
    use weir_gateway::version_stats::{LATENCY_BUCKETS, bucket_of};

    use super::*;

    fn weight(w: i64) -> RolloutStep {
        RolloutStep {
            set_weight: Some(w),
            ..RolloutStep::default()
        }
    }
    fn gate() -> RolloutStep {
        RolloutStep {
            analysis: Some(AnalysisGate {}),
            ..RolloutStep::default()
        }
    }
    fn pause(d: Option<&str>) -> RolloutStep {
        RolloutStep {
            pause: Some(PauseStep {
                duration: d.map(str::to_owned),
            }),
            ..RolloutStep::default()
        }
    }

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

    /// A rollout driven through time; the runtime's part (the gateway
    /// serving a weight change at once) is played here.
    struct Sim {
        spec: RolloutSpec,
        status: Option<RolloutStatus>,
        now: SystemTime,
        served: u32,
        canary: VersionCounts,
        stable: VersionCounts,
        set: Vec<u32>,
        capacity: Option<CapacityInputs>,
        scaled: Vec<i32>,
    }

    impl Sim {
        fn new(spec: RolloutSpec) -> Self {
            let empty = VersionCounts {
                latency: vec![0; LATENCY_BUCKETS],
                ..VersionCounts::default()
            };
            Self {
                spec,
                status: None,
                now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
                served: 0,
                canary: empty.clone(),
                stable: empty,
                set: Vec::new(),
                capacity: None,
                scaled: Vec::new(),
            }
        }

        /// `secs` later, with `requests` canary requests of which `errors` 5xx.
        fn tick(
            &mut self,
            secs: u64,
            requests: u64,
            errors: u64,
            command: Option<Command>,
        ) -> Phase {
            self.now += Duration::from_secs(secs);
            self.canary.requests += requests;
            self.canary.server_errors += errors;
            self.canary.latency[bucket_of(1.0)] += requests;
            let obs = Observation {
                now: self.now,
                served_weight: self.served,
                canary: &self.canary,
                stable: &self.stable,
                command,
                capacity: self.capacity.as_ref(),
            };
            let (status, actions) = step(&self.spec, self.status.as_ref(), &obs);
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
                }
            }
            let phase = status.phase;
            self.status = Some(status);
            phase
        }

        fn step_index(&self) -> usize {
            self.status.as_ref().unwrap().current_step
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
        // The gate waits for a conclusive Pass: 500 good requests do it.
        sim.tick(5, 500, 0, None);
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
            hpa: Some(super::super::capacity::CanaryHpa {
                min: 1,
                max: 10,
                targets: vec![crate::hpa::Target::Utilization(50)],
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
    fn an_analysis_that_stays_inconclusive_never_succeeds_and_the_deadline_rolls_back() {
        let mut sim = Sim::new(spec(vec![weight(10), gate(), weight(100)], 1));
        sim.tick(0, 0, 0, None);
        for _ in 0..23 {
            assert_eq!(sim.tick(5, 1, 0, None), Phase::Progressing);
        }
        let status = sim.status.clone().unwrap();
        assert_eq!(status.current_step, 1, "still at the gate");
        assert_eq!(status.verdicts[0].verdict, Verdict::Inconclusive);
        assert!(status.verdicts[0].requests_needed.is_some());
        assert!(
            status.message.contains("waiting for a conclusive analysis"),
            "{}",
            status.message
        );
        assert_eq!(sim.tick(20, 1, 0, None), Phase::RolledBack);
        assert_eq!(sim.served, 0, "all traffic back to the stable");
        assert!(
            sim.status
                .unwrap()
                .message
                .starts_with("no progress for 2m")
        );
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
        sim.tick(5, 500, 0, None);
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
}
