//! What the runtime knows: the desired objects (with a generation that
//! moves whenever a route-deciding object is written), the pods, and what
//! the controllers keep between passes. Controllers read it; only the
//! runtime's executor writes it.

use std::collections::{BTreeMap, HashMap};

use weir_api::images::ImageMap;
use weir_api::resource::{ObjectRef, Resource};
use weir_gateway::{Endpoint, ServiceKey};

use crate::hpa::HpaStatus;
use crate::pods::{Pod, PodKey};
use crate::store::ObjectMeta;
use crate::usage::CpuHistory;
use weir_rollout::engine::{CommandIntent, RolloutStatus};

/// The desired objects. Writing one of the kinds the gateway's routes are
/// built from bumps [`Objects::route_generation`], so a change of routes
/// is seen by comparing two numbers, not by re-encoding the objects.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    by_ref: BTreeMap<ObjectRef, Resource>,
    route_generation: u64,
}

impl Objects {
    /// Whether `deployment` is the workload of some Rollout
    /// (`spec.workloadRef`): its revisions run its pods, not it, and its
    /// HPA scales its stable revision.
    pub fn is_rollout_workload(&self, deployment: &ObjectRef) -> bool {
        self.iter().any(|r| match r {
            Resource::Rollout(ro) => {
                r.namespace() == deployment.namespace
                    && ro
                        .spec
                        .workload_ref
                        .as_ref()
                        .is_some_and(|w| w.name == deployment.name)
            }
            _ => false,
        })
    }

    /// The object `r`, if stored.
    pub fn get(&self, r: &ObjectRef) -> Option<&Resource> {
        self.by_ref.get(r)
    }

    /// Every object, ordered by reference.
    pub fn iter(&self) -> impl Iterator<Item = &Resource> + Clone {
        self.by_ref.values()
    }

    /// Stores (or replaces) an object.
    pub fn insert(&mut self, resource: Resource) {
        if resource.kind().shapes_routes() {
            self.route_generation += 1;
        }
        self.by_ref.insert(resource.object_ref(), resource);
    }

    /// Removes an object; whether it was there.
    pub fn remove(&mut self, r: &ObjectRef) -> bool {
        let removed = self.by_ref.remove(r).is_some();
        if removed && r.kind.shapes_routes() {
            self.route_generation += 1;
        }
        removed
    }

    /// Takes `resources` in, replacing any of the same name; what they
    /// replaced, for [`Objects::put_back`] should the write be refused.
    pub fn write(&mut self, resources: &[Resource]) -> Replaced {
        let mut replaced = Vec::with_capacity(resources.len());
        for r in resources {
            let at = r.object_ref();
            replaced.push((at.clone(), self.by_ref.get(&at).cloned()));
            self.insert(r.clone());
        }
        Replaced(replaced)
    }

    /// Undoes a [`Objects::write`]: the last written first, so an object
    /// written twice gets back what it was before both.
    pub fn put_back(&mut self, replaced: Replaced) {
        for (at, was) in replaced.0.into_iter().rev() {
            match was {
                Some(old) => self.insert(old),
                None => {
                    self.remove(&at);
                }
            }
        }
    }

    /// `deployment` with `replicas`, as a new resource to write (`None`
    /// when it is not a stored Deployment).
    pub fn with_replicas(&self, deployment: &ObjectRef, replicas: i32) -> Option<Resource> {
        let Resource::Deployment(d) = self.by_ref.get(deployment)? else {
            return None;
        };
        let mut d = d.clone();
        d.spec.replicas = Some(replicas);
        Some(Resource::Deployment(d))
    }

    /// A number that changes whenever the routes' objects do.
    pub fn route_generation(&self) -> u64 {
        self.route_generation
    }
}

/// The HPA controller's status of one HorizontalPodAutoscaler.
pub type HpaStatuses = HashMap<ObjectRef, HpaStatus>;

/// What was last pushed to the gateway.
#[derive(Debug, PartialEq)]
pub struct Published {
    /// [`Objects::route_generation`] of the routes pushed.
    pub route_generation: u64,
    /// The ready endpoints of each Service.
    pub endpoints: HashMap<ServiceKey, Vec<Endpoint>>,
}

/// Everything the runtime holds under its one lock.
#[derive(Default)]
pub struct State {
    /// The desired objects.
    pub objects: Objects,
    /// Each object's creation time and uid, as the store keeps them.
    pub meta: BTreeMap<ObjectRef, ObjectMeta>,
    /// Each Deployment's programs by image (`namespace`, `name`): the
    /// image map applied with it ([`crate::image_scope`]).
    pub programs: BTreeMap<(String, String), ImageMap>,
    /// The image map of stores from before programs were scoped to their
    /// Deployments; used only for an image its Deployment does not map.
    pub legacy_images: ImageMap,
    /// The pods.
    pub pods: BTreeMap<PodKey, Pod>,
    /// Pods gone since their records were last synced to the store.
    pub removed: Vec<PodKey>,
    /// The HPA controller's last status for each HPA.
    pub hpa_status: HpaStatuses,
    /// CPU samples per pod.
    pub cpu: CpuHistory,
    /// The last pod IP handed out (a position in the pod IP space).
    pub next_ip: u32,
    /// The last container generation handed out (probe events name theirs).
    pub next_generation: u64,
    /// What the gateway serves.
    pub published: Option<Published>,
    /// Each Rollout's status.
    pub rollout_status: HashMap<ObjectRef, RolloutStatus>,
    /// Rollouts whose stored status could not be read at start, and why.
    pub rollout_status_unreadable: HashMap<ObjectRef, String>,
    /// Commands for Rollouts, each waiting (persisted) for the controller
    /// to acknowledge it.
    pub rollout_commands: HashMap<ObjectRef, CommandIntent>,
    /// The load weir sends itself for Rollouts (`spec.traffic`): its rate
    /// and the task sending it.
    pub traffic: HashMap<ObjectRef, (f64, tokio::task::JoinHandle<()>)>,
    /// Replicas raised ahead of traffic for Rollouts, by Deployment: when,
    /// and to what (the latest per Deployment; its HPA holds them).
    pub scaled_ahead: HashMap<ObjectRef, (tokio::time::Instant, i32)>,
    /// Events for `describe`, bounded.
    pub events: crate::events::EventLog,
    /// What the pods' Prometheus target list holds (written when it changes).
    pub pod_targets: Option<Vec<crate::discovery::TargetGroup>>,
    /// Rollouts' webhook calls and their latest answers.
    pub hook_calls: crate::webhooks::HookCalls,
}

impl State {
    /// The programs a Deployment's pods run, before the runtime's own
    /// `--image` flags: its own, over the pre-scoping map.
    pub fn programs_of(&self, namespace: &str, name: &str) -> ImageMap {
        let mut images = self.legacy_images.clone();
        if let Some(own) = self.programs.get(&(namespace.to_owned(), name.to_owned())) {
            images.merge(own.clone());
        }
        images
    }

    /// Records an event about `object` now.
    pub fn note(
        &mut self,
        object: &ObjectRef,
        kind: crate::events::EventType,
        reason: &'static str,
        message: String,
        source: &'static str,
    ) {
        self.events.record(
            object,
            crate::events::Happened {
                kind,
                reason,
                message,
                source,
            },
            std::time::SystemTime::now(),
        );
    }

    /// Stops the load weir sends for a Rollout, if any.
    pub fn stop_traffic(&mut self, rollout: &ObjectRef) {
        if let Some((_, task)) = self.traffic.remove(rollout) {
            task.abort();
        }
    }
}

impl State {
    /// A pod gone: out of memory now, its record and logs at the next sync.
    pub fn forget_pod(&mut self, key: &PodKey) {
        self.pods.remove(key);
        self.cpu.forget(key);
        self.removed.push(key.clone());
    }
}

/// What a write replaced: each object written and what it was before
/// (`None`: it is new).
pub struct Replaced(Vec<(ObjectRef, Option<Resource>)>);

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Vec<Resource> {
        weir_api::load::load_str(std::path::Path::new("t.yaml"), yaml)
            .expect("valid")
            .objects
            .into_iter()
            .map(|o| o.resource)
            .collect()
    }

    #[test]
    fn route_generation_moves_only_for_route_kinds() {
        let resources = load(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: i}]}\n",
        );
        let mut objects = Objects::default();
        let g0 = objects.route_generation();
        objects.insert(resources[1].clone());
        assert_eq!(
            objects.route_generation(),
            g0,
            "a Deployment shapes no route"
        );
        objects.insert(resources[0].clone());
        let g1 = objects.route_generation();
        assert!(g1 > g0, "a Service does");
        let scaled = objects
            .with_replicas(&resources[1].object_ref(), 3)
            .expect("a Deployment");
        objects.insert(scaled);
        assert_eq!(
            objects.route_generation(),
            g1,
            "scaling is not a route change"
        );
        assert!(objects.remove(&resources[0].object_ref()));
        assert!(objects.route_generation() > g1);
        assert!(!objects.remove(&resources[0].object_ref()));
    }

    #[test]
    fn a_refused_write_puts_back_exactly_what_it_replaced() {
        let yaml = |name: &str, replicas: u32| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: i}}]}}\n"
            )
        };
        let mut objects = Objects::default();
        let kept = load(&yaml("kept", 1)).remove(0);
        let changed = load(&yaml("changed", 1)).remove(0);
        objects.insert(kept.clone());
        objects.insert(changed.clone());
        let before: Vec<Resource> = objects.iter().cloned().collect();
        // One write: a new object, one replaced twice.
        let written = [
            load(&yaml("new", 1)).remove(0),
            load(&yaml("changed", 2)).remove(0),
            load(&yaml("changed", 3)).remove(0),
        ];
        let replaced = objects.write(&written);
        assert_eq!(objects.iter().count(), 3);
        assert_eq!(objects.get(&changed.object_ref()), Some(&written[2]));
        objects.put_back(replaced);
        let after: Vec<Resource> = objects.iter().cloned().collect();
        assert_eq!(
            after, before,
            "the new one gone, the twice-written one as it was"
        );
    }
}
