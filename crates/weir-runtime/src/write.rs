//! The runtime's one write path. Every change to stored objects — an
//! apply, a route's weights (`weir route`, a Rollout's step), a scale (the
//! user's, an HPA's, a Rollout's capacity ahead of traffic) — goes through
//! [`Runtime::write`], in one order: the objects are taken into the
//! in-memory state, the gateway is given the routes they make (it may
//! refuse: a port it cannot bind, routes it cannot compile), the store
//! commits them in one transaction, and the controllers are woken. A
//! refusal or a failed commit puts the state and the gateway back: nothing
//! changes. What the gateway is given is decided here too
//! ([`Runtime::publish`]: routes and ready endpoints, and the events of a
//! Service port that could not be bound).

use std::collections::HashMap;
use std::path::Path;

use weir_api::backend::RuleSelector;
use weir_api::diagnostic::{Diagnostic, Severity};
use weir_api::path::FieldPath;
use weir_api::resource::{DEFAULT_NAMESPACE, Kind, ObjectRef, Resource};
use weir_api::route::WeightChange;
use weir_gateway::service_proxy::Binding;
use weir_gateway::{Endpoint, RouteInputs, ServiceKey};

use crate::controllers::endpoints;
use crate::error::RuntimeError;
use crate::events::EventType;
use crate::log;
use crate::runtime::Runtime;
use crate::state::{Published, State};
use crate::store::{DeploymentPrograms, StoredObject, Written};

impl Runtime {
    /// Writes `resources` (and Deployments' `programs`) as the module says;
    /// what the store did with each.
    pub(crate) async fn write(
        &self,
        state: &mut State,
        resources: &[Resource],
        programs: &[DeploymentPrograms],
    ) -> Result<Vec<Written>, RuntimeError> {
        let replaced = state.objects.write(resources);
        let written = match self.sync_gateway(state).await {
            Ok(()) => self.store_objects(state, resources, programs),
            Err(e) => Err(e),
        };
        match written {
            Ok(written) => {
                self.wake.notify_one();
                Ok(written)
            }
            Err(e) => {
                state.objects.put_back(replaced);
                let _ = self.sync_gateway(state).await;
                Err(e)
            }
        }
    }

    /// The one path a weight change takes (`weir route` and Rollouts):
    /// computed, stored, and served by the gateway before it returns.
    pub(crate) async fn change_weights(
        &self,
        state: &mut State,
        vs: &ObjectRef,
        rule: &RuleSelector,
        weights: &[(String, u32)],
    ) -> Result<WeightChange, RuntimeError> {
        let Some(Resource::VirtualService(current)) = state.objects.get(vs) else {
            return Err(RuntimeError::NotFound(vs.clone()));
        };
        let mut updated = current.clone();
        let invalid = |message: String| {
            RuntimeError::Invalid(vec![Diagnostic {
                severity: Severity::Error,
                pos: weir_api::diagnostic::file_pos(Path::new(&vs.to_string())),
                object: Some(vs.to_string()),
                field: FieldPath::parse("spec.http"),
                message,
                embedded_only: false,
            }])
        };
        let change = weir_api::route::reweigh(&mut updated.spec, rule, weights).map_err(invalid)?;
        self.write(state, &[Resource::VirtualService(updated)], &[])
            .await?;
        Ok(change)
    }

    /// Stores objects (and their Deployments' programs) in one transaction.
    fn store_objects(
        &self,
        state: &mut State,
        resources: &[Resource],
        programs: &[DeploymentPrograms],
    ) -> Result<Vec<Written>, RuntimeError> {
        let stored: Vec<StoredObject> = resources
            .iter()
            .map(|r| StoredObject {
                object: r.object_ref(),
                manifest: serde_json::to_string(r).unwrap_or_default(),
            })
            .collect();
        let written = self.store.apply(&stored, programs)?;
        // Creation times, uids and generations as the store now has them.
        match self.store.object_meta() {
            Ok(meta) => state.meta = meta.into_iter().collect(),
            Err(e) => crate::log(&format!("cannot read object metadata: {e}")),
        }
        Ok(written)
    }

    /// Pushes routes and endpoints to the gateway.
    pub(crate) async fn publish(
        &self,
        state: &mut State,
        endpoints: HashMap<ServiceKey, Vec<Endpoint>>,
    ) -> Result<(), RuntimeError> {
        let routes = route_inputs(&state.objects, &state.meta);
        self.gateway.set_all(routes, endpoints.clone()).await?;
        for (service, port, at, binding) in self.gateway.service_bindings().await {
            let object = ObjectRef {
                kind: Kind::Service,
                namespace: service.0,
                name: service.1,
            };
            let (kind, reason, message) = match binding {
                Binding::Mapped(other) => (
                    EventType::Normal,
                    "PortMapped",
                    format!(
                        "port {port} at {at} needs privileges weir does not have: served at {other}"
                    ),
                ),
                Binding::Unbound(why) => (
                    EventType::Warning,
                    "FailedToBind",
                    format!(
                        "can't open port {port} at {at}: {why}; every other Service port is served, and this one is tried again at the next change"
                    ),
                ),
            };
            log(&format!(
                "service {}/{}: {message}",
                object.namespace, object.name
            ));
            state.note(&object, kind, reason, message, "kube-proxy");
        }
        state.published = Some(Published {
            route_generation: state.objects.route_generation(),
            endpoints,
        });
        Ok(())
    }

    /// Pushes the current routes and endpoints if the gateway serves others
    /// (the API side's path: it must know the gateway took them).
    pub(crate) async fn sync_gateway(&self, state: &mut State) -> Result<(), RuntimeError> {
        let endpoints = endpoints::ready_endpoints(&state.objects, &state.pods);
        if endpoints::needs_publish(&state.objects, &endpoints, state.published.as_ref()) {
            self.publish(state, endpoints).await?;
        }
        Ok(())
    }
}

/// The gateway's routes for `objects`. ingress-nginx gives a host and path
/// to the oldest Ingress that claims it: the Ingresses come in that order.
pub(crate) fn route_inputs(
    objects: &crate::state::Objects,
    meta: &std::collections::BTreeMap<ObjectRef, crate::store::ObjectMeta>,
) -> RouteInputs {
    let mut routes = RouteInputs::from_resources(objects.iter().cloned());
    routes.ingresses.sort_by_cached_key(|i| {
        let object = ObjectRef {
            kind: Kind::Ingress,
            namespace: i
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            name: i.metadata.name.clone().unwrap_or_default(),
        };
        (meta.get(&object).map(|m| m.created), object)
    });
    routes
}
