//! The embedded cluster's loop: it gathers observations (exited
//! containers, probe results, CPU samples), calls the due controllers
//! ([`crate::controllers`]) one after another, and carries out their
//! actions: the only place pods are created, started, signalled or
//! dropped and the gateway is updated. The API side is [`crate::api`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustix::process::Signal;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::time::Instant;
use weir_api::diagnostic::Diagnostic;
use weir_api::images::ImageMap;
use weir_api::load::{Source, load_sources};
use weir_api::resource::{ObjectRef, Resource};
use weir_gateway::{Endpoint, Gateway, GatewayOptions, RouteInputs, ServiceKey};

use crate::controllers::deployment::{DeploymentController, NAME_ALPHABET};
use crate::controllers::endpoints::{self, EndpointsController};
use crate::controllers::hpa::HpaController;
use crate::controllers::kubelet::{self, Kubelet, ProbeVerdict};
use crate::controllers::{Action, Controller, Observed};
use crate::pod_log::LogLimits;
use crate::pods::{self, Phase, Pod, PodIdentity, PodKey, PodRecord};
use crate::probe::{self, ProbeEvent, ProbeKind, ProbeTarget};
use crate::process::{Process, Supervision};
use crate::state::{Objects, Published, State};
use crate::state_dir::{ClaimError, StateDir};
use crate::store::Store;

/// How the runtime runs.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// State dir: database, logs, admin socket.
    pub state_dir: PathBuf,
    /// The gateway's listeners and logging.
    pub gateway: GatewayOptions,
    /// HPA sync period (15 s by default).
    pub hpa_sync_period: Duration,
    /// Window CPU usage is averaged over.
    pub metrics_window: Duration,
    /// First restart backoff (10 s, doubling to 5 min, as the kubelet's).
    pub restart_backoff: Duration,
    /// The `weir` binary, to start pods through its parent-death shim.
    pub launcher: Option<PathBuf>,
    /// Directories searched for image programs before PATH.
    pub program_dirs: Vec<PathBuf>,
    /// `--image IMAGE=PROGRAM` entries (win over the manifests' map).
    pub images: ImageMap,
    /// Pod log rotation (10 MiB × 5 files, as the kubelet's defaults).
    pub log_limits: LogLimits,
    /// How long pods outlive a `weir up` that died without stopping them.
    pub orphan_grace: Duration,
}

impl RuntimeConfig {
    /// Defaults for a state dir.
    pub fn new(state_dir: PathBuf) -> Self {
        Self {
            state_dir,
            gateway: GatewayOptions::default(),
            hpa_sync_period: Duration::from_secs(15),
            metrics_window: Duration::from_secs(15),
            restart_backoff: Duration::from_secs(10),
            launcher: None,
            program_dirs: Vec::new(),
            images: ImageMap::default(),
            log_limits: LogLimits::default(),
            orphan_grace: Duration::from_secs(300),
        }
    }
}

/// Why the runtime could not do something.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Bad input: nothing changed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// No such object.
    #[error("{0} not found")]
    NotFound(ObjectRef),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The gateway refused the configuration.
    #[error(transparent)]
    Gateway(#[from] weir_gateway::GatewayError),
    /// Files or processes.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The state dir is another user's, unsafe, or in use.
    #[error(transparent)]
    StateDir(#[from] ClaimError),
    /// A pod's container cannot be launched.
    #[error(transparent)]
    Launch(#[from] pods::LaunchError),
}

/// A controller and when it runs next.
struct Scheduled {
    controller: Box<dyn Controller>,
    next_due: Instant,
}

/// The embedded cluster.
pub struct Runtime {
    pub(crate) config: RuntimeConfig,
    supervision: Option<Supervision>,
    _state_dir: StateDir,
    pub(crate) store: Store,
    gateway: Arc<Gateway>,
    pub(crate) state: Mutex<State>,
    controllers: Mutex<Vec<Scheduled>>,
    pub(crate) wake: Notify,
    probe_tx: mpsc::UnboundedSender<ProbeEvent>,
    probe_rx: Mutex<mpsc::UnboundedReceiver<ProbeEvent>>,
}

impl Runtime {
    /// Claims the state dir (private, locked), restores the stored objects,
    /// adopts the pods a previous run left running, and starts the gateway
    /// (already routing to the adopted pods). Call [`Runtime::run`] next.
    pub async fn start(config: RuntimeConfig) -> Result<Arc<Self>, RuntimeError> {
        let claimed = StateDir::claim(&config.state_dir)?;
        // Everything the runtime creates from here on is private to its user.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(config.state_dir.join("logs"))?;
        }
        let store = Store::open(&config.state_dir.join("state.db"))?;
        let gateway = Arc::new(Gateway::new(config.gateway.clone())?);
        let mut images = ImageMap::default();
        for (image, program) in store.images()? {
            images.insert(&image, &program);
        }
        let objects = restore_objects(&store)?;
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        let meta = store.object_meta()?.into_iter().collect();
        let supervision = config.launcher.clone().map(|launcher| Supervision {
            launcher,
            state_dir: config.state_dir.clone(),
            log_limits: config.log_limits,
            orphan_grace: config.orphan_grace,
        });
        let (pods, removed) = adopt_pods(&store, supervision.as_ref())?;
        let now = Instant::now();
        let controllers: Vec<Box<dyn Controller>> = vec![
            Box::new(HpaController::new(
                config.hpa_sync_period,
                config.metrics_window,
                crate::cpu::ticks_per_second(),
            )),
            Box::new(Kubelet {
                restart_backoff: config.restart_backoff,
            }),
            Box::new(DeploymentController),
            Box::new(EndpointsController),
        ];
        let controllers = controllers
            .into_iter()
            .map(|controller| Scheduled {
                next_due: now + controller.period().unwrap_or_default(),
                controller,
            })
            .collect();
        let runtime = Arc::new(Self {
            config,
            supervision,
            _state_dir: claimed,
            store,
            gateway,
            state: Mutex::new(State {
                objects,
                meta,
                removed,
                images,
                pods,
                next_ip: fastrand::u32(..POD_IP_SPACE),
                ..State::default()
            }),
            controllers: Mutex::new(controllers),
            wake: Notify::new(),
            probe_tx,
            probe_rx: Mutex::new(probe_rx),
        });
        {
            let mut state = runtime.state.lock().await;
            let state = &mut *state;
            for pod in state.pods.values_mut() {
                if pod.process.is_some() && pod.phase == Phase::Running {
                    state.next_generation += 1;
                    pod.generation = state.next_generation;
                    pod.prober = runtime.start_probes(pod);
                }
            }
            runtime.sync_gateway(state).await?;
            runtime.persist_pods(state);
        }
        Ok(runtime)
    }

    /// Writes the records of pods that changed, removes those of pods gone
    /// (and their logs), in one store transaction.
    fn persist_pods(&self, state: &mut State) {
        let upserts: Vec<(String, String, String)> = state
            .pods
            .iter_mut()
            .filter(|(_, p)| p.dirty)
            .map(|(key, pod)| {
                pod.dirty = false;
                let record = serde_json::to_string(&pod.record()).unwrap_or_default();
                (key.namespace.clone(), key.name.clone(), record)
            })
            .collect();
        let removals: Vec<(String, String)> = std::mem::take(&mut state.removed)
            .into_iter()
            .map(|k| (k.namespace, k.name))
            .collect();
        if upserts.is_empty() && removals.is_empty() {
            return;
        }
        if let Err(e) = self.store.sync_pods(&upserts, &removals) {
            log(&format!("cannot record pods: {e}"));
        }
        for (ns, name) in &removals {
            let log = self.log_file(ns, name);
            let exit = crate::process::exit_file_of(&log);
            for file in crate::pod_log::all_files(&log, self.config.log_limits)
                .into_iter()
                .chain([exit])
            {
                let _ = std::fs::remove_file(file);
            }
        }
    }

    /// Where a pod's log is written.
    pub(crate) fn log_file(&self, namespace: &str, pod: &str) -> PathBuf {
        self.config
            .state_dir
            .join("logs")
            .join(format!("{namespace}_{pod}.log"))
    }

    /// The gateway's listeners (Gateway port → address).
    pub async fn gateway_listeners(&self) -> BTreeMap<u16, std::net::SocketAddr> {
        self.gateway.listeners().await
    }

    /// The gateway's metrics text.
    pub fn gateway_metrics(&self) -> String {
        self.gateway.metrics()
    }

    /// Each running pod's CPU use in millicores over the metrics window,
    /// the figure the HPA controller uses (pods not yet measured are absent).
    pub async fn pod_cpu(&self, namespace: &str) -> BTreeMap<String, i64> {
        let state = self.state.lock().await;
        let tps = crate::cpu::ticks_per_second();
        state
            .cpu
            .pods()
            .filter(|key| key.namespace == namespace)
            .filter_map(|key| {
                let usage = state.cpu.usage(key, self.config.metrics_window, tps)?;
                Some((key.name.clone(), usage.millis))
            })
            .collect()
    }

    /// The gateway, e.g. to serve its metrics.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.clone()
    }

    /// The control loop; returns when `shutdown` resolves, after stopping every pod.
    pub async fn run(self: &Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cpu_tick = tokio::time::interval(Duration::from_secs(1));
        let mut probes = self.probe_rx.lock().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {}
                () = self.wake.notified() => {}
                Some(event) = probes.recv() => self.on_probe(event).await,
                _ = cpu_tick.tick() => self.sample_cpu().await,
            }
            self.pass().await;
        }
        self.stop_all().await;
    }

    /// One pass: every due controller in turn, each seeing what the ones
    /// before it did.
    async fn pass(&self) {
        let mut state = self.state.lock().await;
        let mut controllers = self.controllers.lock().await;
        let now = Instant::now();
        let exits = reap(&mut state);
        for scheduled in controllers.iter_mut() {
            if scheduled.next_due > now {
                continue;
            }
            if let Some(period) = scheduled.controller.period() {
                scheduled.next_due = now + period;
            }
            let actions = scheduled
                .controller
                .reconcile(&observe(&state, &exits, now));
            if let Err(e) = self.carry_out(&mut state, actions, now).await {
                log(&format!("{}: {e}", scheduled.controller.name()));
            }
            // Pods are recorded (with their tokens) before their processes start.
            self.persist_pods(&mut state);
        }
    }

    /// Does what a controller asked, in order; stops at the first failure
    /// (a pod is never signalled after a failed gateway update).
    async fn carry_out(
        &self,
        state: &mut State,
        actions: Vec<Action>,
        now: Instant,
    ) -> Result<(), RuntimeError> {
        let mut created = false;
        let mut cannot_create: HashSet<ObjectRef> = HashSet::new();
        for action in actions {
            match action {
                Action::CreatePod {
                    deployment,
                    template_hash,
                } => {
                    if cannot_create.contains(&deployment) {
                        continue;
                    }
                    match self.new_pod(state, &deployment, &template_hash, now) {
                        Ok(pod) => {
                            state.pods.insert(pod.key(), pod);
                            created = true;
                        }
                        Err(e) => {
                            log(&format!("deployment {}: {e}", deployment.name));
                            cannot_create.insert(deployment);
                        }
                    }
                }
                Action::Terminate(key) => {
                    if let Some(pod) = state.pods.get_mut(&key) {
                        pod.begin_termination(now);
                    }
                }
                Action::RecordExit {
                    pod,
                    code,
                    crash_streak,
                    backoff_until,
                } => {
                    if let Some(pod) = state.pods.get_mut(&pod) {
                        pod.last_exit = Some(code);
                        pod.ready = false;
                        pod.ready_since = now;
                        pod.restarts += 1;
                        pod.crash_streak = crash_streak;
                        pod.backoff_until = Some(backoff_until);
                        pod.dirty = true;
                    }
                }
                Action::Start(key) => self.start_container(state, &key, now),
                Action::Stop(key) => {
                    if let Some(pod) = state.pods.get_mut(&key)
                        && let Some(process) = &pod.process
                    {
                        process.signal(Signal::TERM);
                        pod.sigterm_sent = true;
                    }
                }
                Action::Kill(key) => {
                    if let Some(process) = state.pods.get(&key).and_then(|p| p.process.as_ref()) {
                        process.signal(Signal::KILL);
                    }
                }
                Action::Forget(key) => state.forget_pod(&key),
                Action::Publish(endpoints) => self.publish(state, endpoints).await?,
                Action::Scale {
                    deployment,
                    replicas,
                } => {
                    if let Some(resource) = state.objects.set_replicas(&deployment, replicas) {
                        let resource = resource.clone();
                        if let Err(e) = self.store_objects(&[resource], &[]) {
                            log(&format!(
                                "cannot persist the new scale of {deployment}: {e}"
                            ));
                        }
                    }
                }
                Action::SetHpaStatus(hpa, status) => {
                    state.hpa_status.insert(hpa, status);
                }
            }
        }
        if created {
            // The new pods' containers start on the next pass, after their records.
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Pushes routes and endpoints to the gateway.
    async fn publish(
        &self,
        state: &mut State,
        endpoints: HashMap<ServiceKey, Vec<Endpoint>>,
    ) -> Result<(), RuntimeError> {
        let routes = RouteInputs::from_resources(state.objects.iter());
        self.gateway.set_all(routes, endpoints.clone()).await?;
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
        let grace = template
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        let ip = allocate_ip(&mut state.next_ip, &container);
        let mut images = state.images.clone();
        images.merge(self.config.images.clone());
        let log = self.log_file(ns, &name);
        let launch = pods::launch_for(
            &container,
            &name,
            ns,
            ip,
            &images,
            &self.config.program_dirs,
            &log,
        )?;
        Ok(Pod::fresh(
            PodIdentity {
                name,
                namespace: ns.clone(),
                deployment: deployment.name.clone(),
                template_hash: template_hash.to_owned(),
                labels,
                ip,
                container,
                grace: Duration::from_secs(grace),
                launch,
                created: SystemTime::now(),
                token: crate::process::new_token(),
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
        match Process::spawn(&pod.launch, self.supervision.as_ref(), &pod.token) {
            Ok(process) => {
                pod.process = Some(process);
                pod.phase = Phase::Running;
                pod.started = Some((now, SystemTime::now()));
                pod.backoff_until = None;
                state.next_generation += 1;
                pod.generation = state.next_generation;
                pod.prober = self.start_probes(pod);
                if pod.container.readiness_probe.is_none() {
                    pod.ready = true;
                    pod.ready_since = now;
                }
            }
            Err(e) => {
                log(&format!("pod {}: cannot start: {e}", pod.name));
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

    fn start_probes(&self, pod: &Pod) -> Option<tokio::task::JoinHandle<()>> {
        let probes: Vec<(ProbeKind, weir_api::k8s_openapi::api::core::v1::Probe)> = [
            (ProbeKind::Liveness, pod.container.liveness_probe.clone()),
            (ProbeKind::Readiness, pod.container.readiness_probe.clone()),
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
            ip: pod.ip,
            named_ports: pod.named_ports(),
            env: pod.launch.env.clone(),
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

    async fn on_probe(&self, event: ProbeEvent) {
        let mut state = self.state.lock().await;
        let Some(pod) = state.pods.get_mut(&event.pod) else {
            return;
        };
        match kubelet::probe_verdict(pod, &event) {
            ProbeVerdict::Nothing => return,
            ProbeVerdict::Ready(ready) => {
                pod.ready = ready;
                pod.ready_since = Instant::now();
                pod.dirty = true;
            }
            ProbeVerdict::Kill => {
                // The container restarts with backoff once it has exited.
                if let Some(process) = &pod.process {
                    process.signal(Signal::KILL);
                }
                pod.ready = false;
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    async fn sample_cpu(&self) {
        let ticks = tokio::task::spawn_blocking(crate::cpu::ticks_by_process_group)
            .await
            .unwrap_or_default();
        let now = Instant::now();
        let keep = self.config.metrics_window * 2;
        let supervised = self.supervision.is_some();
        let mut state = self.state.lock().await;
        let state = &mut *state;
        for (key, pod) in &state.pods {
            if let Some(process) = &pod.process {
                let used = ticks
                    .get(&process.pid())
                    .map_or(0, |g| g.container(supervised));
                state.cpu.record(key, now, used, keep);
            }
        }
    }

    /// Stops every pod (out of the endpoints first, SIGTERM, SIGKILL after
    /// the grace period, 35 s at most) and the gateway.
    async fn stop_all(&self) {
        {
            let mut state = self.state.lock().await;
            let now = Instant::now();
            for pod in state.pods.values_mut() {
                pod.begin_termination(now);
            }
            let state = &mut *state;
            let endpoints = endpoints::ready_endpoints(&state.objects, &state.pods);
            let mut stopping = vec![Action::Publish(endpoints)];
            stopping.extend(state.pods.keys().cloned().map(Action::Stop));
            if let Err(e) = self.carry_out(state, stopping, now).await {
                log(&format!("stopping: {e}"));
            }
        }
        let mut kubelet = Kubelet {
            restart_backoff: self.config.restart_backoff,
        };
        let deadline = Instant::now() + Duration::from_secs(35);
        loop {
            {
                let mut state = self.state.lock().await;
                let now = Instant::now();
                let exits = reap(&mut state);
                let actions = kubelet.reconcile(&observe(&state, &exits, now));
                let _ = self.carry_out(&mut state, actions, now).await;
                if state.pods.is_empty() || now > deadline {
                    for pod in state.pods.values() {
                        if let Some(p) = &pod.process {
                            p.signal(Signal::KILL);
                        }
                    }
                    // Stopped: no record is left for a next run to adopt.
                    let left: Vec<PodKey> = state.pods.keys().cloned().collect();
                    state.removed.extend(left);
                    self.persist_pods(&mut state);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.gateway.shutdown().await;
    }
}

/// What the controllers see now.
fn observe<'a>(state: &'a State, exits: &'a [(PodKey, Option<i32>)], now: Instant) -> Observed<'a> {
    Observed {
        now,
        wall: SystemTime::now(),
        objects: &state.objects,
        meta: &state.meta,
        pods: &state.pods,
        exits,
        cpu: &state.cpu,
        hpa_status: &state.hpa_status,
        published: state.published.as_ref(),
    }
}

/// Collects the containers that exited (their processes reaped, their
/// probes stopped), for the kubelet to judge.
fn reap(state: &mut State) -> Vec<(PodKey, Option<i32>)> {
    let mut exits = Vec::new();
    for (key, pod) in state.pods.iter_mut() {
        let Some(code) = pod.process.as_mut().and_then(Process::try_exit) else {
            continue;
        };
        pod.process = None;
        if let Some(p) = pod.prober.take() {
            p.abort();
        }
        exits.push((key.clone(), code));
    }
    exits
}

/// The stored objects, typed again through the loader. Each is read as a
/// source of its own, so a problem names the object, not a place in the
/// database.
fn restore_objects(store: &Store) -> Result<Objects, RuntimeError> {
    let stored = store.objects()?;
    let mut objects = Objects::default();
    if stored.is_empty() {
        return Ok(objects);
    }
    let sources: Vec<Source> = stored
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (
                PathBuf::from(format!("stored-object-{i}")),
                o.manifest.clone(),
            )
        })
        .collect();
    let manifests = load_sources(&sources).map_err(|e| {
        let named = e
            .errors()
            .map(|d| {
                let object = sources
                    .iter()
                    .position(|(path, _)| path.as_path() == &*d.pos.file)
                    .map(|i| stored[i].object.to_string())
                    .unwrap_or_else(|| d.pos.file.display().to_string());
                Diagnostic {
                    pos: weir_api::diagnostic::file_pos(std::path::Path::new("state.db")),
                    object: Some(format!("stored {object}")),
                    message: format!("cannot be read back: {}", d.message),
                    ..d.clone()
                }
            })
            .collect();
        RuntimeError::Invalid(named)
    })?;
    for o in manifests.objects {
        objects.insert(o.resource);
    }
    Ok(objects)
}

/// Pods by key, and records to remove.
type AdoptedPods = (BTreeMap<PodKey, Pod>, Vec<PodKey>);

/// The pods a previous run recorded: each adopted if its supervisor still
/// runs (and is exactly the recorded process), else kept to be restarted.
/// Supervisors carrying a recorded token that could not be adopted are
/// killed. Records that cannot be read are returned for removal.
fn adopt_pods(
    store: &Store,
    supervision: Option<&Supervision>,
) -> Result<AdoptedPods, RuntimeError> {
    let now = Instant::now();
    let mut pods = BTreeMap::new();
    let mut unreadable = Vec::new();
    let mut tokens = HashSet::new();
    let mut adopted = HashSet::new();
    for (ns, name, text) in store.pods()? {
        let Ok(record) = serde_json::from_str::<PodRecord>(&text) else {
            unreadable.push(PodKey::new(ns, name));
            continue;
        };
        tokens.insert(record.token().to_owned());
        let process = match (record.process(), supervision) {
            (Some(p), Some(s)) => Process::adopt(
                p.pid,
                p.start_time,
                record.token(),
                &s.launcher,
                record.launch(),
            ),
            _ => None,
        };
        if let Some(p) = &process {
            adopted.insert(p.pid());
        }
        pods.insert(PodKey::new(ns, name), record.into_pod(process, now));
    }
    if !pods.is_empty() {
        log(&format!(
            "adopted {} of {} recorded pods",
            adopted.len(),
            pods.len()
        ));
    }
    if let Some(s) = supervision {
        let killed = crate::process::kill_unadopted(&tokens, &adopted, &s.launcher);
        if killed > 0 {
            log(&format!(
                "stopped {killed} pod processes of a previous run that could not be adopted"
            ));
        }
    }
    Ok((pods, unreadable))
}

/// Pod IPs come from 127.1.0.0–127.254.255.255 (never 127.0.0.0/16).
const POD_IP_SPACE: u32 = 254 << 16;

/// The next pod IP on which every port the container declares is free:
/// several runtimes (and other programs) share the loopback, so a
/// runtime starts at a random place and skips addresses in use.
fn allocate_ip(
    next: &mut u32,
    container: &weir_api::k8s_openapi::api::core::v1::Container,
) -> IpAddr {
    let ports: Vec<u16> = container
        .ports
        .iter()
        .flatten()
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    for _ in 0..1024 {
        *next = (*next + 1) % POD_IP_SPACE;
        let n = *next;
        let ip = IpAddr::V4(Ipv4Addr::new(
            127,
            1 + (n >> 16) as u8,
            (n >> 8) as u8,
            n as u8,
        ));
        if (n & 0xff) == 0 || (n & 0xff) == 0xff {
            continue;
        }
        if ports
            .iter()
            .all(|&p| std::net::TcpListener::bind((ip, p)).is_ok())
        {
            return ip;
        }
    }
    IpAddr::V4(Ipv4Addr::new(127, 1, 0, 2))
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

/// The runtime's own log lines, on stderr.
pub(crate) fn log(message: &str) {
    eprintln!("weir: {message}");
}

#[cfg(test)]
mod tests {
    use weir_api::resource::Kind;

    use super::*;
    use crate::store::StoredObject;

    fn stored(kind: Kind, name: &str, manifest: &str) -> StoredObject {
        StoredObject {
            object: ObjectRef {
                kind,
                namespace: "default".into(),
                name: name.into(),
            },
            manifest: manifest.into(),
        }
    }

    #[test]
    fn stored_objects_come_back_typed_and_an_unreadable_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let good = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"good"},"spec":{"ports":[{"port":80}]}}"#;
        store
            .apply(&[stored(Kind::Service, "good", good)], &[])
            .unwrap();
        let objects = restore_objects(&store).unwrap();
        assert_eq!(
            objects.iter().map(Resource::name).collect::<Vec<_>>(),
            ["good"]
        );

        let bad =
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad"},"spec":{"portz":[]}}"#;
        store
            .apply(&[stored(Kind::Service, "bad", bad)], &[])
            .unwrap();
        let Err(RuntimeError::Invalid(diagnostics)) = restore_objects(&store) else {
            panic!("an unknown field must not be restored");
        };
        let text = diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("stored service/bad"), "{text}");
        assert!(text.contains("portz"), "{text}");
        assert!(!text.contains("stored-object-"), "{text}");
    }
}
