//! The runtime's [`Effects`], through which the controllers' actions are
//! carried out: the one place pods are created, started and signalled,
//! with the events each records; changes to stored objects (a scale, a
//! route's weights) and to what the gateway serves go through the one
//! write path (`write.rs`); a Rollout's status and own traffic are
//! `rollout_effects.rs`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use rustix::process::Signal;
use tokio::time::Instant;
use weir_api::resource::{Kind, ObjectRef, Resource};

use crate::controllers::contract::Effects;
use crate::controllers::deployment::NAME_ALPHABET;
use crate::error::RuntimeError;
use crate::events::EventType;
use crate::hpa::HpaStatus;
use crate::log;
use crate::pod_ip::allocate_ip;
use crate::pods::{self, Phase, Pod, PodIdentity, PodKey};
use crate::probe::{self, ProbeKind, ProbeTarget};
use crate::process::Process;
use crate::rollout_effects::{own_traffic, set_rollout_status};
use crate::runtime::{Executor, Runtime};
use crate::state::State;
use weir_gateway::{Endpoint, ServiceKey};
use weir_rollout::engine::RolloutStatus;
use weir_rollout::traffic::SyntheticRequest;

impl Effects for Executor<'_> {
    fn create_pod(&mut self, deployment: &ObjectRef, template_hash: &str) -> bool {
        self.runtime
            .create_pod(self.state, deployment, template_hash, self.now)
    }

    fn wake(&mut self) {
        self.runtime.wake.notify_one();
    }

    fn terminate(&mut self, pod: &PodKey) {
        terminate(self.state, pod, self.now);
    }

    fn record_exit(
        &mut self,
        pod: &PodKey,
        code: Option<i32>,
        crash_streak: u32,
        backoff_until: Instant,
    ) {
        record_exit(self.state, pod, code, crash_streak, backoff_until, self.now);
    }

    fn start(&mut self, pod: &PodKey) {
        self.runtime.start_container(self.state, pod, self.now);
        started_event(self.state, pod);
    }

    fn stop(&mut self, pod: &PodKey) {
        if let Some(pod) = self.state.pods.get_mut(pod)
            && let Some(process) = &pod.process
        {
            process.signal(Signal::TERM);
            pod.sigterm_sent = true;
        }
    }

    fn kill(&mut self, pod: &PodKey) {
        if let Some(process) = self.state.pods.get(pod).and_then(|p| p.process.as_ref()) {
            process.signal(Signal::KILL);
        }
    }

    fn forget(&mut self, pod: &PodKey) {
        self.state.events.forget(&pod_object(pod));
        self.state.forget_pod(pod);
    }

    async fn publish(
        &mut self,
        endpoints: HashMap<ServiceKey, Vec<Endpoint>>,
    ) -> Result<(), RuntimeError> {
        self.runtime.publish(self.state, endpoints).await
    }

    async fn scale(&mut self, deployment: &ObjectRef, replicas: i32) {
        rescale_event(self.state, deployment, replicas);
        self.runtime
            .persist_scale(self.state, deployment, replicas)
            .await;
    }

    async fn scale_ahead(&mut self, deployment: &ObjectRef, replicas: i32) {
        if self
            .runtime
            .persist_scale(self.state, deployment, replicas)
            .await
        {
            self.state
                .scaled_ahead
                .insert(deployment.clone(), (self.now, replicas));
        }
    }

    fn set_hpa_status(&mut self, hpa: ObjectRef, status: HpaStatus) {
        self.state.hpa_status.insert(hpa, status);
    }

    async fn set_route_weights(
        &mut self,
        virtual_service: &ObjectRef,
        rule_index: usize,
        weights: &[(String, u32)],
    ) -> Result<(), RuntimeError> {
        self.runtime
            .change_weights(
                self.state,
                virtual_service,
                &weir_api::backend::RuleSelector::Index(rule_index),
                weights,
            )
            .await
            .map(|_| ())
    }

    async fn set_traffic(&mut self, rollout: ObjectRef, load: Option<(f64, SyntheticRequest)>) {
        let state = &mut *self.state;
        match load {
            Some((rate, _)) if state.traffic.get(&rollout).is_some_and(|(r, _)| *r == rate) => {}
            Some((rate, request)) => {
                state.stop_traffic(&rollout);
                if let Some(task) = own_traffic(&self.runtime.gateway, rate, request).await {
                    state.traffic.insert(rollout, (rate, task));
                }
            }
            None => state.stop_traffic(&rollout),
        }
    }

    fn set_rollout_status(
        &mut self,
        rollout: ObjectRef,
        status: RolloutStatus,
        took_command: bool,
    ) {
        set_rollout_status(
            &self.runtime.store,
            self.runtime.gateway.rollout_metrics(),
            self.state,
            rollout,
            status,
            took_command,
        );
    }

    async fn write_objects(&mut self, resources: Vec<Resource>) -> Result<(), RuntimeError> {
        self.runtime
            .write(self.state, &resources, &[])
            .await
            .map(|_| ())
    }

    async fn edit_route(
        &mut self,
        virtual_service: &ObjectRef,
        edit: &weir_api::route::RouteEdit,
    ) -> Result<(), RuntimeError> {
        let Some(Resource::VirtualService(current)) = self.state.objects.get(virtual_service)
        else {
            return Err(RuntimeError::NotFound(virtual_service.clone()));
        };
        let mut updated = current.clone();
        weir_api::route::edit_routes(&mut updated.spec, edit).map_err(|e| {
            RuntimeError::Io(std::io::Error::other(format!("{virtual_service}: {e}")))
        })?;
        self.runtime
            .write(self.state, &[Resource::VirtualService(updated)], &[])
            .await
            .map(|_| ())
    }

    fn call_webhook(
        &mut self,
        rollout: ObjectRef,
        hook: weir_api::rollout::Webhook,
        payload: Vec<u8>,
    ) {
        self.state.hook_calls.call(rollout, hook, payload);
    }

    fn delete_objects(&mut self, objects: &[ObjectRef]) -> Result<(), RuntimeError> {
        self.runtime.store.delete(objects)?;
        for o in objects {
            self.state.objects.remove(o);
            self.state.meta.remove(o);
            self.state.events.forget(o);
        }
        self.runtime.wake.notify_one();
        Ok(())
    }
}

impl Runtime {
    /// Creates a pod of `deployment` and records its events; `false` when
    /// it cannot (logged), so the deployment's other creations this pass
    /// are skipped.
    fn create_pod(
        &self,
        state: &mut State,
        deployment: &ObjectRef,
        template_hash: &str,
        now: Instant,
    ) -> bool {
        let pod = match self.new_pod(state, deployment, template_hash, now) {
            Ok(pod) => pod,
            Err(e) => {
                log(&format!("deployment {}: {e}", deployment.name));
                return false;
            }
        };
        let pod_ref = pod_object(&pod.key());
        let message = format!(
            "Successfully assigned {}/{} to weir",
            pod_ref.namespace, pod_ref.name
        );
        let config_error = pod.id.config_error.clone();
        state.pods.insert(pod.key(), pod);
        state.note(
            &pod_ref,
            EventType::Normal,
            "Scheduled",
            message,
            "default-scheduler",
        );
        scaled_event(state, deployment, template_hash, "up");
        if let Some(why) = config_error {
            state.note(
                &pod_ref,
                EventType::Warning,
                "Failed",
                format!("Error: {why}"),
                "kubelet",
            );
        }
        true
    }

    /// Writes `deployment`'s new replica count; whether it exists.
    async fn persist_scale(
        &self,
        state: &mut State,
        deployment: &ObjectRef,
        replicas: i32,
    ) -> bool {
        let Some(resource) = state.objects.with_replicas(deployment, replicas) else {
            return false;
        };
        if let Err(e) = self.write(state, &[resource], &[]).await {
            log(&format!(
                "cannot persist the new scale of {deployment}: {e}"
            ));
        }
        true
    }

    /// A new pod of `deployment` from its current template: name, IP,
    /// program resolved, token; recorded before its container starts.
    fn new_pod(
        &self,
        state: &mut State,
        deployment: &ObjectRef,
        template_hash: &str,
        now: Instant,
    ) -> Result<Pod, RuntimeError> {
        let Some(Resource::Deployment(d)) = state.objects.get(deployment) else {
            return Err(RuntimeError::NotFound(deployment.clone()));
        };
        let ns = &deployment.namespace;
        let name = format!("{}-{template_hash}-{}", deployment.name, random_suffix());
        let template = &d.spec.template;
        let container = template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .cloned()
            .unwrap_or_default();
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert("pod-template-hash".into(), template_hash.to_owned());
        let annotations = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        let grace = template
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        let ip = allocate_ip(&mut state.next_ip, &container);
        // A Rollout's revision runs the programs given for its workload.
        let programs_of = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(weir_api::rollout::WORKLOAD_ANNOTATION))
            .unwrap_or(&deployment.name);
        let mut images = state.programs_of(ns, programs_of);
        images.merge(self.config.images.clone());
        let log = self.log_file(ns, &name);
        let (ids, config_error) = match crate::run_as::run_as(
            template.spec.as_ref(),
            &container,
            crate::run_as::runtime_uid(),
        ) {
            Ok(ids) => (ids, None),
            Err(why) => (crate::run_as::RunAs::default(), Some(why)),
        };
        let mut launch = pods::launch_for(
            &container,
            &name,
            ns,
            ip,
            &images,
            &self.config.program_dirs,
            &log,
        )?;
        launch.user = ids.user;
        launch.group = ids.group;
        Ok(Pod::fresh(
            PodIdentity {
                name,
                namespace: ns.clone(),
                deployment: deployment.name.clone(),
                template_hash: template_hash.to_owned(),
                labels,
                annotations,
                ip,
                container,
                grace: Duration::from_secs(grace),
                launch,
                created: SystemTime::now(),
                token: crate::launch::new_token(),
                config_error,
            },
            now,
        ))
    }

    /// Starts a pod's container; a failure to start counts as a crash.
    fn start_container(&self, state: &mut State, key: &PodKey, now: Instant) {
        let Some(pod) = state.pods.get_mut(key) else {
            return;
        };
        pod.dirty = true;
        match Process::spawn(&pod.id.launch, self.supervision.as_ref(), &pod.id.token) {
            Ok(process) => {
                pod.process = Some(process);
                pod.phase = Phase::Running;
                pod.started = Some((now, SystemTime::now()));
                pod.backoff_until = None;
                state.next_generation += 1;
                pod.generation = state.next_generation;
                pod.prober = self.start_probes(pod);
                if pod.id.container.readiness_probe.is_none() {
                    pod.ready = true;
                    pod.ready_since = now;
                }
            }
            Err(e) => {
                log(&format!("pod {}: cannot start: {e}", pod.id.name));
                pod.restarts += 1;
                let (streak, delay) = crate::crashloop::after_exit(
                    pod.crash_streak,
                    Duration::ZERO,
                    self.config.restart_backoff,
                );
                pod.crash_streak = streak;
                pod.backoff_until = Some(now + delay);
            }
        }
    }

    pub(crate) fn start_probes(&self, pod: &Pod) -> Option<tokio::task::JoinHandle<()>> {
        let probes: Vec<(ProbeKind, weir_api::k8s_openapi::api::core::v1::Probe)> = [
            (ProbeKind::Liveness, pod.id.container.liveness_probe.clone()),
            (
                ProbeKind::Readiness,
                pod.id.container.readiness_probe.clone(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, p)| Some((k, p?)))
        .collect();
        if probes.is_empty() {
            return None;
        }
        let target = || ProbeTarget {
            pod: pod.key(),
            generation: pod.generation,
            ip: pod.id.ip,
            named_ports: pod.named_ports(),
            env: pod.id.launch.env.clone(),
        };
        let tasks: Vec<_> = probes
            .into_iter()
            .map(|(kind, p)| probe::run(kind, p, target(), self.probe_tx.clone()))
            .collect();
        Some(tokio::spawn(async move {
            let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
            let _guard = AbortOnDrop(handles);
            std::future::pending::<()>().await;
        }))
    }
}

/// The random part of a pod's name.
fn random_suffix() -> String {
    (0..5)
        .map(|_| NAME_ALPHABET[fastrand::usize(..NAME_ALPHABET.len())] as char)
        .collect()
}

/// Aborts the probe tasks when the container's prober is dropped or aborted.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// A pod's object reference.
fn pod_object(key: &PodKey) -> ObjectRef {
    ObjectRef {
        kind: weir_api::resource::Kind::Pod,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    }
}

/// The Deployment controller's event for a pod of `template_hash` created
/// or terminated: its replica set's new size.
fn scaled_event(state: &mut State, deployment: &ObjectRef, template_hash: &str, direction: &str) {
    let size = state
        .pods
        .values()
        .filter(|p| {
            p.id.namespace == deployment.namespace
                && p.id.deployment == deployment.name
                && p.id.template_hash == template_hash
                && p.phase != crate::pods::Phase::Terminating
        })
        .count();
    state.note(
        deployment,
        EventType::Normal,
        "ScalingReplicaSet",
        format!(
            "Scaled {direction} replica set {}-{template_hash} to {size}",
            deployment.name
        ),
        "deployment-controller",
    );
}

/// The HPA controller's event for a rescale of `deployment`, on each HPA
/// that targets it.
fn rescale_event(state: &mut State, deployment: &ObjectRef, replicas: i32) {
    let current = match state.objects.get(deployment) {
        Some(Resource::Deployment(d)) => d.spec.replicas.unwrap_or(1),
        _ => return,
    };
    let hpas: Vec<ObjectRef> = state
        .objects
        .iter()
        .filter(|r| r.namespace() == deployment.namespace)
        .filter(|r| match r {
            Resource::HpaV1(h) => h.spec.scale_target_ref.name == deployment.name,
            Resource::HpaV2(h) => h.spec.scale_target_ref.name == deployment.name,
            _ => false,
        })
        .map(|r| r.object_ref())
        .collect();
    let why = if replicas > current {
        "cpu resource utilization (percentage of request) above target"
    } else {
        "All metrics below target"
    };
    for hpa in hpas {
        state.note(
            &hpa,
            EventType::Normal,
            "SuccessfulRescale",
            format!("New size: {replicas}; reason: {why}"),
            "horizontal-pod-autoscaler",
        );
    }
}

/// A pod's termination begun, with its events.
fn terminate(state: &mut State, key: &PodKey, now: Instant) {
    let Some(pod) = state.pods.get_mut(key) else {
        return;
    };
    pod.begin_termination(now);
    let (container, deployment, hash) = (
        pod.id.container.name.clone(),
        ObjectRef {
            kind: Kind::Deployment,
            namespace: pod.id.namespace.clone(),
            name: pod.id.deployment.clone(),
        },
        pod.id.template_hash.clone(),
    );
    state.note(
        &pod_object(key),
        EventType::Normal,
        "Killing",
        format!("Stopping container {container}"),
        "kubelet",
    );
    scaled_event(state, &deployment, &hash, "down");
}

/// A container's exit recorded on its pod (restart count, back-off), with
/// the kubelet's BackOff event.
fn record_exit(
    state: &mut State,
    key: &PodKey,
    code: Option<i32>,
    crash_streak: u32,
    backoff_until: Instant,
    now: Instant,
) {
    if let Some(container) = state.pods.get(key).map(|p| p.id.container.name.clone()) {
        state.note(
            &pod_object(key),
            EventType::Warning,
            "BackOff",
            format!(
                "Back-off restarting failed container {container} in pod {}",
                key.name
            ),
            "kubelet",
        );
    }
    if let Some(pod) = state.pods.get_mut(key) {
        pod.last_exit = Some(code);
        pod.ready = false;
        pod.ready_since = now;
        pod.restarts += 1;
        pod.crash_streak = crash_streak;
        pod.backoff_until = Some(backoff_until);
        pod.dirty = true;
    }
}

/// The kubelet's Started event, once the container's process runs.
fn started_event(state: &mut State, key: &PodKey) {
    if let Some(container) = state
        .pods
        .get(key)
        .filter(|p| p.process.is_some())
        .map(|p| p.id.container.name.clone())
    {
        state.note(
            &pod_object(key),
            EventType::Normal,
            "Started",
            format!("Started container {container}"),
            "kubelet",
        );
    }
}
