//! Release after release: a Rollout with `spec.workloadRef` owns one
//! Deployment's revisions. Pure, like [`crate::engine`], which it wraps:
//! given what the Rollout knew, the workload's current pod template hash,
//! its replicas (as its HPA sets them) and each revision's ready pods,
//! which revisions run with how many replicas, which revision each subset
//! selects, and the weight. The rules (Argo Rollouts' where it has one):
//! - the first template seen is the stable, with no steps;
//! - a template that is neither the stable's nor the canary's starts a
//!   canary revision beside the stable at weight 0 and runs the steps from
//!   step 0 (a canary already running is replaced: the newest wins);
//! - the template back to the stable's aborts at once: weight 0, the
//!   canary revision removed;
//! - the steps done, the canary is promoted: first given the stable's
//!   replicas (capacity before traffic), then selected by the stable
//!   subset, then given all weight under it; the former stable keeps its
//!   pods for `scaleDownDelay`, then goes;
//! - rolled back, the canary revision is scaled to zero (kept for
//!   `weir rollout retry`);
//! - the stable gets the workload's replicas; the canary, while it runs,
//!   the share of them its next weight needs (at least one), and never
//!   fewer than it has or the engine's capacity estimate asks.

use std::collections::BTreeMap;
use std::time::SystemTime;

use weir_api::rollout::{DEFAULT_SCALE_DOWN_DELAY, RolloutSpec, StepKind};

use crate::engine::{self, rfc3339};
use crate::status::{
    ACKNOWLEDGED, Acknowledgement, Observation, Phase, Prior, RevisionRole, RevisionStatus,
    RolloutAction, RolloutStatus,
};

/// What the workload looks like now.
#[derive(Clone, Debug, Default)]
pub struct WorkloadObservation {
    /// The hash of the workload Deployment's pod template now.
    pub template: String,
    /// Its `spec.replicas` (what its HPA sets).
    pub replicas: i32,
    /// Each revision running now, by template hash.
    pub revisions: BTreeMap<String, Running>,
}

/// A revision running now, as its Deployment says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Running {
    /// The role it was given.
    pub role: RevisionRole,
    /// Its replicas.
    pub replicas: i32,
    /// Its ready pods.
    pub ready: i32,
}

impl WorkloadObservation {
    fn replicas_of(&self, revision: &str) -> (i32, i32) {
        self.revisions
            .get(revision)
            .map_or((0, 0), |r| (r.replicas, r.ready))
    }

    fn running_as(&self, role: RevisionRole) -> Option<&str> {
        self.revisions
            .iter()
            .find(|(_, r)| r.role == role)
            .map(|(k, _)| k.as_str())
    }
}

/// What a workload Rollout asks of the backend besides weights, in the
/// order given (with the weights: see [`Decision::actions`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevisionAction {
    /// Run `revision` with this many replicas in this role; a revision not
    /// running yet is the workload's current template.
    Run {
        /// The template hash.
        revision: String,
        /// What it is for.
        role: RevisionRole,
        /// Its replicas.
        replicas: i32,
    },
    /// Remove a revision and its pods.
    Remove {
        /// The template hash.
        revision: String,
    },
    /// Make the stable and canary subsets select these revisions.
    Select {
        /// The stable subset's revision.
        stable: String,
        /// The canary subset's revision.
        canary: String,
    },
}

/// One step of the backend's work, in order: a failure ends the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadStep {
    /// A weight change or capacity ask of the engine.
    Rollout(RolloutAction),
    /// A revision change.
    Revision(RevisionAction),
}

/// The next status and what to do, in order.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The status to store once every action is done.
    pub status: RolloutStatus,
    /// What to do, in order.
    pub actions: Vec<WorkloadStep>,
}

/// One decision for a workload Rollout.
pub fn step(
    spec: &RolloutSpec,
    prior: Prior<'_>,
    obs: &Observation<'_>,
    workload: &WorkloadObservation,
) -> Decision {
    let known = match prior {
        Prior::Known(s) if s.stable_revision.is_some() => s.clone(),
        // Never seen, or its status unreadable: what runs says where it is.
        _ => adopt(spec, obs, workload),
    };
    let stable = known.stable_revision.clone().unwrap_or_default();
    let mut d = Decision {
        status: known.clone(),
        actions: Vec::new(),
    };
    d.status.canary_weight = obs.served_weight;
    retire_due(&mut d, obs.now);
    let template = workload.template.as_str();
    let canary = known.canary_revision.clone();
    if template == stable {
        match canary {
            Some(c) => revert(&mut d, &stable, &c, obs),
            None => steady(&mut d, &stable, obs, workload),
        }
    } else if canary.as_deref() != Some(template) {
        start_canary(&mut d, spec, &stable, canary.as_deref(), obs, workload);
    } else {
        let canary = canary.unwrap_or_default();
        run_canary(&mut d, spec, &stable, &canary, obs, workload);
    }
    d.status.revisions = revisions(&d, workload);
    d
}

/// A status from what runs: the revision running as stable (else the
/// workload's template, the first seen, with no steps) and the one
/// running as canary, which is restarted from step 0 (or removed when the
/// template is no longer its).
fn adopt(spec: &RolloutSpec, obs: &Observation<'_>, w: &WorkloadObservation) -> RolloutStatus {
    let stable = w.running_as(RevisionRole::Stable).unwrap_or(&w.template);
    let why = format!("revision {stable} is the stable (the first seen: no steps)");
    let mut status = RolloutStatus::start(spec, obs, &why);
    status.phase = Phase::Succeeded;
    status.current_step = spec.steps.len();
    status.stable_revision = Some(stable.to_owned());
    status.canary_revision = w
        .running_as(RevisionRole::Canary)
        .filter(|c| *c != w.template)
        .map(str::to_owned);
    status.desired_weight = Some(0);
    status
}

/// No canary: the stable runs the workload's replicas and keeps all weight.
fn steady(d: &mut Decision, stable: &str, obs: &Observation<'_>, w: &WorkloadObservation) {
    run(d, stable, RevisionRole::Stable, w.replicas.max(0));
    select(d, stable, stable);
    hold_zero(d, obs);
    refuse_command(
        d,
        obs,
        &format!("no canary: the workload's template is the stable revision {stable}'s"),
    );
}

/// The template is the stable's again while a canary exists: all weight to
/// the stable, the canary gone.
fn revert(d: &mut Decision, stable: &str, canary: &str, obs: &Observation<'_>) {
    let why = format!(
        "the pod template is the stable revision {stable}'s again: canary {canary} aborted and removed"
    );
    let s = &mut d.status;
    if !s.phase.is_rolled_back() {
        s.phase = Phase::Aborted;
    }
    s.message = why.clone();
    s.canary_revision = None;
    s.desired_weight = Some(0);
    s.record(obs.now, &why);
    d.actions
        .push(WorkloadStep::Rollout(RolloutAction::SetCanaryWeight(0)));
    remove(d, canary);
    select(d, stable, stable);
}

/// A new template: the canary revision (replacing any running one) starts
/// at weight 0 and the steps start from step 0.
fn start_canary(
    d: &mut Decision,
    spec: &RolloutSpec,
    stable: &str,
    old: Option<&str>,
    obs: &Observation<'_>,
    w: &WorkloadObservation,
) {
    let template = w.template.as_str();
    let why = match old {
        Some(old) => format!(
            "new revision {template} replaces canary {old}: restarted from step 0 at weight 0"
        ),
        None => format!("new revision {template}: canary beside stable {stable}, from step 0"),
    };
    let mut fresh = d.status.restart(spec, obs, &why);
    fresh.canary_revision = Some(template.to_owned());
    fresh.desired_weight = Some(0);
    fresh.message = why;
    d.status = fresh;
    if obs.served_weight != 0 {
        d.actions
            .push(WorkloadStep::Rollout(RolloutAction::SetCanaryWeight(0)));
    }
    if let Some(old) = old {
        remove(d, old);
    }
    run(d, stable, RevisionRole::Stable, w.replicas.max(0));
    let replicas = share_replicas(w.replicas, next_share(spec, 0, 0));
    run(d, template, RevisionRole::Canary, replicas);
    select(d, stable, template);
}

/// The canary running: the engine decides; the backend runs its weights
/// and sizes; done, the canary is promoted.
fn run_canary(
    d: &mut Decision,
    spec: &RolloutSpec,
    stable: &str,
    canary: &str,
    obs: &Observation<'_>,
    w: &WorkloadObservation,
) {
    let prior = d.status.clone();
    let obs = Observation {
        canary_revision: Some(canary),
        ..*obs
    };
    let (mut status, actions) = engine::step(spec, Prior::Known(&prior), &obs);
    status.stable_revision = prior.stable_revision.clone();
    status.revisions = prior.revisions.clone();
    d.status = status;
    let (current, ready) = w.replicas_of(canary);
    let mut canary_replicas = if d.status.phase.is_rolled_back() {
        0
    } else {
        let share = next_share(
            spec,
            d.status.current_step,
            d.status.desired_weight.unwrap_or(0),
        );
        share_replicas(w.replicas, share).max(current)
    };
    let mut engine_actions = Vec::new();
    for a in actions {
        match a {
            RolloutAction::ScaleCanary(n) => canary_replicas = canary_replicas.max(n),
            weight => engine_actions.push(WorkloadStep::Rollout(weight)),
        }
    }
    // Capacity before traffic: a weight that grows waits for the canary's
    // replicas to be ready (the progress deadline runs meanwhile); the rest
    // of the decision (a command taken, a step passed) stands, and the
    // engine asks for the weight again next time.
    let grows = |a: &WorkloadStep| matches!(a, WorkloadStep::Rollout(RolloutAction::SetCanaryWeight(w)) if *w > obs.served_weight);
    if ready < canary_replicas && engine_actions.iter().any(grows) {
        engine_actions.retain(|a| !grows(a));
        d.status.canary_weight = obs.served_weight;
        d.status.message = format!(
            "step {}: waiting for canary revision {canary}'s {canary_replicas} replicas to be ready ({ready} are) before its weight grows",
            d.status.current_step
        );
    }
    run(d, stable, RevisionRole::Stable, w.replicas.max(0));
    if d.status.phase == Phase::Succeeded && engine_actions.is_empty() {
        promote(d, spec, stable, canary, ready, obs.now, w);
        return;
    }
    d.actions.extend(engine_actions);
    run(d, canary, RevisionRole::Canary, canary_replicas);
    select(d, stable, canary);
}

/// The steps are done and the canary serves all traffic: it becomes the
/// stable once it has the stable's replicas ready.
fn promote(
    d: &mut Decision,
    spec: &RolloutSpec,
    stable: &str,
    canary: &str,
    ready: i32,
    now: SystemTime,
    w: &WorkloadObservation,
) {
    let needed = w.replicas.max(1);
    if ready < needed {
        d.status.message = format!(
            "promoting revision {canary}: waiting for its {needed} replicas to be ready ({ready} are)"
        );
        run(d, canary, RevisionRole::Canary, needed);
        select(d, stable, canary);
        return;
    }
    select(d, canary, canary);
    d.actions
        .push(WorkloadStep::Rollout(RolloutAction::SetCanaryWeight(0)));
    let delay = spec
        .scale_down_delay
        .as_deref()
        .and_then(|t| weir_api::duration::parse(t).ok())
        .unwrap_or(DEFAULT_SCALE_DOWN_DELAY);
    let at = now + delay;
    let why = format!(
        "revision {canary} promoted to stable; {stable} scales down at {}",
        rfc3339(at)
    );
    let s = &mut d.status;
    s.stable_revision = Some(canary.to_owned());
    s.canary_revision = None;
    s.desired_weight = Some(0);
    s.message = why.clone();
    s.record(now, &why);
    let (replicas, ready) = w.replicas_of(stable);
    s.revisions.retain(|r| r.revision != stable);
    s.revisions.push(RevisionStatus {
        revision: stable.to_owned(),
        role: RevisionRole::Retiring,
        replicas,
        ready,
        scale_down_at: Some(at),
    });
    run(d, canary, RevisionRole::Stable, needed);
    run(d, stable, RevisionRole::Retiring, replicas);
}

/// Retiring revisions whose time has come go.
fn retire_due(d: &mut Decision, now: SystemTime) {
    let due: Vec<String> = d
        .status
        .revisions
        .iter()
        .filter(|r| r.role == RevisionRole::Retiring && r.scale_down_at.is_some_and(|t| t <= now))
        .map(|r| r.revision.clone())
        .collect();
    for revision in due {
        let why = format!("former stable {revision} scaled down");
        d.status.record(now, &why);
        d.status.revisions.retain(|r| r.revision != revision);
        remove(d, &revision);
    }
}

/// Outside a canary the weight is 0: a change behind its back is put back.
fn hold_zero(d: &mut Decision, obs: &Observation<'_>) {
    if obs.served_weight != 0 {
        d.status.record(
            obs.now,
            &format!(
                "canary weight {} set outside the rollout: put back to 0 (no canary runs)",
                obs.served_weight
            ),
        );
        d.actions
            .push(WorkloadStep::Rollout(RolloutAction::SetCanaryWeight(0)));
    }
}

/// A waiting command with no canary to act on is answered, not taken.
fn refuse_command(d: &mut Decision, obs: &Observation<'_>, why: &str) {
    let Some(intent) = obs.command else { return };
    let s = &mut d.status;
    if s.commands.iter().any(|a| a.id == intent.id) {
        return;
    }
    s.commands.push(Acknowledgement {
        id: intent.id.clone(),
        command: intent.command,
        step: intent.step,
        outcome: format!("not applied: {why}"),
        time: rfc3339(obs.now),
    });
    s.commands
        .drain(..s.commands.len().saturating_sub(ACKNOWLEDGED));
}

/// The weight the canary is about to have: the current step's or a later
/// `setWeight` before the next gate, else the weight it holds.
pub fn next_share(spec: &RolloutSpec, from_step: usize, holding: u32) -> u32 {
    spec.steps
        .iter()
        .skip(from_step)
        .map(|s| s.kind())
        .take_while(|k| matches!(k, Some(StepKind::SetWeight(_))))
        .filter_map(|k| match k {
            Some(StepKind::SetWeight(w)) => Some(w),
            _ => None,
        })
        .chain([holding])
        .max()
        .unwrap_or(holding)
        .min(100)
}

/// Replicas of `total` a share (percent) needs, at least one.
pub fn share_replicas(total: i32, share: u32) -> i32 {
    let total = i64::from(total.max(0));
    let needed = (total * i64::from(share) + 99) / 100;
    i32::try_from(needed).unwrap_or(i32::MAX).max(1)
}

/// Runs a revision; one that was retiring and is wanted again is no longer.
fn run(d: &mut Decision, revision: &str, role: RevisionRole, replicas: i32) {
    if role != RevisionRole::Retiring {
        d.status
            .revisions
            .retain(|r| r.revision != revision || r.role != RevisionRole::Retiring);
    }
    d.actions.push(WorkloadStep::Revision(RevisionAction::Run {
        revision: revision.to_owned(),
        role,
        replicas,
    }));
}

fn remove(d: &mut Decision, revision: &str) {
    d.actions
        .push(WorkloadStep::Revision(RevisionAction::Remove {
            revision: revision.to_owned(),
        }));
}

fn select(d: &mut Decision, stable: &str, canary: &str) {
    d.actions
        .push(WorkloadStep::Revision(RevisionAction::Select {
            stable: stable.to_owned(),
            canary: canary.to_owned(),
        }));
}

/// The revisions as the decision leaves them, for the status: the last
/// `Run` of each (a retiring one keeps its scale-down time), and the
/// retiring ones not touched, none removed.
fn revisions(d: &Decision, w: &WorkloadObservation) -> Vec<RevisionStatus> {
    let retiring_at = |revision: &str| {
        d.status
            .revisions
            .iter()
            .find(|r| r.revision == revision && r.role == RevisionRole::Retiring)
            .and_then(|r| r.scale_down_at)
    };
    let mut out: Vec<RevisionStatus> = Vec::new();
    for a in &d.actions {
        match a {
            WorkloadStep::Revision(RevisionAction::Run {
                revision,
                role,
                replicas,
            }) => {
                out.retain(|r| r.revision != *revision);
                out.push(RevisionStatus {
                    revision: revision.clone(),
                    role: *role,
                    replicas: *replicas,
                    ready: w.replicas_of(revision).1,
                    scale_down_at: retiring_at(revision)
                        .filter(|_| *role == RevisionRole::Retiring),
                });
            }
            WorkloadStep::Revision(RevisionAction::Remove { revision }) => {
                out.retain(|r| r.revision != *revision);
            }
            _ => {}
        }
    }
    for r in &d.status.revisions {
        if r.role == RevisionRole::Retiring && !out.iter().any(|o| o.revision == r.revision) {
            out.push(r.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
