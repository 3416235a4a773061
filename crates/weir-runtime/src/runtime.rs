//! The embedded cluster: desired state (persisted), pods as processes, the
//! Deployment controller (replicas, rolling update, restart backoff,
//! graceful termination), probes, Service endpoints pushed to the gateway,
//! CPU metrics and the HPA controller, all driven by one control loop.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustix::process::Signal;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::time::Instant;
use weir_api::backend::{ApplyOutcome, RouteChange, RuleSelector};
use weir_api::diagnostic::{Diagnostic, Severity};
use weir_api::images::ImageMap;
use weir_api::k8s_openapi::api::apps::v1::Deployment;
use weir_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_api::load::{Manifests, Source, load_sources, load_str};
use weir_api::path::FieldPath;
use weir_api::resource::{Kind, ObjectRef, Resource};
use weir_gateway::{Endpoint, Gateway, GatewayOptions, RouteInputs, ServiceKey};

use crate::hpa::{self, HpaHistory, HpaSpec, PodSample, Settings, Usage};
use crate::pod_log::LogLimits;
use crate::pods::{self, Phase, Pod, PodRecord};
use crate::probe::{self, ProbeEvent, ProbeKind, ProbeTarget};
use crate::process::{Process, Supervision};
use crate::state_dir::{ClaimError, StateDir};
use crate::store::{ObjectMeta, Store, StoredObject, Written};

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
}

struct HpaState {
    history: HpaHistory,
    status: serde_json::Value,
}

struct State {
    objects: BTreeMap<ObjectRef, Resource>,
    /// Each object's creation time and uid, as the store keeps them.
    meta: BTreeMap<ObjectRef, ObjectMeta>,
    /// Pods gone since their records were last synced to the store.
    removed: Vec<(String, String)>,
    images: ImageMap,
    pods: BTreeMap<(String, String), Pod>,
    hpas: HashMap<ObjectRef, HpaState>,
    cpu: HashMap<(String, String), VecDeque<(Instant, u64)>>,
    next_ip: u32,
    next_generation: u64,
    pushed: Option<(RouteInputsKey, HashMap<ServiceKey, Vec<Endpoint>>)>,
}

/// What was last pushed to the gateway (to push only on change).
type RouteInputsKey = String;

/// The embedded cluster.
pub struct Runtime {
    config: RuntimeConfig,
    supervision: Option<Supervision>,
    _state_dir: StateDir,
    store: Store,
    gateway: Arc<Gateway>,
    state: Mutex<State>,
    wake: Notify,
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
        let mut objects = BTreeMap::new();
        let stored = store.objects()?;
        if !stored.is_empty() {
            let text = stored
                .iter()
                .map(|o| o.manifest.as_str())
                .collect::<Vec<_>>()
                .join("\n---\n");
            let manifests = load_str(&config.state_dir.join("state.db"), &text)
                .map_err(|e| RuntimeError::Invalid(e.diagnostics))?;
            for o in manifests.objects {
                objects.insert(o.resource.object_ref(), o.resource);
            }
        }
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        let meta = store.object_meta()?.into_iter().collect();
        let supervision = config.launcher.clone().map(|launcher| Supervision {
            launcher,
            state_dir: config.state_dir.clone(),
            log_limits: config.log_limits,
            orphan_grace: config.orphan_grace,
        });
        let (pods, removed) = adopt_pods(&store, supervision.as_ref())?;
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
                hpas: HashMap::new(),
                cpu: HashMap::new(),
                next_ip: fastrand::u32(..POD_IP_SPACE),
                next_generation: 0,
                pushed: None,
            }),
            wake: Notify::new(),
            probe_tx,
            probe_rx: Mutex::new(probe_rx),
        });
        {
            let mut state = runtime.state.lock().await;
            let mut generation = state.next_generation;
            for (key, pod) in state.pods.iter_mut() {
                if pod.process.is_some() && pod.phase == Phase::Running {
                    generation += 1;
                    pod.generation = generation;
                    pod.prober = runtime.start_probes(key, pod);
                }
            }
            state.next_generation = generation;
            runtime.push_gateway(&mut state).await?;
            runtime.persist_pods(&mut state);
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
                (key.0.clone(), key.1.clone(), record)
            })
            .collect();
        let removals = std::mem::take(&mut state.removed);
        if upserts.is_empty() && removals.is_empty() {
            return;
        }
        if let Err(e) = self.store.sync_pods(&upserts, &removals) {
            tracing_like_log(&format!("cannot record pods: {e}"));
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
    fn log_file(&self, namespace: &str, pod: &str) -> PathBuf {
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
        state
            .cpu
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .filter_map(|key| Some((key.1.clone(), self.usage(&state, key)?.millis)))
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
        let mut hpa_tick = tokio::time::interval(self.config.hpa_sync_period);
        hpa_tick.tick().await;
        let mut probes = self.probe_rx.lock().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {}
                () = self.wake.notified() => {}
                Some(event) = probes.recv() => self.on_probe(event).await,
                _ = cpu_tick.tick() => self.sample_cpu().await,
                _ = hpa_tick.tick() => self.sync_hpas().await,
            }
            self.reconcile().await;
        }
        self.stop_all().await;
    }

    async fn reconcile(&self) {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        self.reap(&mut state, now);
        self.reconcile_deployments(&mut state);
        // Recorded (with their tokens) before their processes start, so a
        // crash in between leaves nothing the next run cannot find.
        self.persist_pods(&mut state);
        self.start_containers(&mut state, now);
        self.finish_terminations(&mut state, now);
        if let Err(e) = self.push_gateway(&mut state).await {
            tracing_like_log(&format!("gateway update failed: {e}"));
        }
        self.persist_pods(&mut state);
    }

    /// Exited containers: restart count, CrashLoopBackOff, or removal when terminating.
    fn reap(&self, state: &mut State, now: Instant) {
        let mut gone = Vec::new();
        for (key, pod) in state.pods.iter_mut() {
            let Some(process) = pod.process.as_mut() else {
                continue;
            };
            let Some(code) = process.try_exit() else {
                continue;
            };
            pod.process = None;
            if let Some(p) = pod.prober.take() {
                p.abort();
            }
            if pod.phase == Phase::Terminating {
                gone.push(key.clone());
                continue;
            }
            pod.last_exit = Some(code);
            pod.ready = false;
            pod.ready_since = now;
            pod.restarts += 1;
            let ran_for = pod
                .started
                .map_or(Duration::ZERO, |s| now.duration_since(s.0));
            let (streak, delay) = crate::crashloop::after_exit(
                pod.crash_streak,
                ran_for,
                self.config.restart_backoff,
            );
            pod.crash_streak = streak;
            pod.backoff_until = Some(now + delay);
            pod.dirty = true;
        }
        for key in gone {
            Self::forget_pod(state, key);
        }
    }

    /// A pod gone: out of memory now, its record and logs at the next sync.
    fn forget_pod(state: &mut State, key: (String, String)) {
        state.pods.remove(&key);
        state.cpu.remove(&key);
        state.removed.push(key);
    }

    fn start_containers(&self, state: &mut State, now: Instant) {
        let mut generation = state.next_generation;
        for (key, pod) in state.pods.iter_mut() {
            if pod.process.is_some() || pod.phase == Phase::Terminating {
                continue;
            }
            if pod.backoff_until.is_some_and(|t| t > now) {
                continue;
            }
            pod.dirty = true;
            match Process::spawn(&pod.launch, self.supervision.as_ref(), &pod.token) {
                Ok(process) => {
                    pod.process = Some(process);
                    pod.phase = Phase::Running;
                    pod.started = Some((now, SystemTime::now()));
                    pod.backoff_until = None;
                    generation += 1;
                    pod.generation = generation;
                    pod.prober = self.start_probes(key, pod);
                    if pod.container.readiness_probe.is_none() {
                        pod.ready = true;
                        pod.ready_since = now;
                    }
                }
                Err(e) => {
                    tracing_like_log(&format!("pod {}: cannot start: {e}", pod.name));
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
        state.next_generation = generation;
    }

    fn start_probes(
        &self,
        key: &(String, String),
        pod: &Pod,
    ) -> Option<tokio::task::JoinHandle<()>> {
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
        let tx = self.probe_tx.clone();
        let target = |key: &(String, String)| ProbeTarget {
            pod: key.clone(),
            generation: pod.generation,
            ip: pod.ip,
            named_ports: pod.named_ports(),
            env: pod.launch.env.clone(),
        };
        let tasks: Vec<_> = probes
            .into_iter()
            .map(|(kind, p)| probe::run(kind, p, target(key), tx.clone()))
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
        if pod.generation != event.generation || pod.phase != Phase::Running {
            return;
        }
        match event.kind {
            ProbeKind::Readiness => {
                if pod.ready != event.passing {
                    pod.ready = event.passing;
                    pod.ready_since = Instant::now();
                    pod.dirty = true;
                }
            }
            ProbeKind::Liveness if !event.passing => {
                // The kubelet kills the container; it restarts with backoff.
                if let Some(process) = &pod.process {
                    process.signal(Signal::KILL);
                }
                pod.ready = false;
            }
            ProbeKind::Liveness => {}
        }
        drop(state);
        self.wake.notify_one();
    }

    fn finish_terminations(&self, state: &mut State, now: Instant) {
        for pod in state.pods.values_mut() {
            if pod.phase != Phase::Terminating {
                continue;
            }
            let since = *pod.terminating_since.get_or_insert(now);
            if let Some(process) = &pod.process
                && now >= since + pod.grace
            {
                process.signal(Signal::KILL);
            }
        }
        let gone: Vec<(String, String)> = state
            .pods
            .iter()
            .filter(|(_, p)| p.phase == Phase::Terminating && p.process.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            Self::forget_pod(state, key);
        }
    }

    /// Starts graceful termination: out of the endpoints now (the gateway
    /// is updated before the signal goes out), SIGTERM, SIGKILL after the grace period.
    fn terminate(pod: &mut Pod, now: Instant) {
        if pod.phase == Phase::Terminating {
            return;
        }
        pod.phase = Phase::Terminating;
        pod.ready = false;
        pod.dirty = true;
        pod.terminating_since = Some(now);
        if let Some(p) = pod.prober.take() {
            p.abort();
        }
    }

    fn reconcile_deployments(&self, state: &mut State) {
        let deployments: Vec<(String, String, Deployment)> = state
            .objects
            .values()
            .filter_map(|r| match r {
                Resource::Deployment(d) => {
                    Some((r.namespace().to_owned(), r.name().to_owned(), (**d).clone()))
                }
                _ => None,
            })
            .collect();
        let now = Instant::now();
        // Pods whose Deployment is gone.
        for pod in state.pods.values_mut() {
            if !deployments
                .iter()
                .any(|(ns, name, _)| *ns == pod.namespace && *name == pod.deployment)
            {
                Self::terminate(pod, now);
            }
        }
        for (ns, name, d) in deployments {
            self.reconcile_deployment(state, &ns, &name, &d, now);
        }
    }

    fn reconcile_deployment(
        &self,
        state: &mut State,
        ns: &str,
        name: &str,
        d: &Deployment,
        now: Instant,
    ) {
        let desired = d.spec.replicas.unwrap_or(1).max(0) as usize;
        let hash = template_hash(&d.spec.template);
        let live: Vec<(String, String)> = state
            .pods
            .iter()
            .filter(|(_, p)| {
                p.namespace == ns && p.deployment == name && p.phase != Phase::Terminating
            })
            .map(|(k, _)| k.clone())
            .collect();
        let (new, old): (Vec<_>, Vec<_>) = live
            .into_iter()
            .partition(|k| state.pods[k].template_hash == hash);
        let strategy = d.spec.strategy.as_ref();
        let recreate = strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
        let resolve = |v: Option<&IntOrString>, round_up: bool| match v {
            None => (desired as f64 * 0.25).apply(round_up),
            Some(IntOrString::Int(n)) => (*n).max(0) as usize,
            Some(IntOrString::String(s)) => {
                let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(25.0);
                (desired as f64 * pct / 100.0).apply(round_up)
            }
        };
        let surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), true);
        let mut unavailable = resolve(rolling.and_then(|r| r.max_unavailable.as_ref()), false);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        let ready = |keys: &[(String, String)], state: &State| {
            keys.iter().filter(|k| state.pods[*k].ready).count()
        };

        let mut to_create = 0usize;
        let mut to_delete: Vec<(String, String)> = Vec::new();
        if old.is_empty() {
            if new.len() < desired {
                to_create = desired - new.len();
            } else if new.len() > desired {
                to_delete = pick_victims(&new, new.len() - desired, state);
            }
        } else if recreate {
            to_delete = old.clone();
        } else {
            let total = new.len() + old.len();
            let max_total = desired + surge;
            if new.len() < desired && total < max_total {
                to_create = (desired - new.len()).min(max_total - total);
            }
            let min_available = desired.saturating_sub(unavailable);
            let available = ready(&new, state) + ready(&old, state);
            // Unready old pods go first, freely; ready ones while availability allows.
            let mut budget = available.saturating_sub(min_available);
            let mut victims = pick_victims(&old, old.len(), state);
            victims.retain(|k| {
                if !state.pods[k].ready {
                    return true;
                }
                if budget > 0 {
                    budget -= 1;
                    return true;
                }
                false
            });
            // Never go below the desired count of pods in total before new ones exist.
            let keep_total = desired.saturating_sub(unavailable);
            let after = total - victims.len();
            if after < keep_total {
                victims.truncate(total.saturating_sub(keep_total));
            }
            to_delete = victims;
        }
        for key in to_delete {
            if let Some(pod) = state.pods.get_mut(&key) {
                Self::terminate(pod, now);
            }
        }
        if recreate
            && state
                .pods
                .values()
                .any(|p| p.namespace == ns && p.deployment == name && p.template_hash != hash)
        {
            return;
        }
        for _ in 0..to_create {
            match self.new_pod(state, ns, name, d, &hash) {
                Ok(pod) => {
                    state.pods.insert((ns.to_owned(), pod.name.clone()), pod);
                }
                Err(e) => {
                    tracing_like_log(&format!("deployment {name}: {e}"));
                    break;
                }
            }
        }
    }

    fn new_pod(
        &self,
        state: &mut State,
        ns: &str,
        deployment: &str,
        d: &Deployment,
        hash: &str,
    ) -> Result<Pod, pods::LaunchError> {
        let name = format!("{deployment}-{hash}-{}", random_suffix());
        let template = &d.spec.template;
        let container = template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .cloned()
            .unwrap_or_default();
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
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert("pod-template-hash".into(), hash.to_owned());
        let grace = template
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        Ok(Pod {
            name,
            namespace: ns.to_owned(),
            deployment: deployment.to_owned(),
            template_hash: hash.to_owned(),
            labels,
            ip,
            container,
            grace: Duration::from_secs(grace),
            launch,
            created: SystemTime::now(),
            phase: Phase::Pending,
            process: None,
            started: None,
            ready: false,
            ready_since: Instant::now(),
            restarts: 0,
            last_exit: None,
            backoff_until: None,
            terminating_since: None,
            sigterm_sent: false,
            prober: None,
            generation: 0,
            token: crate::process::new_token(),
            crash_streak: 0,
            dirty: true,
        })
    }

    /// Pushes routes and ready endpoints to the gateway when they changed,
    /// then signals pods that left the endpoints to stop.
    async fn push_gateway(&self, state: &mut State) -> Result<(), RuntimeError> {
        let routes = RouteInputs::from_resources(state.objects.values());
        let key = format!("{:?}", routes_fingerprint(&state.objects));
        let mut endpoints: HashMap<ServiceKey, Vec<Endpoint>> = HashMap::new();
        for r in state.objects.values() {
            let Resource::Service(s) = r else { continue };
            let Some(selector) = s.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            let members = state
                .pods
                .values()
                .filter(|p| {
                    p.namespace == r.namespace()
                        && p.ready
                        && p.phase == Phase::Running
                        && p.process.is_some()
                })
                .filter(|p| selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
                .map(|p| Endpoint {
                    ip: p.ip,
                    name: p.name.clone(),
                    workload: p.deployment.clone(),
                    labels: p.labels.clone(),
                    ports: p.named_ports(),
                })
                .collect();
            endpoints.insert((r.namespace().to_owned(), r.name().to_owned()), members);
        }
        let changed = state
            .pushed
            .as_ref()
            .is_none_or(|(k, e)| *k != key || *e != endpoints);
        if changed {
            self.gateway.set_all(routes, endpoints.clone()).await?;
            state.pushed = Some((key, endpoints));
        }
        // Only now, out of the endpoints, do terminating pods get SIGTERM.
        for pod in state.pods.values_mut() {
            if pod.phase == Phase::Terminating
                && !pod.sigterm_sent
                && let Some(process) = &pod.process
            {
                process.signal(Signal::TERM);
                pod.sigterm_sent = true;
            }
        }
        Ok(())
    }

    async fn sample_cpu(&self) {
        let ticks = tokio::task::spawn_blocking(crate::cpu::ticks_by_process_group)
            .await
            .unwrap_or_default();
        let now = Instant::now();
        let keep = self.config.metrics_window * 2;
        let mut state = self.state.lock().await;
        let pids: Vec<((String, String), u32)> = state
            .pods
            .iter()
            .filter_map(|(k, p)| Some((k.clone(), p.process.as_ref()?.pid())))
            .collect();
        for (key, pid) in pids {
            let samples = state.cpu.entry(key).or_default();
            let supervised = self.supervision.is_some();
            samples.push_back((now, ticks.get(&pid).map_or(0, |g| g.container(supervised))));
            while samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > keep)
            {
                samples.pop_front();
            }
        }
    }

    fn usage(&self, state: &State, key: &(String, String)) -> Option<Usage> {
        let samples = state.cpu.get(key)?;
        let (newest_t, newest) = *samples.back()?;
        let (oldest_t, oldest) = *samples
            .iter()
            .find(|(t, _)| newest_t.duration_since(*t) <= self.config.metrics_window)?;
        let span = newest_t.duration_since(oldest_t);
        if span < Duration::from_millis(900) {
            return None;
        }
        let tps = crate::cpu::ticks_per_second().max(1) as f64;
        let millis = newest.saturating_sub(oldest) as f64 / tps / span.as_secs_f64() * 1000.0;
        Some(Usage {
            millis: millis.round() as i64,
            timestamp: newest_t,
            window: span,
        })
    }

    async fn sync_hpas(&self) {
        let mut state = self.state.lock().await;
        let settings = Settings::default();
        let now = Instant::now();
        let hpas: Vec<(ObjectRef, HpaSpec, String)> = state
            .objects
            .values()
            .filter_map(|r| match r {
                Resource::HpaV1(h) => Some((
                    r.object_ref(),
                    HpaSpec::from_v1(h),
                    h.spec.scale_target_ref.name.clone(),
                )),
                Resource::HpaV2(h) => Some((
                    r.object_ref(),
                    HpaSpec::from_v2(h, &settings),
                    h.spec.scale_target_ref.name.clone(),
                )),
                _ => None,
            })
            .collect();
        for (hpa_ref, spec, target) in hpas {
            let deployment_ref = ObjectRef {
                kind: Kind::Deployment,
                namespace: hpa_ref.namespace.clone(),
                name: target.clone(),
            };
            let Some(Resource::Deployment(d)) = state.objects.get(&deployment_ref) else {
                continue;
            };
            let current = d.spec.replicas.unwrap_or(1);
            let samples: Vec<PodSample> = state
                .pods
                .iter()
                .filter(|(_, p)| p.namespace == hpa_ref.namespace && p.deployment == target)
                .map(|(k, p)| PodSample {
                    name: p.name.clone(),
                    pending: p.phase == Phase::Pending,
                    gone: p.phase == Phase::Terminating,
                    started: p.started.map(|s| s.0),
                    ready: p.started.map(|_| (p.ready, p.ready_since)),
                    request_millis: p.cpu_request(),
                    usage: self.usage(&state, k),
                })
                .collect();
            let hpa_state = state
                .hpas
                .entry(hpa_ref.clone())
                .or_insert_with(|| HpaState {
                    history: HpaHistory::first_seen(current, now),
                    status: serde_json::Value::Null,
                });
            let decision = hpa::reconcile(
                &spec,
                current,
                &samples,
                now,
                &mut hpa_state.history,
                &settings,
            );
            let previous_scale = hpa_state.status.get("lastScaleTime").cloned();
            hpa_state.status = serde_json::json!({
                "currentReplicas": current,
                "desiredReplicas": decision.desired,
                "currentCPUUtilizationPercentage": decision.utilization,
                "currentAverageMillis": decision.average_millis,
                "lastScaleTime": if decision.rescale { serde_json::json!(pods::humantime_rfc3339(SystemTime::now())) } else { previous_scale.unwrap_or(serde_json::Value::Null) },
                "conditions": decision.conditions.iter().map(|c| serde_json::json!({
                    "type": c.kind, "status": if c.status { "True" } else { "False" }, "reason": c.reason, "message": c.message,
                })).collect::<Vec<_>>(),
            });
            if decision.rescale
                && let Some(Resource::Deployment(d)) = state.objects.get_mut(&deployment_ref)
            {
                d.spec.replicas = Some(decision.desired);
                let manifest =
                    serde_json::to_string(&Resource::Deployment(d.clone())).unwrap_or_default();
                if let Err(e) = self.store.apply(
                    &[StoredObject {
                        object: deployment_ref.clone(),
                        manifest,
                    }],
                    &[],
                ) {
                    tracing_like_log(&format!(
                        "cannot persist the new scale of {deployment_ref}: {e}"
                    ));
                }
            }
        }
    }

    /// Applies loaded manifests, all or nothing.
    pub async fn apply(
        &self,
        sources: &[Source],
    ) -> Result<Vec<(ObjectRef, ApplyOutcome)>, RuntimeError> {
        let manifests = load_sources(sources).map_err(|e| RuntimeError::Invalid(e.diagnostics))?;
        let mut state = self.state.lock().await;
        self.check_runnable(&manifests, &state)?;
        let stored: Vec<StoredObject> = manifests
            .objects
            .iter()
            .map(|o| StoredObject {
                object: o.resource.object_ref(),
                manifest: serde_json::to_string(&o.resource).unwrap_or_default(),
            })
            .collect();
        let images: Vec<(String, String)> = manifests
            .images
            .entries()
            .iter()
            .map(|e| (e.image.clone(), e.program.clone()))
            .collect();
        // The gateway must accept the new routes (and bind any new Gateway
        // port) before anything is stored; if it cannot, nothing changes.
        let previous = state.objects.clone();
        for o in &manifests.objects {
            state
                .objects
                .insert(o.resource.object_ref(), o.resource.clone());
        }
        if let Err(e) = self.push_gateway(&mut state).await {
            state.objects = previous;
            let _ = self.push_gateway(&mut state).await;
            return Err(e);
        }
        let written = match self.store.apply(&stored, &images) {
            Ok(w) => w,
            Err(e) => {
                state.objects = previous;
                let _ = self.push_gateway(&mut state).await;
                return Err(e.into());
            }
        };
        match self.store.object_meta() {
            Ok(meta) => state.meta = meta.into_iter().collect(),
            Err(e) => tracing_like_log(&format!("cannot read object metadata: {e}")),
        }
        state.images.merge(manifests.images);
        drop(state);
        self.wake.notify_one();
        Ok(stored
            .into_iter()
            .zip(written)
            .map(|(s, w)| {
                let outcome = match w {
                    Written::Created => ApplyOutcome::Created,
                    Written::Configured => ApplyOutcome::Configured,
                    Written::Unchanged => ApplyOutcome::Unchanged,
                };
                (s.object, outcome)
            })
            .collect())
    }

    /// Every Deployment's container must have a program: an error naming
    /// the file, line and field otherwise.
    fn check_runnable(&self, manifests: &Manifests, state: &State) -> Result<(), RuntimeError> {
        let mut images = state.images.clone();
        images.merge(manifests.images.clone());
        images.merge(self.config.images.clone());
        let mut errors = Vec::new();
        for o in &manifests.objects {
            let Resource::Deployment(d) = &o.resource else {
                continue;
            };
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
                let probe = pods::launch_for(
                    c,
                    "probe",
                    "default",
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    &images,
                    &self.config.program_dirs,
                    &PathBuf::from("/dev/null"),
                );
                if let Err(e) = probe {
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
            state.objects.remove(o);
            state.hpas.remove(o);
            state.meta.remove(o);
        }
        drop(state);
        self.wake.notify_one();
        Ok(objects.iter().cloned().zip(existed).collect())
    }

    /// Objects of a kind in a namespace, in Kubernetes' JSON shape with status.
    pub async fn list(&self, kind: Kind, namespace: &str) -> Vec<serde_json::Value> {
        let state = self.state.lock().await;
        if kind == Kind::Pod {
            return state
                .pods
                .values()
                .filter(|p| p.namespace == namespace)
                .map(Pod::to_json)
                .collect();
        }
        state
            .objects
            .values()
            .filter(|r| r.kind() == kind && r.namespace() == namespace)
            .map(|r| self.object_json(&state, r))
            .collect()
    }

    fn object_json(&self, state: &State, r: &Resource) -> serde_json::Value {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        let meta = state.meta.get(&r.object_ref());
        let created = meta.map_or_else(SystemTime::now, |m| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(m.created.max(0) as u64)
        });
        v["metadata"]["creationTimestamp"] = serde_json::json!(pods::humantime_rfc3339(created));
        if let Some(m) = meta {
            v["metadata"]["uid"] = serde_json::json!(m.uid);
        }
        match r {
            Resource::Deployment(d) => {
                let pods: Vec<&Pod> = state
                    .pods
                    .values()
                    .filter(|p| {
                        p.namespace == r.namespace()
                            && p.deployment == r.name()
                            && p.phase != Phase::Terminating
                    })
                    .collect();
                let hash = template_hash(&d.spec.template);
                let ready = pods.iter().filter(|p| p.ready).count();
                v["status"] = serde_json::json!({
                    "replicas": pods.len(),
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "updatedReplicas": pods.iter().filter(|p| p.template_hash == hash).count(),
                });
            }
            Resource::HpaV1(_) | Resource::HpaV2(_) => {
                if let Some(h) = state.hpas.get(&r.object_ref()) {
                    v["status"] = h.status.clone();
                }
            }
            _ => {}
        }
        v
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
        let Some(Resource::VirtualService(current)) = state.objects.get(vs) else {
            return Err(RuntimeError::NotFound(vs.clone()));
        };
        let mut updated = current.clone();
        let invalid = |message: String| {
            RuntimeError::Invalid(vec![Diagnostic {
                severity: Severity::Error,
                pos: weir_api::diagnostic::file_pos(std::path::Path::new(&vs.to_string())),
                object: Some(vs.to_string()),
                field: FieldPath::parse("spec.http"),
                message,
                embedded_only: false,
            }])
        };
        let change = weir_api::route::reweigh(&mut updated.spec, rule, weights).map_err(invalid)?;
        let resource = Resource::VirtualService(updated);
        let manifest = serde_json::to_string(&resource).unwrap_or_default();
        self.store.apply(
            &[StoredObject {
                object: vs.clone(),
                manifest,
            }],
            &[],
        )?;
        state.objects.insert(vs.clone(), resource);
        self.push_gateway(&mut state).await?;
        Ok(RouteChange {
            rule_index: change.rule_index,
            before: change.before,
            after: change.after,
            confirmed_by:
                "gateway snapshot swapped: every request from now on uses the new weights".into(),
            elapsed: started.elapsed(),
        })
    }

    /// The log file of a pod.
    pub async fn log_path(&self, namespace: &str, pod: &str) -> Option<PathBuf> {
        let path = self.log_file(namespace, pod);
        path.exists().then_some(path)
    }

    async fn stop_all(&self) {
        {
            let mut state = self.state.lock().await;
            let now = Instant::now();
            for pod in state.pods.values_mut() {
                Self::terminate(pod, now);
            }
            let _ = self.push_gateway(&mut state).await;
        }
        let deadline = Instant::now() + Duration::from_secs(35);
        loop {
            {
                let mut state = self.state.lock().await;
                let now = Instant::now();
                self.reap(&mut state, now);
                self.finish_terminations(&mut state, now);
                if state.pods.is_empty() || now > deadline {
                    for pod in state.pods.values() {
                        if let Some(p) = &pod.process {
                            p.signal(Signal::KILL);
                        }
                    }
                    // Stopped: no record is left for a next run to adopt.
                    let left: Vec<(String, String)> = state.pods.keys().cloned().collect();
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

/// Pods by (namespace, name), and records to remove.
type AdoptedPods = (BTreeMap<(String, String), Pod>, Vec<(String, String)>);

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
            unreadable.push((ns, name));
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
        pods.insert((ns, name), record.into_pod(process, now));
    }
    if !pods.is_empty() {
        tracing_like_log(&format!(
            "adopted {} of {} recorded pods",
            adopted.len(),
            pods.len()
        ));
    }
    if let Some(s) = supervision {
        let killed = crate::process::kill_unadopted(&tokens, &adopted, &s.launcher);
        if killed > 0 {
            tracing_like_log(&format!(
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

/// Scale-down victims: unready before ready, newest first (Kubernetes' order).
fn pick_victims(keys: &[(String, String)], n: usize, state: &State) -> Vec<(String, String)> {
    let mut sorted: Vec<(String, String)> = keys.to_vec();
    sorted.sort_by(|a, b| {
        let (pa, pb) = (&state.pods[a], &state.pods[b]);
        pa.ready.cmp(&pb.ready).then(pb.created.cmp(&pa.created))
    });
    sorted.truncate(n);
    sorted
}

/// Rounding for maxSurge (up) and maxUnavailable (down).
trait Round {
    fn apply(self, up: bool) -> usize;
}

impl Round for f64 {
    fn apply(self, up: bool) -> usize {
        (if up { self.ceil() } else { self.floor() }).max(0.0) as usize
    }
}

/// `pod-template-hash`: a short stable hash of the pod template, in the
/// alphabet Kubernetes uses for generated names.
pub fn template_hash(template: &weir_api::k8s_openapi::api::core::v1::PodTemplateSpec) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = DefaultHasher::new();
    serde_json::to_string(template)
        .unwrap_or_default()
        .hash(&mut h);
    let mut n = h.finish();
    (0..10)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// What decides the gateway's routes (object kinds it reads, with content).
fn routes_fingerprint(objects: &BTreeMap<ObjectRef, Resource>) -> Vec<String> {
    objects
        .values()
        .filter(|r| {
            matches!(
                r.kind(),
                Kind::Gateway | Kind::VirtualService | Kind::DestinationRule | Kind::Service
            )
        })
        .map(|r| serde_json::to_string(r).unwrap_or_default())
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
fn tracing_like_log(message: &str) {
    eprintln!("weir: {message}");
}
