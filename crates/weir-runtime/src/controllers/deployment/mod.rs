//! The Deployment controller: how many pods of which template to create
//! and which to delete, for replica changes, RollingUpdate and Recreate.
//! Kubernetes splits this over ReplicaSets; weir keeps one pod set per
//! Deployment, told apart by `pod-template-hash`, and [`plan`] makes the
//! same decisions the ReplicaSet-level rules make (the table test names
//! each rule).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::SystemTime;

use weir_api::k8s_openapi::api::apps::v1::Deployment;
use weir_api::k8s_openapi::api::core::v1::PodTemplateSpec;
use weir_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_api::resource::{Kind, ObjectRef, Resource};

mod action;

pub use action::Action;

use super::contract::{Controller, World};
use crate::pods::PodKey;
use crate::pods::{Phase, Pod};
use crate::state::Objects;

/// How a Deployment replaces pods of an old template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// All old pods go, and new ones start only once they are gone.
    Recreate,
    /// New pods up to `desired + max_surge` in total; old ones go while at
    /// least `desired - max_unavailable` are ready.
    RollingUpdate {
        /// Extra pods allowed during the update.
        max_surge: usize,
        /// Pods that may be unavailable during the update.
        max_unavailable: usize,
    },
}

/// What [`plan`] needs of a Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPods {
    /// `spec.replicas`.
    pub replicas: usize,
    /// The current template's hash.
    pub template_hash: String,
    /// `spec.strategy`.
    pub strategy: Strategy,
    /// `spec.paused` (`weir rollout pause`): a new template does not roll
    /// out until resumed.
    pub paused: bool,
}

impl DesiredPods {
    /// Reads a Deployment: replicas default to 1, the strategy to
    /// RollingUpdate with 25 % surge (rounded up) and 25 % unavailable
    /// (rounded down); both zero means one may be unavailable
    /// (`ResolveFenceposts`).
    pub fn of(d: &Deployment) -> Self {
        let replicas = d.spec.replicas.unwrap_or(1).max(0) as usize;
        let strategy = d.spec.strategy.as_ref();
        let strategy = if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            Strategy::Recreate
        } else {
            let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
            let max_surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), replicas, true);
            let mut max_unavailable = resolve(
                rolling.and_then(|r| r.max_unavailable.as_ref()),
                replicas,
                false,
            );
            if max_surge == 0 && max_unavailable == 0 {
                max_unavailable = 1;
            }
            Strategy::RollingUpdate {
                max_surge,
                max_unavailable,
            }
        };
        Self {
            replicas,
            template_hash: template_hash(&d.spec.template),
            strategy,
            paused: d.spec.paused.unwrap_or(false),
        }
    }
}

/// An absolute or percentage value of `replicas`, 25 % when unset.
fn resolve(value: Option<&IntOrString>, replicas: usize, round_up: bool) -> usize {
    let share = |pct: f64| {
        let exact = replicas as f64 * pct / 100.0;
        (if round_up {
            exact.ceil()
        } else {
            exact.floor()
        })
        .max(0.0) as usize
    };
    match value {
        None => share(25.0),
        Some(IntOrString::Int(n)) => (*n).max(0) as usize,
        Some(IntOrString::String(s)) => share(s.trim_end_matches('%').parse().unwrap_or(25.0)),
    }
}

/// What [`plan`] needs of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    /// The pod.
    pub key: PodKey,
    /// Its template's hash.
    pub template_hash: String,
    /// Ready (and so available: weir has no minReadySeconds).
    pub ready: bool,
    /// Terminating: counted for Recreate's wait, not as a replica.
    pub terminating: bool,
    /// Creation time, for the deletion order.
    pub created: SystemTime,
}

/// Pods to create (of the current template) and to terminate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// How many new pods.
    pub create: usize,
    /// Which pods go.
    pub delete: Vec<PodKey>,
}

/// One Deployment's step towards `desired`, given its pods.
pub fn plan(desired: &DesiredPods, pods: &[PodState]) -> Plan {
    let live: Vec<&PodState> = pods.iter().filter(|p| !p.terminating).collect();
    let (new, old): (Vec<&PodState>, Vec<&PodState>) = live
        .into_iter()
        .partition(|p| p.template_hash == desired.template_hash);
    let n = desired.replicas;
    let mut plan = Plan::default();
    if old.is_empty() {
        if new.len() < n {
            plan.create = n - new.len();
        } else if new.len() > n {
            plan.delete = victims(&new, new.len() - n);
        }
        return plan;
    }
    // Paused: pods of the old template stay and no new one starts, as the
    // Deployment controller stops rolling a paused Deployment.
    if desired.paused {
        return plan;
    }
    match desired.strategy {
        Strategy::Recreate => {
            plan.delete = old.iter().map(|p| p.key.clone()).collect();
            // New pods only once no pod of an old template is left at all.
        }
        Strategy::RollingUpdate {
            max_surge,
            max_unavailable,
        } => {
            let total = new.len() + old.len();
            let max_total = n + max_surge;
            if new.len() < n && total < max_total {
                plan.create = (n - new.len()).min(max_total - total);
            }
            let min_available = n.saturating_sub(max_unavailable);
            let available = new.iter().chain(&old).filter(|p| p.ready).count();
            // Unready old pods go first, freely; ready ones while availability allows.
            let mut budget = available.saturating_sub(min_available);
            let mut going = victims(&old, old.len());
            going.retain(|key| {
                let ready = old.iter().any(|p| p.key == *key && p.ready);
                if !ready {
                    return true;
                }
                if budget > 0 {
                    budget -= 1;
                    return true;
                }
                false
            });
            // Never below desired − maxUnavailable pods in total.
            let keep_total = min_available;
            if total - going.len() < keep_total {
                going.truncate(total.saturating_sub(keep_total));
            }
            plan.delete = going;
        }
    }
    plan
}

/// Scale-down victims: unready before ready, newest first (Kubernetes'
/// `ActivePods` order, reduced to what weir's pods have).
fn victims(pods: &[&PodState], n: usize) -> Vec<PodKey> {
    let mut sorted = pods.to_vec();
    sorted.sort_by(|a, b| a.ready.cmp(&b.ready).then(b.created.cmp(&a.created)));
    sorted.into_iter().take(n).map(|p| p.key.clone()).collect()
}

/// `pod-template-hash`: a short stable hash of the pod template, in the
/// alphabet Kubernetes uses for generated names.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let mut h = DefaultHasher::new();
    serde_json::to_string(template)
        .unwrap_or_default()
        .hash(&mut h);
    let mut n = h.finish();
    (0..10)
        .map(|_| {
            let c = NAME_ALPHABET[(n % NAME_ALPHABET.len() as u64) as usize] as char;
            n /= NAME_ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// The characters of generated names (no vowels, no look-alikes).
pub const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Runs [`plan`] for every Deployment and terminates pods whose Deployment is gone.
pub struct DeploymentController;

/// What the Deployment controller looks at.
pub struct Observed<'a> {
    /// The desired objects (the Deployments).
    pub objects: &'a Objects,
    /// The pods.
    pub pods: &'a BTreeMap<PodKey, Pod>,
}

impl Controller for DeploymentController {
    type Observed<'a> = Observed<'a>;
    type Action = Action;

    fn name(&self) -> &'static str {
        "deployment"
    }

    fn observe<'a>(&self, world: &World<'a>) -> Observed<'a> {
        Observed {
            objects: &world.state.objects,
            pods: &world.state.pods,
        }
    }

    fn reconcile(&mut self, observed: &Observed<'_>) -> Vec<Action> {
        let mut actions = Vec::new();
        for pod in observed.pods.values() {
            let owner = ObjectRef {
                kind: Kind::Deployment,
                namespace: pod.id.namespace.clone(),
                name: pod.id.deployment.clone(),
            };
            if pod.phase != Phase::Terminating && observed.objects.get(&owner).is_none() {
                actions.push(Action::Terminate(pod.key()));
            }
        }
        for r in observed.objects.iter() {
            let Resource::Deployment(d) = r else { continue };
            let mut desired = DesiredPods::of(d);
            if observed.objects.is_rollout_workload(&r.object_ref()) {
                desired.replicas = 0;
            }
            let pods: Vec<PodState> = observed
                .pods
                .values()
                .filter(|p| p.id.namespace == r.namespace() && p.id.deployment == r.name())
                .map(|p| PodState {
                    key: p.key(),
                    template_hash: p.id.template_hash.clone(),
                    ready: p.ready,
                    terminating: p.phase == Phase::Terminating,
                    created: p.id.created,
                })
                .collect();
            let plan = plan(&desired, &pods);
            actions.extend(plan.delete.into_iter().map(Action::Terminate));
            let waiting_for_old = desired.strategy == Strategy::Recreate
                && pods
                    .iter()
                    .any(|p| p.template_hash != desired.template_hash);
            if !waiting_for_old {
                actions.extend((0..plan.create).map(|_| Action::CreatePod {
                    deployment: r.object_ref(),
                    template_hash: desired.template_hash.clone(),
                }));
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `n` pods of template `hash`, ready or not; names `{hash}-{i}`, the
    /// higher `i` the newer.
    fn pods(hash: &str, n: usize, ready: bool) -> Vec<PodState> {
        (0..n)
            .map(|i| PodState {
                key: PodKey::new("default", format!("{hash}-{i}-{}", u8::from(ready))),
                template_hash: hash.into(),
                ready,
                terminating: false,
                created: SystemTime::UNIX_EPOCH + Duration::from_secs(i as u64),
            })
            .collect()
    }

    fn rolling(replicas: usize, max_surge: usize, max_unavailable: usize) -> DesiredPods {
        DesiredPods {
            replicas,
            template_hash: "new".into(),
            strategy: Strategy::RollingUpdate {
                max_surge,
                max_unavailable,
            },
            paused: false,
        }
    }

    fn names(keys: &[PodKey]) -> Vec<&str> {
        keys.iter().map(|k| k.name.as_str()).collect()
    }

    #[test]
    fn plans_as_kubernetes_does() {
        struct Case {
            rule: &'static str,
            desired: DesiredPods,
            pods: Vec<PodState>,
            create: usize,
            delete: Vec<&'static str>,
        }
        let recreate = DesiredPods {
            replicas: 2,
            template_hash: "new".into(),
            strategy: Strategy::Recreate,
            paused: false,
        };
        let paused = DesiredPods {
            paused: true,
            ..rolling(3, 1, 0)
        };
        let cases = vec![
            Case {
                rule: "paused: a new template does not start rolling",
                desired: paused.clone(),
                pods: pods("old", 3, true),
                create: 0,
                delete: vec![],
            },
            Case {
                rule: "paused: a rolling update stops where it is",
                desired: paused.clone(),
                pods: [pods("old", 2, true), pods("new", 1, false)].concat(),
                create: 0,
                delete: vec![],
            },
            Case {
                rule: "paused: with one template, replicas still follow spec.replicas",
                desired: paused,
                pods: pods("new", 1, true),
                create: 2,
                delete: vec![],
            },
            Case {
                rule: "ReplicaSet manageReplicas: too few pods → create the difference",
                desired: rolling(3, 1, 0),
                pods: pods("new", 1, true),
                create: 2,
                delete: vec![],
            },
            Case {
                rule: "ReplicaSet manageReplicas: too many → delete, unready first, then newest (ActivePods)",
                desired: rolling(2, 1, 0),
                pods: [pods("new", 3, true), pods("new", 1, false)].concat(),
                create: 0,
                delete: vec!["new-0-0", "new-2-1"],
            },
            Case {
                rule: "manageReplicas: at the desired count nothing changes",
                desired: rolling(2, 1, 0),
                pods: pods("new", 2, false),
                create: 0,
                delete: vec![],
            },
            Case {
                rule: "rolling update NewRSNewReplicas: new pods up to replicas + maxSurge in total",
                desired: rolling(4, 1, 0),
                pods: pods("old", 4, true),
                create: 1,
                delete: vec![],
            },
            Case {
                rule: "rolling update: maxUnavailable lets ready old pods go at once (newest first)",
                desired: rolling(4, 1, 1),
                pods: pods("old", 4, true),
                create: 1,
                delete: vec!["old-3-1"],
            },
            Case {
                rule: "rolling update: unready old pods go before ready ones, whatever the availability, \
                       down to replicas − maxUnavailable pods in total",
                desired: rolling(2, 1, 0),
                pods: [pods("old", 2, false), pods("new", 1, false)].concat(),
                create: 0,
                delete: vec!["old-1-0"],
            },
            Case {
                rule: "rolling update scaleDownOldReplicaSetsForRollingUpdate: ready old pods go as new ones become available",
                desired: rolling(2, 1, 0),
                pods: [pods("old", 2, true), pods("new", 1, true)].concat(),
                create: 0,
                delete: vec!["old-1-1"],
            },
            Case {
                rule: "rolling update: a new pod not yet ready frees no old one (minAvailable = replicas − maxUnavailable)",
                desired: rolling(2, 1, 0),
                pods: [pods("old", 2, true), pods("new", 1, false)].concat(),
                create: 0,
                delete: vec![],
            },
            Case {
                rule: "rolling update: the surge is spent, so no new pod until an old one goes",
                desired: rolling(3, 1, 0),
                pods: [pods("old", 3, true), pods("new", 1, false)].concat(),
                create: 0,
                delete: vec![],
            },
            Case {
                rule: "Recreate rolloutRecreate: every old pod goes; new ones wait (see the controller)",
                desired: recreate,
                pods: pods("old", 2, true),
                create: 0,
                delete: vec!["old-0-1", "old-1-1"],
            },
            Case {
                rule: "terminating pods are not replicas: the count is made up at once",
                desired: rolling(2, 1, 0),
                pods: {
                    let mut p = pods("new", 2, true);
                    p[0].terminating = true;
                    p
                },
                create: 1,
                delete: vec![],
            },
            Case {
                rule: "scale to zero deletes every pod",
                desired: rolling(0, 0, 1),
                pods: pods("new", 2, true),
                create: 0,
                delete: vec!["new-1-1", "new-0-1"],
            },
        ];
        for case in cases {
            let plan = plan(&case.desired, &case.pods);
            assert_eq!(plan.create, case.create, "{}: create", case.rule);
            assert_eq!(names(&plan.delete), case.delete, "{}: delete", case.rule);
        }
    }

    #[test]
    fn reads_the_strategy_with_kubernetes_defaults_and_rounding() {
        let load = |strategy: serde_json::Value, replicas: u32| {
            let d: Deployment = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "d"},
                "spec": {
                    "replicas": replicas,
                    "strategy": strategy,
                    "selector": {"matchLabels": {"a": "b"}},
                    "template": {"spec": {"containers": [{"name": "c"}]}},
                },
            }))
            .unwrap();
            DesiredPods::of(&d).strategy
        };
        let rolling = |max_surge, max_unavailable| Strategy::RollingUpdate {
            max_surge,
            max_unavailable,
        };
        // 25 % of 10: surge rounds up to 3, unavailable down to 2 (ResolveFenceposts).
        let none = serde_json::Value::Null;
        assert_eq!(load(none.clone(), 10), rolling(3, 2));
        // 25 % of 1: surge 1, unavailable 0.
        assert_eq!(load(none, 1), rolling(1, 0));
        assert_eq!(
            load(
                serde_json::json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
                4
            ),
            rolling(0, 1),
            "both zero: one may be unavailable"
        );
        assert_eq!(
            load(
                serde_json::json!({"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "50%"}}),
                3
            ),
            rolling(2, 1)
        );
        assert_eq!(
            load(serde_json::json!({"type": "Recreate"}), 3),
            Strategy::Recreate
        );
    }

    #[test]
    fn template_hashes_are_stable_and_name_safe() {
        let t = PodTemplateSpec::default();
        let h = template_hash(&t);
        assert_eq!(h, template_hash(&t));
        assert_eq!(h.len(), 10);
        assert!(h.bytes().all(|c| NAME_ALPHABET.contains(&c)));
    }
}
