//! weir's gateway: Istio's Gateway, VirtualService and DestinationRule
//! semantics, served by a Rust data plane (hyper + tokio).
//!
//! [`Gateway`] listens on the Gateways' ports and routes by the compiled
//! configuration; [`Gateway::set_routes`] and [`Gateway::set_endpoints`]
//! replace configuration and endpoints at any time, by atomic snapshot swap:
//! a request in flight finishes on the snapshot it started with, and every
//! request after the call returns sees the new one.

pub mod access_log;
pub mod balance;
pub mod canary;
pub mod compile;
pub mod conn_guard;
pub mod decode;
pub mod drain;
pub mod endpoint;
pub mod exchange;
pub mod head_timer;
mod head_wait;
pub mod headers;
pub mod matcher;
pub mod metrics;
pub mod metrics_server;
pub mod proxy;
pub mod report;
pub mod retry;
pub mod server;
pub mod service_caps;
pub mod service_proxy;
pub mod shared;
pub mod snapshot;
pub mod split;
pub mod static_endpoints;
pub mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

pub use access_log::AccessLogTarget;
pub use compile::ConfigError;
pub use server::ConnectionLimits;
pub use snapshot::{Endpoint, Entry, RouteInputs, ServiceKey};

/// Parses `GATEWAY_PORT=LOCAL_PORT` (`--port-map 80=8080`).
pub fn parse_port_map(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected GATEWAY_PORT=LOCAL_PORT"))?;
    let port = |p: &str| p.parse::<u16>().map_err(|e| format!("{s:?}: {e}"));
    Ok((port(a)?, port(b)?))
}

/// How the gateway listens and logs.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// The address listeners bind (127.0.0.1 by default).
    pub bind: IpAddr,
    /// Gateway port → local port (80 → 8080 by default); port 0 picks a free one.
    pub port_map: BTreeMap<u16, u16>,
    /// Header timeout and size limit.
    pub limits: ConnectionLimits,
    /// Where access-log lines go; `None` for none.
    pub access_log: Option<AccessLogTarget>,
    /// `source_workload` in metrics.
    pub workload: String,
    /// Upstream connect timeout (Istio's default 10 s).
    pub connect_timeout: Duration,
    /// How long a request of an Ingress waits for its response head
    /// (ingress-nginx's `proxy-read-timeout`, 60 s; then 504 `UT`).
    pub ingress_read_timeout: Duration,
    /// How long a body-less request on a route without a timeout waits for
    /// its response head (Envoy's stream idle timeout, 5 min; then 504 `SI`).
    pub stream_idle_timeout: Duration,
    /// The node address `NodePort` and `LoadBalancer` Services listen on
    /// (kube-proxy's part, [`service_proxy`]); `None`: no Service listeners
    /// (the standalone gateway is only Istio's gateway).
    pub node_ip: Option<IpAddr>,
    /// The port the ingress controller listens on at `node_ip`, once an
    /// Ingress exists (ingress-nginx's port 80 needs privileges here).
    pub ingress_port: u16,
    /// How many connections the Service listeners may hold; `None`: from
    /// the open-files limit ([`service_caps::ConnectionCaps::of_this_process`]).
    pub service_caps: Option<service_caps::ConnectionCaps>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_map: BTreeMap::from([(80, 8080)]),
            limits: ConnectionLimits::default(),
            access_log: None,
            workload: "istio-ingressgateway".to_owned(),
            connect_timeout: Duration::from_secs(10),
            ingress_read_timeout: Duration::from_secs(60),
            stream_idle_timeout: upstream::STREAM_IDLE_TIMEOUT,
            node_ip: None,
            ingress_port: 8080,
            service_caps: None,
        }
    }
}

/// Why the gateway could not apply a change; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration did not compile.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} (Gateway port {port}): {source}")]
    Bind {
        /// Gateway port.
        port: u16,
        /// Local address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The ingress controller could not bind.
    #[error("cannot listen on {addr} (the ingress controller): {source}")]
    IngressBind {
        /// Local address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The access log could not be opened.
    #[error("cannot open the access log: {0}")]
    AccessLog(#[source] std::io::Error),
}

struct RunningListener {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Stops the running listeners `wanted` says no to; open connections
/// finish their requests.
fn stop_unwanted<K: Ord>(running: &mut BTreeMap<K, RunningListener>, wanted: impl Fn(&K) -> bool) {
    running.retain(|key, listener| {
        let keep = wanted(key);
        if !keep {
            let _ = listener.stop.send(true);
        }
        keep
    });
}

struct Control {
    compiler: compile::Compiler,
    inputs: RouteInputs,
    endpoints: HashMap<ServiceKey, Vec<Endpoint>>,
    listeners: BTreeMap<Entry, RunningListener>,
    node_ports: Vec<service_proxy::NodePort>,
    cluster_ips: BTreeMap<ServiceKey, IpAddr>,
    service_listeners: BTreeMap<SocketAddr, RunningListener>,
    /// Service addresses not served where they should be: mapped, or not
    /// served at all (and why).
    service_bindings: BTreeMap<SocketAddr, service_proxy::Binding>,
    /// Listeners bound by [`Gateway::bind_ahead`], not served yet: the
    /// next configuration serves them instead of binding again.
    ahead: Ahead,
}

/// Listeners bound ahead of the configuration that serves them.
#[derive(Default)]
struct Ahead {
    entries: BTreeMap<Entry, TcpListener>,
    services: HashMap<SocketAddr, ServiceBind>,
}

/// Node ports, cluster IPs and Service listeners, as [`Gateway::service_plan`] makes them.
type ServicePlan = (
    Vec<service_proxy::NodePort>,
    BTreeMap<ServiceKey, IpAddr>,
    Vec<service_proxy::ServiceListener>,
);

/// What binding a Service address gave.
type ServiceBind = (Option<TcpListener>, Option<service_proxy::Binding>);

/// Binds a Service address, or its mapped port when a privileged one is
/// refused: the listener (if any) and how the address is served when not
/// at itself.
async fn bind_service(addr: SocketAddr) -> ServiceBind {
    match TcpListener::bind(addr).await {
        Ok(l) => (Some(l), None),
        Err(e) => {
            let mapped = match service_proxy::fallback(addr, e.kind()) {
                Some(other) => TcpListener::bind(other).await.ok(),
                None => None,
            };
            match mapped.and_then(|l| Some((l.local_addr().ok()?, l))) {
                Some((other, l)) => (Some(l), Some(service_proxy::Binding::Mapped(other))),
                None => (None, Some(service_proxy::Binding::Unbound(e.to_string()))),
            }
        }
    }
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<shared::Shared>,
    /// How many connections the Service listeners may hold.
    service_caps: service_caps::ConnectionCaps,
    /// The connections they hold, and those refused at a cap.
    service_counts: service_caps::SharedCounts,
    service_backends: Arc<service_proxy::BackendTable>,
    options: GatewayOptions,
    control: Mutex<Control>,
}

impl Gateway {
    /// A gateway with no routes and no listeners yet.
    pub fn new(options: GatewayOptions) -> Result<Self, GatewayError> {
        let access_log = options
            .access_log
            .clone()
            .map(access_log::AccessLog::start)
            .transpose()
            .map_err(GatewayError::AccessLog)?;
        let metrics = metrics::Metrics::default();
        let service_counts = service_caps::SharedCounts {
            open: Arc::default(),
            refused: metrics.service_refused.clone(),
        };
        Ok(Self {
            service_caps: options
                .service_caps
                .unwrap_or_else(service_caps::ConnectionCaps::of_this_process),
            service_counts,
            shared: Arc::new(shared::Shared {
                snapshot: ArcSwap::from_pointee(snapshot::Snapshot::default()),
                upstream: upstream::UpstreamSettings {
                    connect_timeout: options.connect_timeout,
                    ingress_read_timeout: options.ingress_read_timeout,
                    stream_idle_timeout: options.stream_idle_timeout,
                    ..upstream::UpstreamSettings::default()
                },
                metrics,
                access_log,
                workload: options.workload.clone(),
            }),
            service_backends: Arc::default(),
            options,
            control: Mutex::new(Control {
                compiler: compile::Compiler::default(),
                inputs: RouteInputs::default(),
                endpoints: HashMap::new(),
                listeners: BTreeMap::new(),
                node_ports: Vec::new(),
                cluster_ips: BTreeMap::new(),
                service_listeners: BTreeMap::new(),
                service_bindings: BTreeMap::new(),
                ahead: Ahead::default(),
            }),
        })
    }

    /// Binds, without serving yet, every listener `inputs` would have: a
    /// restarting runtime calls it before the slow part of its start, so a
    /// client connecting meanwhile waits in the listen backlog instead of
    /// being refused. The next [`Gateway::set_all`] or
    /// [`Gateway::set_routes`] serves them (those it does not want are
    /// closed). An address that cannot be bound now is left to that call,
    /// which reports it.
    pub async fn bind_ahead(&self, inputs: &RouteInputs) {
        let mut control = self.control.lock().await;
        for entry in self.wanted_entries(inputs) {
            if control.listeners.contains_key(&entry) || control.ahead.entries.contains_key(&entry)
            {
                continue;
            }
            if let Ok(l) = TcpListener::bind(self.address_of(entry)).await {
                control.ahead.entries.insert(entry, l);
            }
        }
        let Ok((_, _, wanted)) = self.service_plan(inputs) else {
            return;
        };
        let running: std::collections::HashSet<SocketAddr> =
            control.service_listeners.keys().copied().collect();
        for addr in service_proxy::to_bind(&wanted, &running) {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                control.ahead.services.entry(addr)
            {
                slot.insert(bind_service(addr).await);
            }
        }
    }

    /// Replaces the routing configuration. Listeners for new Gateway ports
    /// are bound first; if any step fails, nothing changes.
    pub async fn set_routes(&self, inputs: RouteInputs) -> Result<(), GatewayError> {
        let mut control = self.control.lock().await;
        let endpoints = control.endpoints.clone();
        self.apply(&mut control, inputs, endpoints).await
    }

    /// Replaces routes and every Service's endpoints in one swap.
    pub async fn set_all(
        &self,
        inputs: RouteInputs,
        endpoints: HashMap<ServiceKey, Vec<Endpoint>>,
    ) -> Result<(), GatewayError> {
        let mut control = self.control.lock().await;
        self.apply(&mut control, inputs, endpoints).await
    }

    async fn apply(
        &self,
        control: &mut Control,
        inputs: RouteInputs,
        endpoints: HashMap<ServiceKey, Vec<Endpoint>>,
    ) -> Result<(), GatewayError> {
        let snapshot = control.compiler.compile(&inputs, &endpoints)?;
        let (node_ports, cluster_ips, service_listeners) = self.service_plan(&inputs)?;
        let wanted = self.wanted_entries(&inputs);
        let mut bound = Vec::new();
        for &entry in &wanted {
            if control.listeners.contains_key(&entry) {
                continue;
            }
            if let Some(l) = control.ahead.entries.remove(&entry) {
                bound.push((entry, l));
                continue;
            }
            let addr = self.address_of(entry);
            match TcpListener::bind(addr).await {
                Ok(l) => bound.push((entry, l)),
                Err(source) => {
                    return Err(match entry {
                        Entry::Gateway(port) => GatewayError::Bind { port, addr, source },
                        Entry::Ingress => GatewayError::IngressBind { addr, source },
                    });
                }
            }
        }
        let running: std::collections::HashSet<SocketAddr> =
            control.service_listeners.keys().copied().collect();
        // A Service address that cannot be bound stops nothing else: it is
        // reported, tried again at the next change, and a privileged port
        // is served on a mapped one meanwhile.
        let mut service_bound = Vec::new();
        let mut bindings = BTreeMap::new();
        for addr in service_proxy::to_bind(&service_listeners, &running) {
            let (listener, binding) = match control.ahead.services.remove(&addr) {
                Some(ahead) => ahead,
                None => bind_service(addr).await,
            };
            if let Some(l) = listener {
                service_bound.push((addr, l));
            }
            if let Some(b) = binding {
                bindings.insert(addr, b);
            }
        }
        control.ahead = Ahead::default();
        for addr in control.service_listeners.keys() {
            if let Some(b @ service_proxy::Binding::Mapped(_)) = control.service_bindings.get(addr)
            {
                bindings.insert(*addr, b.clone());
            }
        }
        bindings.retain(|a, _| service_listeners.iter().any(|l| l.at == *a));
        control.service_bindings = bindings;
        self.shared.snapshot.store(Arc::new(snapshot));
        self.service_backends
            .store(Arc::new(service_proxy::backend_table(
                &service_listeners,
                &inputs.services,
                &endpoints,
            )));
        let service_limits = service_proxy::ServiceProxyLimits {
            connect_timeout: self.options.connect_timeout,
            idle_timeout: self.options.limits.guard.idle_timeout,
            caps: self.service_caps,
        };
        for (addr, listener) in service_bound {
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(service_proxy::serve(
                listener,
                addr,
                self.service_backends.clone(),
                service_limits,
                self.service_counts.clone(),
                stop_rx,
            ));
            control
                .service_listeners
                .insert(addr, RunningListener { addr, stop, task });
        }
        stop_unwanted(&mut control.service_listeners, |a| {
            service_listeners.iter().any(|l| l.at == *a)
        });
        control.node_ports = node_ports;
        control.cluster_ips = cluster_ips;
        for (entry, listener) in bound {
            let addr = listener
                .local_addr()
                .unwrap_or_else(|_| self.address_of(entry));
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(server::serve(
                listener,
                entry,
                self.shared.clone(),
                self.options.limits,
                stop_rx,
            ));
            control
                .listeners
                .insert(entry, RunningListener { addr, stop, task });
        }
        stop_unwanted(&mut control.listeners, |e| wanted.contains(e));
        control.inputs = inputs;
        control.endpoints = endpoints;
        Ok(())
    }

    /// The gateway's listeners `inputs` want: each Gateway port, and the
    /// ingress controller once an Ingress exists (with a node address).
    fn wanted_entries(&self, inputs: &RouteInputs) -> Vec<Entry> {
        let mut wanted: Vec<Entry> = inputs.ports().into_iter().map(Entry::Gateway).collect();
        if self.options.node_ip.is_some() && !inputs.ingresses.is_empty() {
            wanted.push(Entry::Ingress);
        }
        wanted
    }

    /// What kube-proxy's part serves for `inputs`: node ports, cluster IPs
    /// and the Service listeners (none without a node address).
    fn service_plan(&self, inputs: &RouteInputs) -> Result<ServicePlan, GatewayError> {
        let Some(node_ip) = self.options.node_ip else {
            return Ok((Vec::new(), BTreeMap::new(), Vec::new()));
        };
        let node_ports = service_proxy::node_ports(&inputs.services)?;
        let cluster_ips = service_proxy::cluster_ips(&inputs.services, node_ip);
        let listeners =
            service_proxy::listeners(&inputs.services, &node_ports, &cluster_ips, node_ip);
        Ok((node_ports, cluster_ips, listeners))
    }

    /// Where a listener binds: a Gateway port at its mapped local port,
    /// the ingress controller at the node address.
    fn address_of(&self, entry: Entry) -> SocketAddr {
        match entry {
            Entry::Gateway(port) => SocketAddr::new(
                self.options.bind,
                self.options.port_map.get(&port).copied().unwrap_or(port),
            ),
            Entry::Ingress => SocketAddr::new(
                self.options.node_ip.unwrap_or(self.options.bind),
                self.options.ingress_port,
            ),
        }
    }

    /// Gateway port → the local address it listens on.
    pub async fn listeners(&self) -> BTreeMap<u16, SocketAddr> {
        let control = self.control.lock().await;
        control
            .listeners
            .iter()
            .filter_map(|(e, l)| match e {
                Entry::Gateway(p) => Some((*p, l.addr)),
                Entry::Ingress => None,
            })
            .collect()
    }

    /// Where the ingress controller listens, once an Ingress exists.
    pub async fn ingress_address(&self) -> Option<SocketAddr> {
        let control = self.control.lock().await;
        control.listeners.get(&Entry::Ingress).map(|l| l.addr)
    }

    /// Each Service port served on the node, with its address.
    pub async fn node_ports(&self) -> Vec<(service_proxy::NodePort, SocketAddr)> {
        let control = self.control.lock().await;
        let Some(node_ip) = self.options.node_ip else {
            return Vec::new();
        };
        control
            .node_ports
            .iter()
            .map(|n| (n.clone(), SocketAddr::new(node_ip, n.node_port)))
            .filter(|(_, at)| control.service_listeners.contains_key(at))
            .collect()
    }

    /// The Service ports not served where they should be: served at a
    /// mapped address, or not at all (and why) — for the runtime's events.
    pub async fn service_bindings(
        &self,
    ) -> Vec<(ServiceKey, u16, SocketAddr, service_proxy::Binding)> {
        let control = self.control.lock().await;
        let wanted = match self.options.node_ip {
            Some(node_ip) => {
                let node_ports =
                    service_proxy::node_ports(&control.inputs.services).unwrap_or_default();
                service_proxy::listeners(
                    &control.inputs.services,
                    &node_ports,
                    &control.cluster_ips,
                    node_ip,
                )
            }
            None => Vec::new(),
        };
        wanted
            .into_iter()
            .filter_map(|l| {
                let b = control.service_bindings.get(&l.at)?.clone();
                Some((l.service, l.port, l.at, b))
            })
            .collect()
    }

    /// Each Service's cluster IP (where its ports are served on this machine).
    pub async fn cluster_ips(&self) -> BTreeMap<ServiceKey, IpAddr> {
        self.control.lock().await.cluster_ips.clone()
    }

    /// The bounds of its downstream connections, which the metrics
    /// listener keeps too.
    pub fn connection_limits(&self) -> ConnectionLimits {
        self.options.limits
    }

    /// The Rollout metrics the runtime keeps, served with the gateway's.
    pub fn rollout_metrics(&self) -> &metrics::RolloutMetrics {
        &self.shared.metrics.rollouts
    }

    /// Every rule's per-version counters now (`namespace/name` of the
    /// VirtualService, the rule's index, the version), for rollout analysis.
    pub fn rule_version_counts(
        &self,
    ) -> Vec<(
        weir_api::version_stats::VersionKey,
        weir_api::version_stats::VersionCounts,
    )> {
        self.shared.metrics.rule_versions.snapshot()
    }

    /// Istio's metrics in the Prometheus text format.
    pub fn metrics(&self) -> String {
        self.shared.metrics.render()
    }

    /// Stops every listener; open connections finish their requests.
    pub async fn shutdown(&self) {
        let mut control = self.control.lock().await;
        for (_, l) in std::mem::take(&mut control.listeners) {
            let _ = l.stop.send(true);
            let _ = l.task.await;
        }
        for (_, l) in std::mem::take(&mut control.service_listeners) {
            let _ = l.stop.send(true);
            let _ = l.task.await;
        }
    }
}
