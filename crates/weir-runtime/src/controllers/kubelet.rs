//! The kubelet's part: what happens to a pod's container. An exited
//! container is restarted after CrashLoopBackOff's delay (or, if its pod
//! is terminating, the pod is gone); a pod waiting for its container gets
//! it started; a terminating pod past its grace period is killed.
//! Probes' results are judged here too ([`probe_verdict`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::contract::{Controller, Effect, Effects, World};
use crate::error::RuntimeError;
use crate::pods::{Phase, Pod, PodKey};
use crate::probe::{ProbeEvent, ProbeKind};

/// The containers' lifecycle.
pub struct Kubelet {
    /// The first restart delay (doubling as [`crate::crashloop`] says).
    pub restart_backoff: Duration,
}

/// What the kubelet looks at.
pub struct Observed<'a> {
    /// The runtime's clock.
    pub now: Instant,
    /// The pods.
    pub pods: &'a BTreeMap<PodKey, Pod>,
    /// Containers that exited since the last pass, with their exit codes.
    pub exits: &'a [(PodKey, Option<i32>)],
}

/// What the kubelet does to a pod's container.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// A container exited: record it and when it may restart.
    RecordExit {
        /// The pod.
        pod: PodKey,
        /// Its exit code (`None`: a signal).
        code: Option<i32>,
        /// Crashes in a row, for the next backoff.
        crash_streak: u32,
        /// No restart before this.
        backoff_until: Instant,
    },
    /// Start a pod's container.
    Start(PodKey),
    /// SIGKILL a pod's container (grace period over).
    Kill(PodKey),
    /// A terminated pod is gone: drop it and its record.
    Forget(PodKey),
}

impl Effect for Action {
    async fn apply<E: Effects>(self, effects: &mut E) -> Result<(), RuntimeError> {
        match self {
            Action::RecordExit {
                pod,
                code,
                crash_streak,
                backoff_until,
            } => effects.record_exit(&pod, code, crash_streak, backoff_until),
            Action::Start(pod) => effects.start(&pod),
            Action::Kill(pod) => effects.kill(&pod),
            Action::Forget(pod) => effects.forget(&pod),
        }
        Ok(())
    }
}

impl Controller for Kubelet {
    type Observed<'a> = Observed<'a>;
    type Action = Action;

    fn name(&self) -> &'static str {
        "kubelet"
    }

    fn observe<'a>(&self, world: &World<'a>) -> Observed<'a> {
        Observed {
            now: world.now,
            pods: &world.state.pods,
            exits: world.exits,
        }
    }

    fn reconcile(&mut self, observed: &Observed<'_>) -> Vec<Action> {
        let now = observed.now;
        let mut actions = Vec::new();
        let mut restart_at: HashMap<&PodKey, Instant> = HashMap::new();
        for (key, code) in observed.exits {
            let Some(pod) = observed.pods.get(key) else {
                continue;
            };
            if pod.phase == Phase::Terminating {
                actions.push(Action::Forget(key.clone()));
                continue;
            }
            let ran_for = pod
                .started
                .map_or(Duration::ZERO, |s| now.duration_since(s.0));
            let (crash_streak, delay) =
                crate::crashloop::after_exit(pod.crash_streak, ran_for, self.restart_backoff);
            restart_at.insert(key, now + delay);
            actions.push(Action::RecordExit {
                pod: key.clone(),
                code: *code,
                crash_streak,
                backoff_until: now + delay,
            });
        }
        for (key, pod) in observed.pods {
            let exited = observed.exits.iter().any(|(k, _)| k == key);
            if pod.phase == Phase::Terminating {
                if exited {
                    continue;
                }
                if pod.process.is_none() {
                    actions.push(Action::Forget(key.clone()));
                } else if pod
                    .terminating_since
                    .is_some_and(|t| now >= t + pod.id.grace)
                {
                    actions.push(Action::Kill(key.clone()));
                }
                continue;
            }
            // A container its settings forbid is never created (the
            // kubelet's CreateContainerConfigError).
            let waiting = (pod.process.is_none() || exited) && pod.id.config_error.is_none();
            let backoff = restart_at.get(key).copied().or(pod.backoff_until);
            if waiting && backoff.is_none_or(|t| t <= now) {
                actions.push(Action::Start(key.clone()));
            }
        }
        actions
    }
}

/// What a probe result means for its pod.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// Stale (an earlier container's) or no change.
    Nothing,
    /// Readiness changed to this.
    Ready(bool),
    /// Liveness failed: the container is killed (and restarts with backoff).
    Kill,
}

/// Judges a probe event against the pod it is about.
pub fn probe_verdict(pod: &Pod, event: &ProbeEvent) -> ProbeVerdict {
    if pod.generation != event.generation || pod.phase != Phase::Running {
        return ProbeVerdict::Nothing;
    }
    match event.kind {
        ProbeKind::Readiness if pod.ready != event.passing => ProbeVerdict::Ready(event.passing),
        ProbeKind::Liveness if !event.passing => ProbeVerdict::Kill,
        ProbeKind::Readiness | ProbeKind::Liveness => ProbeVerdict::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testing::pod;

    fn kubelet() -> Kubelet {
        Kubelet {
            restart_backoff: Duration::from_secs(10),
        }
    }

    #[test]
    fn starts_waiting_containers_once_their_backoff_is_over() {
        let now = Instant::now();
        let mut pods = BTreeMap::new();
        let fresh = pod("fresh", "d", "h", Phase::Pending);
        let mut backing_off = pod("backing-off", "d", "h", Phase::Running);
        backing_off.backoff_until = Some(now + Duration::from_secs(5));
        let mut due = pod("due", "d", "h", Phase::Running);
        due.backoff_until = Some(now);
        // runAsNonRoot with nothing but root: waits for good, never started.
        let mut forbidden = pod("forbidden", "d", "h", Phase::Pending);
        forbidden.id.config_error = Some("container has runAsNonRoot".into());
        for p in [fresh, backing_off, due, forbidden] {
            pods.insert(p.key(), p);
        }
        let actions = kubelet().reconcile(&Observed {
            now,
            pods: &pods,
            exits: &[],
        });
        assert_eq!(
            actions,
            vec![
                Action::Start(PodKey::new("default", "due")),
                Action::Start(PodKey::new("default", "fresh")),
            ]
        );
    }

    #[test]
    fn an_exit_is_recorded_with_crashloop_backoff_and_a_first_crash_restarts_at_once() {
        let now = Instant::now();
        let mut p = pod("p", "d", "h", Phase::Running);
        p.started = Some((
            now - Duration::from_secs(1),
            std::time::SystemTime::UNIX_EPOCH,
        ));
        let key = p.key();
        let pods = BTreeMap::from([(key.clone(), p)]);
        let exits = [(key.clone(), Some(1))];
        let actions = kubelet().reconcile(&Observed {
            now,
            pods: &pods,
            exits: &exits,
        });
        assert_eq!(
            actions,
            vec![
                Action::RecordExit {
                    pod: key.clone(),
                    code: Some(1),
                    crash_streak: 1,
                    backoff_until: now,
                },
                Action::Start(key.clone()),
            ]
        );
        // The second crash in a row waits the base delay.
        let mut pods = pods;
        pods.get_mut(&key).unwrap().crash_streak = 1;
        let actions = kubelet().reconcile(&Observed {
            now,
            pods: &pods,
            exits: &exits,
        });
        assert_eq!(
            actions,
            vec![Action::RecordExit {
                pod: key,
                code: Some(1),
                crash_streak: 2,
                backoff_until: now + Duration::from_secs(10),
            }]
        );
    }

    #[tokio::test]
    async fn terminating_pods_are_killed_after_their_grace_and_forgotten_once_stopped() {
        let now = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        // Two real processes (`sleep`), started and killed by this test.
        let sleeper = |name: &str| {
            let launch = crate::launch::Launch {
                program: "/bin/sleep".into(),
                args: vec!["30".into()],
                log: dir.path().join(format!("{name}.log")),
                ..Default::default()
            };
            crate::process::Process::spawn(&launch, None, "token").unwrap()
        };
        let mut within = pod("within", "d", "h", Phase::Terminating);
        within.terminating_since = Some(now - Duration::from_secs(29));
        within.process = Some(sleeper("within"));
        let mut past = pod("past", "d", "h", Phase::Terminating);
        past.terminating_since = Some(now - Duration::from_secs(30));
        past.process = Some(sleeper("past"));
        let mut exited = pod("exited", "d", "h", Phase::Terminating);
        exited.terminating_since = Some(now);
        let mut stopped = pod("stopped", "d", "h", Phase::Terminating);
        stopped.terminating_since = Some(now);
        let mut pods = BTreeMap::new();
        for p in [within, past, exited, stopped] {
            pods.insert(p.key(), p);
        }
        let exits = [(PodKey::new("default", "exited"), None)];
        let actions = kubelet().reconcile(&Observed {
            now,
            pods: &pods,
            exits: &exits,
        });
        for p in pods.values() {
            if let Some(process) = &p.process {
                process.signal(rustix::process::Signal::KILL);
            }
        }
        assert_eq!(
            actions,
            vec![
                Action::Forget(PodKey::new("default", "exited")),
                Action::Kill(PodKey::new("default", "past")),
                Action::Forget(PodKey::new("default", "stopped")),
            ]
        );
    }

    #[test]
    fn probe_results_of_an_earlier_container_are_ignored() {
        let mut p = pod("p", "d", "h", Phase::Running);
        p.generation = 2;
        let event = |generation, kind, passing| ProbeEvent {
            pod: p.key(),
            generation,
            kind,
            passing,
        };
        assert_eq!(
            probe_verdict(&p, &event(1, ProbeKind::Readiness, true)),
            ProbeVerdict::Nothing
        );
        assert_eq!(
            probe_verdict(&p, &event(2, ProbeKind::Readiness, true)),
            ProbeVerdict::Ready(true)
        );
        assert_eq!(
            probe_verdict(&p, &event(2, ProbeKind::Readiness, false)),
            ProbeVerdict::Nothing,
            "already unready"
        );
        assert_eq!(
            probe_verdict(&p, &event(2, ProbeKind::Liveness, false)),
            ProbeVerdict::Kill
        );
        assert_eq!(
            probe_verdict(&p, &event(2, ProbeKind::Liveness, true)),
            ProbeVerdict::Nothing
        );
    }
}
