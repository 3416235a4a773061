//! The rollout state machine (over 600 lines because one decision reads as
//! one sequence — prior status, command, held weight, analysis, webhook
//! gates, deadline, steps, capacity wait — each a function here over the
//! same status (what the hooks' answers mean is [`crate::hooks`]'); types
//! in [`crate::status`], tests in `engine/tests.rs`): given a Rollout's
//! spec, what was known of it, the time, the weight the gateway serves, the
//! counts of the current analysis window and at most one user command, the
//! next status and what to do. Pure: a backend supplies every input and
//! carries out the weight change through the same path as `weir route`; the
//! next step starts only once the gateway serves the new weight.
//!
//! Choices where Argo Rollouts and Flagger differ or are silent:
//! - analysis runs in the background from the first non-zero canary weight
//!   over the traffic since the current step began, every interval, in
//!   Paused too (a Fail there rolls back, as both do); an `analysis` step
//!   waits for a Pass; `failureLimit` Fail verdicts in a row roll back
//!   (Inconclusive neither counts nor resets the row);
//! - the progress deadline counts progress: it runs while a `setWeight`
//!   waits (for the gateway, or for the canary's replicas), not through
//!   pauses or analysis gates, which wait as Argo's indefinite steps do; an
//!   analysis gate still Inconclusive after the deadline pauses with the
//!   condition `InconclusiveAtDeadline` for a person to decide, rather than
//!   roll back a canary nothing was found wrong with;
//! - a goal the stable misses too (a shared incident) holds, never blaming
//!   the canary;
//! - the weight it set is held in every phase: a weight changed behind its
//!   back (`weir route`, a re-applied VirtualService) is put back and the
//!   history says so; rolled back, that weight is 0;
//! - a rollback (Fail, deadline, abort) shifts all weight to the stable at
//!   once; `retry` starts again from step 0;
//! - an edit of the plan (the VirtualService, rule, subsets or steps)
//!   restarts a running rollout from step 0, and so does a new canary
//!   revision (pod template); rolled back, an edit does not re-promote an
//!   unchanged canary: only a new revision or `retry` starts it again;
//! - a status that cannot be read holds the served weight with the
//!   condition `StatusUnreadable` until `abort` or `retry`;
//! - before a `setWeight` raises the canary's weight, the canary gets the
//!   replicas its new share needs ([`crate::capacity`]) and the shift waits
//!   for them to be ready; once decided, a later estimate that lacks a
//!   measurement does not excuse the wait.

use std::time::{Duration, SystemTime};

use weir_api::rollout::{RolloutSpec, StepKind, defaults};

use crate::analysis::{Goals, Verdict, judge, overall, shared_incident};
use crate::budget;
use crate::capacity::{CapacityDecision, CapacityInputs, replicas_for_share};
use crate::hooks::{self, Gate};
pub use crate::status::*;

/// A short stable digest of what shapes a rollout's plan (FNV-1a over the
/// JSON of its VirtualService, rule, subsets and steps): an edit of these
/// restarts it; of the analysis, traffic or deadline, it does not.
pub fn plan_hash(spec: &RolloutSpec) -> String {
    let plan = (
        &spec.virtual_service,
        &spec.route,
        &spec.stable,
        &spec.canary,
        &spec.steps,
    );
    let text = serde_json::to_string(&plan).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A time as a status carries it (RFC 3339, seconds).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn duration_or(text: Option<&str>, default: Duration) -> Duration {
    text.and_then(|d| weir_api::duration::parse(d).ok())
        .unwrap_or(default)
}

impl RolloutStatus {
    pub(crate) fn start(spec: &RolloutSpec, obs: &Observation<'_>, why: &str) -> Self {
        let mut s = Self {
            phase: Phase::Progressing,
            current_step: 0,
            canary_weight: obs.served_weight,
            desired_weight: None,
            plan_hash: plan_hash(spec),
            canary_revision: obs.canary_revision.map(str::to_owned),
            observed_generation: obs.generation,
            stable_revision: None,
            revisions: Vec::new(),
            step_started: obs.now,
            last_progress: obs.now,
            last_analysis: None,
            analyses: 0,
            failures_in_row: 0,
            verdicts: Vec::new(),
            budget: budget::split(spec),
            traffic_rate: None,
            // Answers sent before this attempt do not count in it.
            hooks_counted: Some(obs.now),
            finished: None,
            capacity: None,
            conditions: Vec::new(),
            commands: Vec::new(),
            message: why.to_owned(),
            history: Vec::new(),
        };
        s.record(obs.now, why);
        s
    }

    /// A fresh start that keeps the history of what came before.
    pub(crate) fn restart(&self, spec: &RolloutSpec, obs: &Observation<'_>, why: &str) -> Self {
        let mut fresh = Self::start(spec, obs, why);
        fresh.desired_weight = self.desired_weight;
        fresh.commands = self.commands.clone();
        fresh.stable_revision = self.stable_revision.clone();
        fresh.revisions = self.revisions.clone();
        fresh.history = [self.history.clone(), fresh.history].concat();
        fresh
            .history
            .drain(..fresh.history.len().saturating_sub(HISTORY));
        fresh
    }

    pub(crate) fn record(&mut self, now: SystemTime, message: &str) {
        self.history.push(Event {
            time: rfc3339(now),
            message: message.to_owned(),
        });
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
    }

    fn advance(&mut self, now: SystemTime) {
        self.current_step += 1;
        self.step_started = now;
        self.last_progress = now;
        self.last_analysis = None;
        self.set_condition("Held", None, now);
    }

    fn roll_back(&mut self, phase: Phase, why: String, now: SystemTime) {
        self.phase = phase;
        self.finished = Some(now);
        self.message = why.clone();
        self.desired_weight = Some(0);
        self.set_condition("Held", None, now);
        self.record(now, &why);
    }

    /// Sets condition `kind` to `(reason, message)` (status True), or
    /// removes it with `None`.
    fn set_condition(&mut self, kind: &str, to: Option<(&str, &str)>, now: SystemTime) {
        let Some((reason, message)) = to else {
            self.conditions.retain(|c| c.kind != kind);
            return;
        };
        if let Some(c) = self.conditions.iter_mut().find(|c| c.kind == kind) {
            if c.reason != reason {
                c.last_transition_time = rfc3339(now);
            }
            c.reason = reason.to_owned();
            c.message = message.to_owned();
            return;
        }
        self.conditions.push(Condition {
            kind: kind.to_owned(),
            status: "True".into(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: rfc3339(now),
        });
    }

    fn held_by(&self, reason: &str) -> bool {
        self.conditions
            .iter()
            .any(|c| c.kind == "Held" && c.reason == reason)
    }

    /// Asks for `w` and remembers it as the weight to hold.
    pub(crate) fn set_weight(&mut self, w: u32) -> RolloutAction {
        self.desired_weight = Some(w);
        RolloutAction::SetCanaryWeight(w)
    }
}

/// The status to continue from.
fn prior_status(spec: &RolloutSpec, prior: Prior<'_>, obs: &Observation<'_>) -> RolloutStatus {
    let s = match prior {
        Prior::New => return RolloutStatus::start(spec, obs, "started"),
        Prior::Unreadable(why) => {
            let mut s = RolloutStatus::start(spec, obs, "started");
            s.phase = Phase::Paused;
            s.desired_weight = Some(obs.served_weight);
            s.message = format!(
                "the stored status cannot be read ({why}): holding canary {} %; `weir rollout abort` or `retry`",
                obs.served_weight
            );
            s.set_condition("Held", Some(("StatusUnreadable", why)), obs.now);
            s.history.clear();
            s.record(obs.now, &s.message.clone());
            return s;
        }
        Prior::Known(s) => s,
    };
    let revision_changed = matches!(
        (obs.canary_revision, &s.canary_revision),
        (Some(new), Some(old)) if new != old
    );
    if revision_changed && s.phase != Phase::Succeeded {
        let why = format!(
            "new canary revision {} (was {}): restarted from step 0",
            obs.canary_revision.unwrap_or_default(),
            s.canary_revision.as_deref().unwrap_or_default()
        );
        return s.restart(spec, obs, &why);
    }
    let mut s = s.clone();
    if s.plan_hash != plan_hash(spec) {
        if s.phase.is_rolled_back() {
            s.plan_hash = plan_hash(spec);
            s.record(
                obs.now,
                "spec changed while rolled back: the canary is unchanged, so it stays rolled back (`weir rollout retry` starts again)",
            );
        } else if s.phase != Phase::Succeeded {
            return s.restart(spec, obs, "spec changed: restarted from step 0");
        } else {
            s.plan_hash = plan_hash(spec);
        }
    }
    if s.canary_revision.is_none() {
        s.canary_revision = obs.canary_revision.map(str::to_owned);
    }
    s
}

/// Applies a waiting command intent once (by its id), and only at the
/// step it was meant for, acknowledging it in the status; `Some` ends the
/// decision there.
fn command(
    s: &mut RolloutStatus,
    spec: &RolloutSpec,
    steps: &[Option<StepKind>],
    obs: &Observation<'_>,
) -> Option<Vec<RolloutAction>> {
    let intent = obs.command?;
    if s.commands.iter().any(|a| a.id == intent.id) {
        return None;
    }
    let (outcome, actions) = match intent.step {
        Some(step) if step != s.current_step && !s.phase.is_final() => (
            format!(
                "not applied: meant for step {step}, the rollout is at step {}",
                s.current_step
            ),
            None,
        ),
        _ => match apply_command(s, spec, steps, obs, intent.command) {
            Some(actions) => ("applied".to_owned(), actions),
            None => (
                format!(
                    "not applied: nothing to {:?} in phase {:?}",
                    intent.command, s.phase
                ),
                None,
            ),
        },
    };
    s.commands.push(Acknowledgement {
        id: intent.id.clone(),
        command: intent.command,
        step: intent.step,
        outcome,
        time: rfc3339(obs.now),
    });
    s.commands
        .drain(..s.commands.len().saturating_sub(ACKNOWLEDGED));
    actions
}

/// Carries out a command; `None`: it does not apply in this phase, else
/// the actions it asks for (maybe none).
fn apply_command(
    s: &mut RolloutStatus,
    spec: &RolloutSpec,
    steps: &[Option<StepKind>],
    obs: &Observation<'_>,
    command: Command,
) -> Option<Option<Vec<RolloutAction>>> {
    let unreadable = s.held_by("StatusUnreadable");
    match command {
        Command::Abort if !s.phase.is_final() => {
            s.roll_back(
                Phase::Aborted,
                "aborted by `weir rollout abort`: all traffic to the stable".into(),
                obs.now,
            );
        }
        Command::Retry if s.phase.is_rolled_back() || unreadable => {
            *s = s.restart(spec, obs, "retried from step 0");
            s.desired_weight = None;
        }
        Command::YieldRoute => {
            let why = "the rule's weights are routed by hand (`weir route --force`): not held until `weir rollout resume` or `retry`";
            s.desired_weight = None;
            if !s.phase.is_final() {
                s.phase = Phase::Paused;
            }
            s.message = why.into();
            s.record(obs.now, why);
        }
        Command::Pause if s.phase == Phase::Progressing => {
            s.phase = Phase::Paused;
            s.message = "paused by `weir rollout pause`".into();
            s.record(obs.now, "paused by `weir rollout pause`");
        }
        Command::Resume if s.phase == Phase::Paused && !unreadable => {
            s.phase = Phase::Progressing;
            s.last_progress = obs.now;
            s.record(obs.now, "resumed");
            s.set_condition("Held", None, obs.now);
            // An indefinite pause step is what held it: resuming passes it.
            if matches!(steps.get(s.current_step), Some(Some(StepKind::Pause(None)))) {
                s.advance(obs.now);
            }
        }
        Command::Promote if !s.phase.is_final() && !unreadable => {
            s.phase = Phase::Progressing;
            s.record(obs.now, &format!("promoted past step {}", s.current_step));
            s.advance(obs.now);
        }
        Command::PromoteFull if !s.phase.is_final() && !unreadable => {
            s.phase = Phase::Progressing;
            s.current_step = spec.steps.len();
            s.last_progress = obs.now;
            s.set_condition("Held", None, obs.now);
            s.record(obs.now, "promoted to the end: all traffic to the canary");
            if obs.served_weight != 100 {
                s.message = "promoted to the end: setting the canary's weight to 100".into();
                return Some(Some(vec![s.set_weight(100)]));
            }
        }
        _ => return None,
    }
    Some(None)
}

/// Puts back a weight changed behind the rollout's back (not one its
/// current `setWeight` step is still setting).
fn hold_weight(
    s: &mut RolloutStatus,
    steps: &[Option<StepKind>],
    obs: &Observation<'_>,
) -> Option<RolloutAction> {
    let desired = s.desired_weight?;
    let setting = s.phase == Phase::Progressing
        && matches!(steps.get(s.current_step), Some(Some(StepKind::SetWeight(w))) if *w == desired);
    if obs.served_weight == desired || setting {
        return None;
    }
    s.record(
        obs.now,
        &format!(
            "the gateway served canary {} % where this rollout holds {desired} %: put back",
            obs.served_weight
        ),
    );
    Some(s.set_weight(desired))
}

/// The background analysis: judges the window when due. `Some`: rolled
/// back.
fn analyse(
    s: &mut RolloutStatus,
    spec: &RolloutSpec,
    obs: &Observation<'_>,
) -> Option<Vec<RolloutAction>> {
    let analysis = spec.analysis.as_ref()?;
    let window = obs.window?;
    if !exposed(obs) || window.start < s.step_started || s.held_by("StatusUnreadable") {
        return None;
    }
    let interval = duration_or(analysis.interval.as_deref(), defaults::INTERVAL);
    let span = window.end.duration_since(window.start).unwrap_or_default();
    let due = s
        .last_analysis
        .is_none_or(|t| obs.now.duration_since(t).unwrap_or_default() >= interval)
        && span >= interval;
    if !due {
        return None;
    }
    s.budget = budget::split(spec);
    s.verdicts = judge(
        &Goals::of(analysis),
        s.budget.levels(),
        &window.canary,
        &window.stable,
    );
    s.last_analysis = Some(obs.now);
    s.analyses += 1;
    let verdict = overall(&s.verdicts);
    if shared_incident(&s.verdicts) && verdict != Verdict::Fail {
        let why = format!(
            "the stable misses the goal too ({}): a shared incident, holding",
            summary(&s.verdicts)
        );
        if !s.held_by("SharedIncident") {
            s.record(obs.now, &why);
        }
        s.set_condition("Held", Some(("SharedIncident", &why)), obs.now);
        s.message = why;
        return None;
    }
    if s.held_by("SharedIncident") {
        s.set_condition("Held", None, obs.now);
        s.record(obs.now, "the shared incident is over");
    }
    match verdict {
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
                s.roll_back(Phase::RolledBack, why, obs.now);
                return Some(vec![s.set_weight(0)]);
            }
        }
        Verdict::Pass => s.failures_in_row = 0,
        Verdict::Inconclusive => {}
    }
    None
}

/// One decision.
pub fn step(
    spec: &RolloutSpec,
    prior: Prior<'_>,
    obs: &Observation<'_>,
) -> (RolloutStatus, Vec<RolloutAction>) {
    let (s, mut actions) = decide(spec, prior, obs);
    // Ended, the canary gets no traffic of any kind: a mirror and a
    // header rule go too (the header rule last: it shifts the rule's index).
    if s.phase.is_final() {
        if obs.mirror > 0 && !actions.contains(&RolloutAction::SetMirror(0)) {
            actions.push(RolloutAction::SetMirror(0));
        }
        if obs.header_route.is_some() && !actions.contains(&RolloutAction::SetHeaderRoute(None)) {
            actions.push(RolloutAction::SetHeaderRoute(None));
        }
    }
    (s, actions)
}

/// The decision before the clean-up of an ended rollout's routes.
fn decide(
    spec: &RolloutSpec,
    prior: Prior<'_>,
    obs: &Observation<'_>,
) -> (RolloutStatus, Vec<RolloutAction>) {
    let mut s = prior_status(spec, prior, obs);
    s.canary_weight = obs.served_weight;
    if obs.generation.is_some() {
        s.observed_generation = obs.generation;
    }
    // Only a waiting analysis gate asks for traffic, below.
    s.traffic_rate = None;
    let steps: Vec<Option<StepKind>> = spec.steps.iter().map(|st| st.kind()).collect();

    if let Some(actions) = command(&mut s, spec, &steps, obs) {
        return (s, actions);
    }
    if let Some(put_back) = hold_weight(&mut s, &steps, obs) {
        return (s, vec![put_back]);
    }
    if s.phase.is_final() {
        return (s, vec![]);
    }
    if let Some(rolled_back) = analyse(&mut s, spec, obs) {
        return (s, rolled_back);
    }
    if exposed(obs)
        && let Some(rolled_back) = hook_checks(&mut s, spec, obs)
    {
        return (s, rolled_back);
    }
    if s.phase == Phase::Paused || s.held_by("SharedIncident") {
        return (s, vec![]);
    }

    let deadline = duration_or(
        spec.progress_deadline.as_deref(),
        defaults::PROGRESS_DEADLINE,
    );
    let waited = obs.now.duration_since(s.last_progress).unwrap_or_default();
    match steps.get(s.current_step) {
        // Waiting for a weight (the gateway, or the canary's replicas).
        Some(Some(StepKind::SetWeight(w))) if obs.served_weight != *w && waited > deadline => {
            let why = format!(
                "no progress for {}: rolled back at step {} ({})",
                humantime::format_duration(deadline),
                s.current_step,
                s.message
            );
            s.roll_back(Phase::RolledBack, why, obs.now);
            return (s, vec![RolloutAction::SetCanaryWeight(0)]);
        }
        Some(Some(StepKind::Analysis)) if waited > deadline => {
            let why = format!(
                "step {}: analysis inconclusive for {} ({}): paused; `weir rollout promote`, `abort` or `retry`",
                s.current_step,
                humantime::format_duration(deadline),
                summary(&s.verdicts)
            );
            s.phase = Phase::Paused;
            s.set_condition("Held", Some(("InconclusiveAtDeadline", &why)), obs.now);
            s.message = why.clone();
            s.record(obs.now, &why);
            return (s, vec![]);
        }
        _ => {}
    }

    run_steps(s, spec, &steps, obs)
}

/// The steps, as far as they go now: each one done moves to the next, in
/// this decision, until one waits (the gateway, a gate, a pause, a hook).
fn run_steps(
    mut s: RolloutStatus,
    spec: &RolloutSpec,
    steps: &[Option<StepKind>],
    obs: &Observation<'_>,
) -> (RolloutStatus, Vec<RolloutAction>) {
    loop {
        if hooks::before_traffic(&s, obs.served_weight) {
            let gate = hooks::start_gate(spec, &mut s, obs.hooks);
            if let Some(held) = hold_for(&mut s, spec, gate, obs) {
                return held;
            }
        }
        let Some(kind) = steps.get(s.current_step) else {
            let gate = hooks::promotion_gate(spec, &s, obs.hooks);
            if let Some(held) = hold_for(&mut s, spec, gate, obs) {
                return held;
            }
            s.phase = Phase::Succeeded;
            s.finished = Some(obs.now);
            s.message = format!("succeeded: the canary serves {} %", obs.served_weight);
            s.desired_weight = Some(obs.served_weight);
            s.record(obs.now, &s.message.clone());
            return (s, vec![]);
        };
        match kind {
            // Validation refuses these; a stored one is skipped.
            None => s.advance(obs.now),
            Some(StepKind::SetWeight(w)) if obs.served_weight == *w => {
                s.desired_weight = Some(*w);
                s.record(
                    obs.now,
                    &format!("step {}: the gateway serves canary {w} %", s.current_step),
                );
                s.advance(obs.now);
            }
            Some(StepKind::SetWeight(w)) => {
                if *w > obs.served_weight
                    && let Some(inputs) = obs.capacity
                    && let Some(wait) = make_room(&mut s, inputs, *w, obs.now)
                {
                    return wait;
                }
                s.message = format!(
                    "step {}: setting the canary's weight to {w} %",
                    s.current_step
                );
                let action = s.set_weight(*w);
                return (s, vec![action]);
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
                    s.advance(obs.now);
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
                    s.advance(obs.now);
                } else {
                    s.message = format!(
                        "step {}: pausing for {}",
                        s.current_step,
                        humantime::format_duration(*d)
                    );
                    return (s, vec![]);
                }
            }
            Some(StepKind::SetHeaderRoute(on)) => {
                let on = *on;
                let wanted = on.then_some(s.current_step);
                if obs.header_route == wanted {
                    s.record(
                        obs.now,
                        &format!(
                            "step {}: the gateway serves {}",
                            s.current_step,
                            if on {
                                "the header route to the canary"
                            } else {
                                "no header route"
                            }
                        ),
                    );
                    s.advance(obs.now);
                } else {
                    s.message = format!("step {}: setting the header route", s.current_step);
                    return (s, vec![RolloutAction::SetHeaderRoute(wanted)]);
                }
            }
            Some(StepKind::SetMirror(p)) => {
                if obs.mirror == *p {
                    s.record(
                        obs.now,
                        &format!(
                            "step {}: the gateway mirrors {p} % to the canary",
                            s.current_step
                        ),
                    );
                    s.advance(obs.now);
                } else {
                    s.message = format!("step {}: mirroring {p} % to the canary", s.current_step);
                    return (s, vec![RolloutAction::SetMirror(*p)]);
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

/// Whether the canary gets traffic of any kind: a weight, a header route,
/// a mirror.
fn exposed(obs: &Observation<'_>) -> bool {
    obs.served_weight > 0 || obs.header_route.is_some() || obs.mirror > 0
}

/// A webhook gate's answer as the decision's end, when it holds or fails:
/// a hold waits (and is not a lack of progress: the deadline does not
/// run); a failed check counts toward `failureLimit` and rolls back at it.
fn hold_for(
    s: &mut RolloutStatus,
    spec: &RolloutSpec,
    gate: Gate,
    obs: &Observation<'_>,
) -> Option<(RolloutStatus, Vec<RolloutAction>)> {
    match gate {
        Gate::Open => None,
        Gate::Hold(why) => {
            s.message = format!("step {}: {why}", s.current_step);
            s.last_progress = obs.now;
            Some((s.clone(), vec![]))
        }
        Gate::Failed(why) => Some(failed_check(s, spec, why, obs)),
        Gate::RollBack(why) => {
            s.roll_back(Phase::RolledBack, why, obs.now);
            Some((s.clone(), vec![s.set_weight(0)]))
        }
    }
}

/// A failed check by a webhook: one more in the row; at `failureLimit`,
/// all weight back to the stable.
fn failed_check(
    s: &mut RolloutStatus,
    spec: &RolloutSpec,
    why: String,
    obs: &Observation<'_>,
) -> (RolloutStatus, Vec<RolloutAction>) {
    s.failures_in_row += 1;
    let limit = spec
        .analysis
        .as_ref()
        .and_then(|a| a.failure_limit)
        .unwrap_or(defaults::FAILURE_LIMIT);
    if s.failures_in_row >= limit {
        s.roll_back(
            Phase::RolledBack,
            format!("{why}: all traffic to the stable"),
            obs.now,
        );
        let action = s.set_weight(0);
        return (s.clone(), vec![action]);
    }
    s.message = format!("{why} ({} of {limit} failures in a row)", s.failures_in_row);
    s.record(obs.now, &s.message.clone());
    (s.clone(), vec![])
}

/// The webhooks' checks while the canary has traffic: `Some` when they
/// end the decision (a rollback, or a failed check held).
fn hook_checks(
    s: &mut RolloutStatus,
    spec: &RolloutSpec,
    obs: &Observation<'_>,
) -> Option<Vec<RolloutAction>> {
    if spec.webhooks.is_empty() {
        return None;
    }
    let gate = hooks::running_checks(spec, s, obs.hooks);
    let (next, actions) = hold_for(s, spec, gate, obs)?;
    *s = next;
    Some(actions)
}

/// Capacity before traffic: the estimate for canary `share` %, kept in
/// the status (a new decision also in the history). `Some`: what to return
/// instead of shifting now. A decision that named a replica count is kept
/// while a later estimate cannot name one (a measurement went missing):
/// the shift still waits for those replicas, or for the deadline.
fn make_room(
    s: &mut RolloutStatus,
    inputs: &CapacityInputs,
    share: u32,
    now: SystemTime,
) -> Option<(RolloutStatus, Vec<RolloutAction>)> {
    let mut estimate = replicas_for_share(inputs, share);
    if estimate.needed.is_none()
        && let Some(kept) = s
            .capacity
            .as_ref()
            .filter(|c| c.share == share)
            .and_then(|c| c.needed)
    {
        estimate.reason = format!(
            "kept from the earlier estimate ({}, now: {})",
            s.capacity.as_ref().map_or("", |c| c.reason.as_str()),
            estimate.reason
        );
        estimate.needed = Some(kept);
        estimate.decision = if inputs.ready >= kept {
            CapacityDecision::Shift
        } else if inputs.replicas < kept {
            CapacityDecision::Scale(kept)
        } else {
            CapacityDecision::Wait
        };
    }
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
        s.record(now, &line);
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

/// Verdicts in a few words: `success-rate Fail: 95.000 over 200 requests
/// against 99`.
fn summary(verdicts: &[crate::analysis::Judgement]) -> String {
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
mod tests;
