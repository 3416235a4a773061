//! The embedded cluster's loop: it gathers observations (exited
//! containers, probe results, CPU samples), calls the due controllers
//! ([`crate::controllers`]) one after another, and carries out their
//! actions: the only place pods are created, started, signalled or
//! dropped and the gateway is updated. The API side is [`crate::api`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustix::process::Signal;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::time::Instant;
use weir_api::images::ImageMap;
use weir_gateway::{Gateway, GatewayOptions};

use crate::controllers;
use crate::controllers::contract::{Effect, Host, Turn};
use crate::controllers::endpoints;
use crate::controllers::kubelet::{self, Kubelet, ProbeVerdict};
use crate::error::RuntimeError;
use crate::launch::Supervision;
use crate::log;
use crate::pod_ip::POD_IP_SPACE;
use crate::pod_log::LogLimits;
use crate::pods::{Phase, PodKey};
use crate::probe::ProbeEvent;
use crate::process::Process;
use crate::restore::{
    adopt_pods, restore_objects, restore_pending_commands, restore_rollout_statuses,
};
use crate::state::State;
use crate::state_dir::StateDir;
use crate::store::Store;

/// A runtime holds a socket for every Service port, gateway listener and
/// proxied connection, and pipes per pod: its soft limit on open files is
/// raised to the hard one, as Envoy and HAProxy raise theirs (a 1,024
/// default runs out at a thousand Services). Pods inherit it.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                ..limit
            },
        );
    }
}

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
            gateway: GatewayOptions {
                node_ip: Some(crate::pod_ip::node_ip(&state_dir)),
                ..GatewayOptions::default()
            },
            state_dir,
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

/// The runtime's effects over its state at one time; the controllers'
/// actions are carried out through them (`actions.rs` implements
/// [`crate::controllers::contract::Effects`] for it).
pub struct Executor<'a> {
    pub(crate) runtime: &'a Runtime,
    pub(crate) state: &'a mut State,
    pub(crate) now: Instant,
}

impl Host for Runtime {
    type Effects<'e> = Executor<'e>;

    fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    fn effects<'e>(&'e self, state: &'e mut State, now: Instant) -> Executor<'e> {
        Executor {
            runtime: self,
            state,
            now,
        }
    }
}

/// A controller and when it runs next.
struct Scheduled {
    controller: Box<dyn Turn<Runtime>>,
    next_due: Instant,
}

/// The embedded cluster.
pub struct Runtime {
    pub(crate) config: RuntimeConfig,
    pub(crate) supervision: Option<Supervision>,
    _state_dir: StateDir,
    pub(crate) store: Store,
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) state: Mutex<State>,
    controllers: Mutex<Vec<Scheduled>>,
    pub(crate) wake: Notify,
    pub(crate) probe_tx: mpsc::UnboundedSender<ProbeEvent>,
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
        raise_open_files_limit();
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(config.state_dir.join("logs"))?;
        }
        let store = Store::open(&config.state_dir.join("state.db"))?;
        let gateway = Arc::new(Gateway::new(config.gateway.clone())?);
        let mut legacy_images = ImageMap::default();
        for (image, program) in store.images()? {
            legacy_images.insert(&image, &program);
        }
        let mut programs: BTreeMap<(String, String), ImageMap> = BTreeMap::new();
        for [namespace, name, image, program] in store.deployment_images()? {
            programs
                .entry((namespace, name))
                .or_default()
                .insert(&image, &program);
        }
        let objects = restore_objects(&store)?;
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        let meta = store.object_meta()?.into_iter().collect();
        // Listeners first, from what was stored: a client that connects
        // while the pods are adopted waits in the backlog, not refused.
        gateway
            .bind_ahead(&crate::write::route_inputs(&objects, &meta))
            .await;
        let supervision = config.launcher.clone().map(|launcher| Supervision {
            launcher,
            state_dir: config.state_dir.clone(),
            log_limits: config.log_limits,
            orphan_grace: config.orphan_grace,
        });
        let (pods, removed) = adopt_pods(&store, supervision.as_ref())?;
        let (rollout_status, rollout_status_unreadable) = restore_rollout_statuses(&store)?;
        let rollout_commands = restore_pending_commands(&store)?;
        let now = Instant::now();
        let controllers = controllers::all(&controllers::Settings {
            hpa_sync_period: config.hpa_sync_period,
            metrics_window: config.metrics_window,
            restart_backoff: config.restart_backoff,
            ticks_per_second: crate::cpu::ticks_per_second(),
        });
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
                programs,
                legacy_images,
                pods,
                next_ip: fastrand::u32(..POD_IP_SPACE),
                rollout_status,
                rollout_status_unreadable,
                rollout_commands,
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
            let exit = crate::launch::exit_file_of(&log);
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
            let name = scheduled.controller.name();
            if let Err(e) = scheduled
                .controller
                .turn(self, &mut state, &exits, now)
                .await
            {
                log(&format!("{name}: {e}"));
            }
            // Pods are recorded (with their tokens) before their processes start.
            self.persist_pods(&mut state);
        }
        self.publish_pod_targets(&mut state);
    }

    /// Rewrites the pods' Prometheus target list when it changed.
    fn publish_pod_targets(&self, state: &mut State) {
        let groups = crate::discovery::pod_targets(state.pods.values());
        if state.pod_targets.as_ref() == Some(&groups) {
            return;
        }
        match crate::discovery::write(&self.config.state_dir, crate::discovery::PODS_FILE, &groups)
        {
            Ok(()) => state.pod_targets = Some(groups),
            Err(e) => log(&format!("cannot write the Prometheus target list: {e}")),
        }
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
            for (_, (_, task)) in state.traffic.drain() {
                task.abort();
            }
            let now = Instant::now();
            for pod in state.pods.values_mut() {
                pod.begin_termination(now);
            }
            let state = &mut *state;
            let endpoints = endpoints::ready_endpoints(&state.objects, &state.pods);
            let mut stopping = vec![endpoints::Action::Publish(endpoints)];
            stopping.extend(state.pods.keys().cloned().map(endpoints::Action::Stop));
            if let Err(e) = Effect::carry_out(stopping, &mut self.effects(state, now)).await {
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
                let _ = Turn::<Runtime>::turn(&mut kubelet, self, &mut state, &exits, now).await;
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
        // Nothing runs any more: nothing for Prometheus to scrape.
        if let Err(e) =
            crate::discovery::write(&self.config.state_dir, crate::discovery::PODS_FILE, &[])
        {
            log(&format!("cannot write the Prometheus target list: {e}"));
        }
        self.gateway.shutdown().await;
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
