//! The runtime's API side, what the admin socket serves: apply, delete,
//! list and route changes. Every write goes through the runtime's one write
//! path ([`Runtime::write`], `write.rs`); a rejected write changes nothing.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use weir_api::backend::{ApplyOutcome, RouteChange, RuleSelector};
use weir_api::diagnostic::Severity;
use weir_api::images::ImageMap;
use weir_api::load::{Manifests, Source, load_sources};
use weir_api::path::FieldPath;
use weir_api::resource::{Kind, ObjectRef, Resource};
use weir_api::rollout_references::check_references;

use crate::controllers::deployment::template_hash;
use crate::error::RuntimeError;
use crate::events::{EventType, Happened};
use crate::image_scope::{ProgramChange, programs_after_apply};
use crate::pods::{self, Phase, Pod};
use crate::runtime::Runtime;
use crate::state::State;
use crate::store::{DeploymentPrograms, Written};
use weir_rollout::engine::{CommandIntent, RolloutStatus};

impl Runtime {
    /// Applies manifests (the texts the CLI loaded, loaded again here
    /// through the same typed path), all or nothing.
    pub async fn apply(
        &self,
        sources: &[Source],
    ) -> Result<Vec<(ObjectRef, ApplyOutcome)>, RuntimeError> {
        let manifests = load_sources(sources).map_err(|e| RuntimeError::Invalid(e.diagnostics))?;
        let mut state = self.state.lock().await;
        let programs = scoped_programs(&manifests, &state);
        self.check_runnable(&manifests, &state, &programs)?;
        let resources: Vec<Resource> = manifests.resources().cloned().collect();
        let pairs = |map: &ImageMap| -> Vec<(String, String)> {
            map.entries()
                .iter()
                .map(|e| (e.image.clone(), e.program.clone()))
                .collect()
        };
        // Only what changed is written, as for the objects themselves.
        let stored_programs: Vec<DeploymentPrograms> = programs
            .iter()
            .filter(|(d, (map, _))| {
                state
                    .programs
                    .get(&(d.namespace.clone(), d.name.clone()))
                    .is_none_or(|before| pairs(before) != pairs(map))
            })
            .map(|(d, (map, _))| DeploymentPrograms {
                namespace: d.namespace.clone(),
                name: d.name.clone(),
                entries: pairs(map),
            })
            .collect();
        let written = self.write(&mut state, &resources, &stored_programs).await?;
        for (d, (map, changes)) in programs {
            for change in changes {
                crate::log(&format!("{}/{}: {}", d.namespace, d.name, change.message()));
                state.events.record(
                    &d,
                    Happened {
                        kind: EventType::Normal,
                        reason: "ProgramChanged",
                        message: change.message(),
                        source: "weir-apply",
                    },
                    std::time::SystemTime::now(),
                );
            }
            state.programs.insert((d.namespace, d.name), map);
        }
        drop(state);
        Ok(resources
            .iter()
            .zip(written)
            .map(|(r, w)| {
                let outcome = match w {
                    Written::Created => ApplyOutcome::Created,
                    Written::Configured => ApplyOutcome::Configured,
                    Written::Unchanged => ApplyOutcome::Unchanged,
                };
                (r.object_ref(), outcome)
            })
            .collect())
    }

    /// Every Deployment's container must have a program, and every
    /// Rollout's references must resolve: an error naming the file, line
    /// and field otherwise.
    fn check_runnable(
        &self,
        manifests: &Manifests,
        state: &State,
        programs: &ScopedPrograms,
    ) -> Result<(), RuntimeError> {
        let mut errors = Vec::new();
        for o in &manifests.objects {
            let Resource::Deployment(d) = &o.resource else {
                continue;
            };
            let object = o.resource.object_ref();
            let mut images = state.legacy_images.clone();
            if let Some((own, _)) = programs.get(&object) {
                images.merge(own.clone());
            }
            images.merge(self.config.images.clone());
            let containers = d
                .spec
                .template
                .spec
                .as_ref()
                .map(|s| s.containers.as_slice())
                .unwrap_or_default();
            if containers.len() > 1 {
                errors.push(o.diagnostic(
                    Severity::Error,
                    FieldPath::parse("spec.template.spec.containers[1]"),
                    "weir runs one container per pod; more are not implemented".into(),
                ));
            }
            for (i, c) in containers.iter().enumerate() {
                if let Err(e) = pods::check_runnable(c, &images, &self.config.program_dirs) {
                    errors.push(
                        o.diagnostic(
                            Severity::Error,
                            FieldPath::parse("spec.template.spec.containers")
                                .index(i)
                                .key("image"),
                            e.to_string(),
                        ),
                    );
                }
            }
        }
        // A Rollout's VirtualService, rule and subsets must exist among what
        // is applied and what this apply adds.
        let mut after = state.objects.clone();
        for r in manifests.resources() {
            after.insert(r.clone());
        }
        for o in &manifests.objects {
            let Resource::Rollout(ro) = &o.resource else {
                continue;
            };
            for p in check_references(
                o.resource.namespace(),
                o.resource.name(),
                &ro.spec,
                after.iter(),
            ) {
                errors.push(o.diagnostic(Severity::Error, p.field, p.message));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::Invalid(errors))
        }
    }

    /// Deletes objects (their pods terminate); absent ones are reported.
    pub async fn delete(
        &self,
        objects: &[ObjectRef],
    ) -> Result<Vec<(ObjectRef, bool)>, RuntimeError> {
        let existed = self.store.delete(objects)?;
        let mut state = self.state.lock().await;
        for o in objects {
            if let Some(Resource::Rollout(ro)) = state.objects.get(o) {
                crate::rollout_effects::forget_rollout_metrics(
                    self.gateway.rollout_metrics(),
                    o,
                    &ro.spec,
                );
            }
            state.objects.remove(o);
            state.hpa_status.remove(o);
            state.meta.remove(o);
            state.rollout_status.remove(o);
            state.rollout_status_unreadable.remove(o);
            state.rollout_commands.remove(o);
            state.events.forget(o);
            state.stop_traffic(o);
            state.hook_calls.forget(o);
        }
        drop(state);
        self.wake.notify_one();
        Ok(objects.iter().cloned().zip(existed).collect())
    }

    /// Objects of a kind in a namespace, in Kubernetes' JSON shape with
    /// status; a Service carries its cluster IP, its ports the node port
    /// each is served on, and a `LoadBalancer` its address, as the API
    /// server and a cloud (or `minikube tunnel`) fill them in; an Ingress
    /// the address and port of the ingress controller, as the controller
    /// fills it in.
    pub async fn list(&self, kind: Kind, namespace: &str) -> Vec<serde_json::Value> {
        let ingress_at = if kind == Kind::Ingress {
            self.gateway.ingress_address().await
        } else {
            None
        };
        let (node_ports, cluster_ips) = if kind == Kind::Service {
            (
                self.gateway.node_ports().await,
                self.gateway.cluster_ips().await,
            )
        } else {
            Default::default()
        };
        let state = self.state.lock().await;
        if kind == Kind::Pod {
            return state
                .pods
                .values()
                .filter(|p| p.id.namespace == namespace)
                .map(Pod::to_json)
                .collect();
        }
        state
            .objects
            .iter()
            .filter(|r| r.kind() == kind && r.namespace() == namespace)
            .map(|r| {
                let mut json = object_json(&state, r);
                if kind == Kind::Service {
                    with_node_ports(&mut json, r, &node_ports);
                    let key = (r.namespace().to_owned(), r.name().to_owned());
                    if let Some(ip) = cluster_ips.get(&key) {
                        json["spec"]["clusterIP"] = ip.to_string().into();
                    }
                }
                if let Some(at) = ingress_at {
                    json["status"]["loadBalancer"]["ingress"] = serde_json::json!([{
                        "ip": at.ip().to_string(),
                        "ports": [{"port": at.port(), "protocol": "TCP"}],
                    }]);
                }
                json
            })
            .collect()
    }

    /// Sets a Deployment's replicas (`weir scale`), persisted; its
    /// controller acts on the next pass. An HPA that targets it sets its
    /// own count again at its next sync, as on a cluster.
    pub async fn scale(&self, deployment: &ObjectRef, replicas: i32) -> Result<(), RuntimeError> {
        let mut state = self.state.lock().await;
        if !matches!(state.objects.get(deployment), Some(Resource::Deployment(_))) {
            return Err(RuntimeError::NotFound(deployment.clone()));
        }
        if let Some(resource) = state.objects.with_replicas(deployment, replicas) {
            self.write(&mut state, &[resource], &[]).await?;
        }
        Ok(())
    }

    /// The pod template a Deployment had before its current one (kept, ten
    /// deep, whenever an apply replaces a template).
    pub fn previous_template(
        &self,
        deployment: &ObjectRef,
    ) -> Result<Option<serde_json::Value>, RuntimeError> {
        Ok(self.store.previous_template(deployment)?)
    }

    /// The address `NodePort` Services are reached at (the node's IP).
    pub fn node_ip(&self) -> Option<std::net::IpAddr> {
        self.config.gateway.node_ip
    }

    /// Changes the weights of one rule of a VirtualService, persists them
    /// and returns once the gateway serves them.
    pub async fn set_route_weights(
        &self,
        vs: &ObjectRef,
        rule: &RuleSelector,
        weights: &[(String, u32)],
    ) -> Result<RouteChange, RuntimeError> {
        let started = Instant::now();
        let mut state = self.state.lock().await;
        let change = self.change_weights(&mut state, vs, rule, weights).await?;
        Ok(RouteChange {
            rule_index: change.rule_index,
            before: change.before,
            after: change.after,
            confirmed_by:
                "gateway snapshot swapped: every request from now on uses the new weights".into(),
            elapsed: started.elapsed(),
        })
    }

    /// Hands a command intent to a Rollout (persisted until acknowledged)
    /// and returns its status once the controller has acknowledged it
    /// (within 10 s).
    pub async fn rollout_command(
        &self,
        rollout: &ObjectRef,
        command: CommandIntent,
    ) -> Result<Option<RolloutStatus>, RuntimeError> {
        {
            let mut state = self.state.lock().await;
            if !matches!(state.objects.get(rollout), Some(Resource::Rollout(_))) {
                return Err(RuntimeError::NotFound(rollout.clone()));
            }
            let text = serde_json::to_string(&command).unwrap_or_default();
            self.store.set_pending_command(rollout, Some(&text))?;
            state.rollout_commands.insert(rollout.clone(), command);
        }
        self.wake.notify_one();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let state = self.state.lock().await;
                if !state.rollout_commands.contains_key(rollout) || Instant::now() > deadline {
                    return Ok(state.rollout_status.get(rollout).cloned());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An object's events, oldest first, as the Kubernetes API shows them.
    pub async fn events(&self, object: &ObjectRef) -> Vec<serde_json::Value> {
        let state = self.state.lock().await;
        state
            .events
            .of(object)
            .iter()
            .map(|e| e.to_json())
            .collect()
    }

    /// The log file of a pod.
    pub async fn log_path(&self, namespace: &str, pod: &str) -> Option<std::path::PathBuf> {
        let path = self.log_file(namespace, pod);
        path.exists().then_some(path)
    }
}

/// An object in Kubernetes' JSON shape: creation time and uid as stored,
/// and the status its controller keeps.
/// Fills in each Service port's node port and a `LoadBalancer`'s ingress
/// address from what the gateway serves.
fn with_node_ports(
    json: &mut serde_json::Value,
    r: &Resource,
    served: &[(weir_gateway::service_proxy::NodePort, std::net::SocketAddr)],
) {
    let key = (r.namespace().to_owned(), r.name().to_owned());
    let mine: Vec<_> = served.iter().filter(|(n, _)| n.service == key).collect();
    let Some(ports) = json
        .pointer_mut("/spec/ports")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return;
    };
    for port in ports {
        let number = port["port"].as_u64();
        if let Some((n, _)) = mine.iter().find(|(n, _)| Some(u64::from(n.port)) == number) {
            port["nodePort"] = n.node_port.into();
        }
    }
    if let Some((_, addr)) = mine.first()
        && json
            .pointer("/spec/type")
            .and_then(serde_json::Value::as_str)
            == Some("LoadBalancer")
    {
        json["status"]["loadBalancer"]["ingress"] =
            serde_json::json!([{"ip": addr.ip().to_string()}]);
    }
}

fn object_json(state: &State, r: &Resource) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    let meta = state.meta.get(&r.object_ref());
    let created = meta.map_or_else(SystemTime::now, |m| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(m.created.max(0) as u64)
    });
    v["metadata"]["creationTimestamp"] = serde_json::json!(pods::humantime_rfc3339(created));
    if let Some(m) = meta {
        v["metadata"]["uid"] = serde_json::json!(m.uid);
        v["metadata"]["generation"] = serde_json::json!(m.generation);
    }
    match r {
        Resource::Deployment(d) => {
            let pods: Vec<&Pod> = state
                .pods
                .values()
                .filter(|p| {
                    p.id.namespace == r.namespace()
                        && p.id.deployment == r.name()
                        && p.phase != Phase::Terminating
                })
                .collect();
            let hash = template_hash(&d.spec.template);
            let ready = pods.iter().filter(|p| p.ready).count();
            v["status"] = serde_json::json!({
                "replicas": pods.len(),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "updatedReplicas": pods.iter().filter(|p| p.id.template_hash == hash).count(),
                // The controller acts on every change at once.
                "observedGeneration": meta.map_or(1, |m| m.generation),
            });
        }
        Resource::HpaV1(_) | Resource::HpaV2(_) => {
            if let Some(status) = state.hpa_status.get(&r.object_ref()) {
                v["status"] = serde_json::to_value(status).unwrap_or_default();
            }
        }
        Resource::Rollout(_) => {
            if let Some(status) = state.rollout_status.get(&r.object_ref()) {
                v["status"] = serde_json::to_value(status).unwrap_or_default();
            }
        }
        _ => {}
    }
    v
}

/// Each applied Deployment's programs after the apply, and what changed.
type ScopedPrograms = BTreeMap<ObjectRef, (ImageMap, Vec<ProgramChange>)>;

/// The programs of the Deployments `manifests` apply: the image map
/// applied with them, over each one's own programs so far.
fn scoped_programs(manifests: &Manifests, state: &State) -> ScopedPrograms {
    let mut out = BTreeMap::new();
    for r in manifests.resources() {
        let Resource::Deployment(d) = r else {
            continue;
        };
        let object = r.object_ref();
        let images: Vec<&str> = d
            .spec
            .template
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .filter_map(|c| c.image.as_deref())
            .collect();
        let previous = state
            .programs
            .get(&(object.namespace.clone(), object.name.clone()));
        out.insert(
            object,
            programs_after_apply(previous, &manifests.images, &images),
        );
    }
    out
}
