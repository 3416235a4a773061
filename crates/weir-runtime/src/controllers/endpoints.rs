//! The endpoints controller: each Service's ready pods, pushed to the
//! gateway with the routes whenever either changed; only then do pods that
//! left the endpoints to terminate get SIGTERM, so no request is sent to a
//! pod that is stopping.

use std::collections::{BTreeMap, HashMap};

use weir_api::resource::Resource;
use weir_gateway::{Endpoint, ServiceKey};

use super::contract::{Controller, Effect, Effects, World};
use crate::error::RuntimeError;
use crate::pods::PodKey;
use crate::pods::{Phase, Pod};
use crate::state::{Objects, Published};

/// The ready endpoints of every Service with a selector.
pub fn ready_endpoints(
    objects: &Objects,
    pods: &BTreeMap<PodKey, Pod>,
) -> HashMap<ServiceKey, Vec<Endpoint>> {
    let mut endpoints = HashMap::new();
    for r in objects.iter() {
        let Resource::Service(s) = r else { continue };
        let Some(selector) = s.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        let members = pods
            .values()
            .filter(|p| {
                p.id.namespace == r.namespace()
                    && p.ready
                    && p.phase == Phase::Running
                    && p.process.is_some()
            })
            .filter(|p| selector.iter().all(|(k, v)| p.id.labels.get(k) == Some(v)))
            .map(|p| Endpoint {
                ip: p.id.ip,
                name: p.id.name.clone(),
                workload: p.id.deployment.clone(),
                labels: p.id.labels.clone(),
                ports: p.named_ports(),
            })
            .collect();
        endpoints.insert((r.namespace().to_owned(), r.name().to_owned()), members);
    }
    endpoints
}

/// Whether the gateway must be given the routes and `endpoints`: nothing
/// was published yet, or the routes or the endpoints changed since.
pub fn needs_publish(
    objects: &Objects,
    endpoints: &HashMap<ServiceKey, Vec<Endpoint>>,
    published: Option<&Published>,
) -> bool {
    published.is_none_or(|p| {
        p.route_generation != objects.route_generation() || p.endpoints != *endpoints
    })
}

/// Publishes routes and endpoints on change, then stops the pods that left.
pub struct EndpointsController;

/// What the endpoints controller looks at.
pub struct Observed<'a> {
    /// The desired objects (Services and the routes).
    pub objects: &'a Objects,
    /// The pods.
    pub pods: &'a BTreeMap<PodKey, Pod>,
    /// What the gateway serves.
    pub published: Option<&'a Published>,
}

/// What the endpoints controller asks for.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Serve the current routes with these ready endpoints.
    Publish(HashMap<ServiceKey, Vec<Endpoint>>),
    /// SIGTERM a terminating pod's container (it is out of the endpoints).
    Stop(PodKey),
}

impl Effect for Action {
    async fn apply<E: Effects>(self, effects: &mut E) -> Result<(), RuntimeError> {
        match self {
            Action::Publish(endpoints) => effects.publish(endpoints).await?,
            Action::Stop(pod) => effects.stop(&pod),
        }
        Ok(())
    }
}

impl Controller for EndpointsController {
    type Observed<'a> = Observed<'a>;
    type Action = Action;

    fn name(&self) -> &'static str {
        "endpoints"
    }

    fn observe<'a>(&self, world: &World<'a>) -> Observed<'a> {
        Observed {
            objects: &world.state.objects,
            pods: &world.state.pods,
            published: world.state.published.as_ref(),
        }
    }

    fn reconcile(&mut self, observed: &Observed<'_>) -> Vec<Action> {
        let mut actions = Vec::new();
        let endpoints = ready_endpoints(observed.objects, observed.pods);
        if needs_publish(observed.objects, &endpoints, observed.published) {
            actions.push(Action::Publish(endpoints));
        }
        for (key, pod) in observed.pods {
            if pod.phase == Phase::Terminating && !pod.sigterm_sent && pod.process.is_some() {
                actions.push(Action::Stop(key.clone()));
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testing::pod;

    #[test]
    fn publishes_only_on_a_change_of_routes_or_endpoints() {
        let mut objects = Objects::default();
        let m = weir_api::load::load_str(
            std::path::Path::new("s.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: my-app}\nspec:\n  selector: {app: my-app}\n  ports: [{port: 80}]\n",
        )
        .unwrap();
        objects.insert(m.objects[0].resource.clone());
        let pods = BTreeMap::new();
        let mut controller = EndpointsController;
        let actions = controller.reconcile(&Observed {
            objects: &objects,
            pods: &pods,
            published: None,
        });
        let key = ("default".to_owned(), "my-app".to_owned());
        assert_eq!(
            actions,
            vec![Action::Publish(HashMap::from([(key.clone(), vec![])]))],
            "nothing published yet"
        );
        let published = Published {
            route_generation: objects.route_generation(),
            endpoints: HashMap::from([(key, vec![])]),
        };
        let seen = Observed {
            objects: &objects,
            pods: &pods,
            published: Some(&published),
        };
        assert_eq!(
            controller.reconcile(&seen),
            vec![],
            "the same routes and endpoints"
        );
        let mut newer = objects.clone();
        newer.insert(m.objects[0].resource.clone());
        let seen = Observed {
            objects: &newer,
            pods: &pods,
            published: Some(&published),
        };
        assert_eq!(
            controller.reconcile(&seen).len(),
            1,
            "the routes were written"
        );
    }

    #[tokio::test]
    async fn only_ready_running_pods_that_match_the_selector_are_endpoints() {
        let mut objects = Objects::default();
        let m = weir_api::load::load_str(
            std::path::Path::new("s.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: d}\n  ports: [{port: 80}]\n",
        )
        .unwrap();
        objects.insert(m.objects[0].resource.clone());
        let dir = tempfile::tempdir().unwrap();
        let launch = crate::launch::Launch {
            program: "/bin/sleep".into(),
            args: vec!["30".into()],
            log: dir.path().join("p.log"),
            ..Default::default()
        };
        let mut pods = BTreeMap::new();
        let mut serving = pod("serving", "d", "h", Phase::Running);
        serving.ready = true;
        serving.process = Some(crate::process::Process::spawn(&launch, None, "t").unwrap());
        let mut unready = pod("unready", "d", "h", Phase::Running);
        unready.ready = false;
        let mut other = pod("other", "e", "h", Phase::Running);
        other.ready = true;
        for p in [serving, unready, other] {
            pods.insert(p.key(), p);
        }
        let endpoints = ready_endpoints(&objects, &pods);
        for p in pods.values() {
            if let Some(process) = &p.process {
                process.signal(rustix::process::Signal::KILL);
            }
        }
        let names: Vec<&str> = endpoints[&("default".to_owned(), "s".to_owned())]
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["serving"]);
    }

    #[tokio::test]
    async fn no_pod_is_stopped_after_the_gateway_refused_the_endpoints() {
        let stopping = || {
            vec![
                Action::Publish(HashMap::new()),
                Action::Stop(PodKey::new("default", "leaving")),
            ]
        };
        let mut effects = crate::controllers::testing::Recorded::default();
        Action::carry_out(stopping(), &mut effects).await.unwrap();
        assert_eq!(effects.calls, ["publish", "stop leaving"]);
        let mut effects = crate::controllers::testing::Recorded {
            fail_writes: true,
            ..Default::default()
        };
        assert!(Action::carry_out(stopping(), &mut effects).await.is_err());
        assert_eq!(
            effects.calls,
            ["publish"],
            "still in the endpoints: not stopped"
        );
    }
}
