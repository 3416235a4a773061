//! kube-proxy's part for `NodePort` and `LoadBalancer` Services: a TCP
//! listener on the node — this machine's loopback — for each Service port,
//! and each accepted connection sent whole to one ready endpoint of the
//! Service. It is L4, as kube-proxy is: a keep-alive connection stays on
//! the pod it reached, so a split shows across connections, not requests.
//!
//! Endpoints are picked round robin (kube-proxy's IPVS default; its
//! iptables mode picks at random, which converges on the same shares), or,
//! with `sessionAffinity: ClientIP`, by the client's address: the same
//! address reaches the same pod while the set of ready pods is unchanged
//! (kube-proxy also remembers a client for `timeoutSeconds`, 3 h by
//! default, across endpoint changes; here a change of the set may move a
//! client, documented in `docs/ARCHITECTURE.md`). Endpoints are replaced
//! with every publish, so new connections follow readiness and a selector
//! change at once; open connections stay where they are, as with
//! kube-proxy.
//!
//! Node ports: a port's declared `nodePort`, else one chosen from the
//! Service's namespace, name and port in the API server's range
//! 30000–32767 (stable across restarts while free, where the API server
//! would pick at random and record it).
//!
//! Every Service with a selector (whatever its type, as on a cluster) also
//! gets a cluster IP, a loopback address 127.0.X.Y chosen from the node's
//! address and the Service's name (so it is stable, and differs between
//! runtimes sharing the machine), and listens there on each of its ports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weir_api::k8s_openapi::api::core::v1::Service;

use crate::compile::ConfigError;
use crate::conn_guard::{self, Activity, GuardLimits, Guarded};
use crate::service_caps::{ConnectionCaps, SharedCounts, Slot};
use crate::snapshot::{Endpoint, ServiceKey};

/// The API server's default NodePort range.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// One Service port served on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePort {
    /// The Service.
    pub service: ServiceKey,
    /// The Service port's name, if any.
    pub port_name: Option<String>,
    /// The Service port.
    pub port: u16,
    /// The node port it is reached at.
    pub node_port: u16,
    /// `sessionAffinity: ClientIP`.
    pub client_ip_affinity: bool,
}

fn exposed(service: &Service) -> bool {
    matches!(
        service.spec.as_ref().and_then(|s| s.type_.as_deref()),
        Some("NodePort" | "LoadBalancer")
    )
}

fn key(service: &Service) -> ServiceKey {
    (
        service
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        service.metadata.name.clone().unwrap_or_default(),
    )
}

/// The node ports `services` ask for: declared ones first (two Services
/// declaring the same port is the API server's "provided port is already
/// allocated", an error here too), then one for every other port, chosen
/// from its Service's name and probed upward (wrapping) past taken ones.
pub fn node_ports(services: &[Service]) -> Result<Vec<NodePort>, ConfigError> {
    let mut taken: HashMap<u16, String> = HashMap::new();
    let mut out = Vec::new();
    let mut unassigned = Vec::new();
    let mut sorted: Vec<&Service> = services.iter().filter(|s| exposed(s)).collect();
    sorted.sort_by_key(|s| key(s));
    for service in sorted {
        let (namespace, name) = key(service);
        let spec = service.spec.as_ref();
        let affinity = spec.and_then(|s| s.session_affinity.as_deref()) == Some("ClientIP");
        for port in spec.and_then(|s| s.ports.as_deref()).unwrap_or_default() {
            let Ok(service_port) = u16::try_from(port.port) else {
                continue;
            };
            let entry = NodePort {
                service: (namespace.clone(), name.clone()),
                port_name: port.name.clone(),
                port: service_port,
                node_port: 0,
                client_ip_affinity: affinity,
            };
            match port.node_port.and_then(|p| u16::try_from(p).ok()) {
                Some(declared) => {
                    if let Some(holder) = taken.insert(declared, format!("{namespace}/{name}")) {
                        return Err(ConfigError::NodePort(format!(
                            "service {namespace}/{name}: nodePort {declared} is already allocated to service {holder}"
                        )));
                    }
                    out.push(NodePort {
                        node_port: declared,
                        ..entry
                    });
                }
                None => unassigned.push(entry),
            }
        }
    }
    let span = u32::from(NODE_PORT_RANGE.end() - NODE_PORT_RANGE.start()) + 1;
    for entry in unassigned {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&entry.service, entry.port).hash(&mut hasher);
        let start = (hasher.finish() % u64::from(span)) as u32;
        let free = (0..span)
            .map(|i| NODE_PORT_RANGE.start() + ((start + i) % span) as u16)
            .find(|p| !taken.contains_key(p));
        let Some(node_port) = free else {
            return Err(ConfigError::NodePort(format!(
                "service {}/{}: no node port is left in {}-{}",
                entry.service.0,
                entry.service.1,
                NODE_PORT_RANGE.start(),
                NODE_PORT_RANGE.end()
            )));
        };
        taken.insert(
            node_port,
            format!("{}/{}", entry.service.0, entry.service.1),
        );
        out.push(NodePort { node_port, ..entry });
    }
    out.sort_by_key(|n| n.node_port);
    Ok(out)
}

/// A cluster IP for every Service with a selector (`clusterIP: None`,
/// headless, gets none): 127.0.X.Y from the node address and the Service's
/// key, probed past the node address, 127.0.0.1 and addresses already
/// given, so two Services never share one.
pub fn cluster_ips(services: &[Service], node_ip: IpAddr) -> BTreeMap<ServiceKey, IpAddr> {
    let mut keys: Vec<ServiceKey> = services
        .iter()
        .filter(|s| {
            let spec = s.spec.as_ref();
            spec.and_then(|s| s.selector.as_ref()).is_some()
                && spec.and_then(|s| s.cluster_ip.as_deref()) != Some("None")
        })
        .map(key)
        .collect();
    keys.sort();
    keys.dedup();
    let mut taken: HashSet<IpAddr> = HashSet::from([node_ip, IpAddr::from([127, 0, 0, 1])]);
    let mut out = BTreeMap::new();
    // 127.0.0.2–127.0.254.254 without .0 and .255 hosts.
    let span: u32 = 255 * 253;
    for k in keys {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (node_ip, &k).hash(&mut hasher);
        let start = (hasher.finish() % u64::from(span)) as u32;
        let ip = (0..span)
            .map(|i| {
                let n = (start + i) % span;
                IpAddr::from([127, 0, (n / 253) as u8, (n % 253 + 1) as u8])
            })
            .find(|ip| !taken.contains(ip));
        if let Some(ip) = ip {
            taken.insert(ip);
            out.insert(k, ip);
        }
    }
    out
}

/// One address a Service is served at: its cluster IP and port, or the
/// node address and a node port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceListener {
    /// The Service.
    pub service: ServiceKey,
    /// The Service port it serves.
    pub port: u16,
    /// Where it listens.
    pub at: SocketAddr,
    /// `sessionAffinity: ClientIP`.
    pub client_ip_affinity: bool,
}

/// Every address the Services are served at: each port at its cluster IP,
/// and each node port at the node address.
pub fn listeners(
    services: &[Service],
    node_ports: &[NodePort],
    cluster_ips: &BTreeMap<ServiceKey, IpAddr>,
    node_ip: IpAddr,
) -> Vec<ServiceListener> {
    let mut out: Vec<ServiceListener> = node_ports
        .iter()
        .map(|n| ServiceListener {
            service: n.service.clone(),
            port: n.port,
            at: SocketAddr::new(node_ip, n.node_port),
            client_ip_affinity: n.client_ip_affinity,
        })
        .collect();
    for service in services {
        let k = key(service);
        let Some(ip) = cluster_ips.get(&k) else {
            continue;
        };
        let spec = service.spec.as_ref();
        let affinity = spec.and_then(|s| s.session_affinity.as_deref()) == Some("ClientIP");
        for port in spec.and_then(|s| s.ports.as_deref()).unwrap_or_default() {
            if let Ok(p) = u16::try_from(port.port) {
                out.push(ServiceListener {
                    service: k.clone(),
                    port: p,
                    at: SocketAddr::new(*ip, p),
                    client_ip_affinity: affinity,
                });
            }
        }
    }
    out.sort_by_key(|l| l.at);
    out.dedup_by_key(|l| l.at);
    out
}

/// Where a listener's connections go now.
#[derive(Debug, Default)]
pub struct Backends {
    addrs: Vec<SocketAddr>,
    turn: AtomicUsize,
    client_ip_affinity: bool,
}

impl Backends {
    /// The endpoints of `listener`'s Service (`endpoints`: its ready pods),
    /// at the pod port its Service port targets.
    pub fn of(listener: &ServiceListener, services: &[Service], endpoints: &[Endpoint]) -> Self {
        let port = services
            .iter()
            .find(|s| key(s) == listener.service)
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.ports.as_deref())
            .and_then(|ports| {
                ports
                    .iter()
                    .find(|p| u16::try_from(p.port).ok() == Some(listener.port))
            });
        let addrs = port
            .map(|port| {
                endpoints
                    .iter()
                    .filter_map(|e| {
                        crate::compile::target_port(port, e).map(|p| SocketAddr::new(e.ip, p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            addrs,
            turn: AtomicUsize::new(0),
            client_ip_affinity: listener.client_ip_affinity,
        }
    }

    /// The endpoint for a connection from `client`.
    pub fn pick(&self, client: IpAddr) -> Option<SocketAddr> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        pick(&self.addrs, turn, self.client_ip_affinity.then_some(client))
    }
}

/// The endpoint for the `turn`-th connection: round robin, or by the
/// client's address when affinity is on; `None` without endpoints (the
/// connection is refused, as kube-proxy rejects it).
pub fn pick(addrs: &[SocketAddr], turn: usize, affine_to: Option<IpAddr>) -> Option<SocketAddr> {
    if addrs.is_empty() {
        return None;
    }
    let index = match affine_to {
        Some(ip) => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            ip.hash(&mut hasher);
            (hasher.finish() % addrs.len() as u64) as usize
        }
        None => turn % addrs.len(),
    };
    Some(addrs[index])
}

/// Every listener's backends, by its address, swapped whole on each publish.
pub type BackendTable = ArcSwap<BTreeMap<SocketAddr, Arc<Backends>>>;

/// The backends of every listener for these Services and endpoints.
pub fn backend_table(
    listeners: &[ServiceListener],
    services: &[Service],
    endpoints: &HashMap<ServiceKey, Vec<Endpoint>>,
) -> BTreeMap<SocketAddr, Arc<Backends>> {
    listeners
        .iter()
        .map(|l| {
            let ready = endpoints.get(&l.service).map_or(&[][..], Vec::as_slice);
            (l.at, Arc::new(Backends::of(l, services, ready)))
        })
        .collect()
}

/// Addresses in `wanted` and not in `running`.
/// How a Service address that could not be bound as it is is served
/// instead, or why it is not: kube-proxy logs "can't open port" and
/// serves the rest; weir does the same, and serves a privileged port it
/// may not bind (not running as root) on a mapped one, as `--port-map`
/// does for the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// Served at this other address instead.
    Mapped(SocketAddr),
    /// Not served: why.
    Unbound(String),
}

/// Where to try a Service address refused with `error` instead: a port
/// below 1024 refused for want of privileges moves up by 8000 (80 → 8080,
/// as the gateway's default `--port-map`); anything else is not retried.
pub fn fallback(at: SocketAddr, error: std::io::ErrorKind) -> Option<SocketAddr> {
    (error == std::io::ErrorKind::PermissionDenied && at.port() < 1024)
        .then(|| SocketAddr::new(at.ip(), at.port() + 8000))
}

/// The addresses of `wanted` not served yet.
pub fn to_bind(wanted: &[ServiceListener], running: &HashSet<SocketAddr>) -> Vec<SocketAddr> {
    wanted
        .iter()
        .map(|l| l.at)
        .filter(|a| !running.contains(a))
        .collect()
}

/// How long a connection to an endpoint may take, how long a proxied
/// connection may stay silent, and how many there may be.
#[derive(Clone, Copy, Debug)]
pub struct ServiceProxyLimits {
    /// Connecting to the endpoint.
    pub connect_timeout: Duration,
    /// No byte in either direction for this long closes both sides.
    pub idle_timeout: Duration,
    /// How many connections the Service listeners hold.
    pub caps: ConnectionCaps,
}

/// Accepts on one Service address until `stop`, proxying each connection.
pub async fn serve(
    listener: TcpListener,
    at: SocketAddr,
    table: Arc<BackendTable>,
    limits: ServiceProxyLimits,
    counts: SharedCounts,
    mut stop: watch::Receiver<bool>,
) {
    let here = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, from)) => {
                    let Some(slot) = Slot::take(&counts.open, &here, limits.caps) else {
                        counts.refused.inc();
                        continue;
                    };
                    let backends = table.load().get(&at).cloned();
                    let Some(to) = backends.and_then(|b| b.pick(from.ip())) else {
                        continue;
                    };
                    let activity = Activity::opaque();
                    let connection = tokio::spawn(proxy(client, to, activity.clone(), limits.connect_timeout, slot));
                    let guard = GuardLimits { first_bytes_timeout: limits.idle_timeout, idle_timeout: limits.idle_timeout };
                    tokio::spawn(conn_guard::enforce(activity, guard, connection));
                }
                Err(e) => {
                    if let Some(pause) = conn_guard::accept_backoff(&e) {
                        tokio::time::sleep(pause).await;
                    }
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// Copies one connection both ways; the endpoint is connected to only
/// once the client has sent something (an idle client costs one
/// descriptor, not two). `_slot` holds its place under the caps.
async fn proxy(
    client: TcpStream,
    to: SocketAddr,
    activity: Arc<Activity>,
    connect_timeout: Duration,
    _slot: Slot,
) {
    if client.readable().await.is_err() {
        return;
    }
    let Ok(Ok(upstream)) = tokio::time::timeout(connect_timeout, TcpStream::connect(to)).await
    else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut client = Guarded::new(client, activity);
    let mut upstream = upstream;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_privileged_port_refused_moves_up_and_other_failures_stay() {
        let at = |port| SocketAddr::from(([127, 0, 0, 10], port));
        use std::io::ErrorKind::{AddrInUse, PermissionDenied};
        assert_eq!(fallback(at(80), PermissionDenied), Some(at(8080)));
        assert_eq!(fallback(at(443), PermissionDenied), Some(at(8443)));
        assert_eq!(fallback(at(8080), PermissionDenied), None);
        assert_eq!(fallback(at(80), AddrInUse), None);
    }

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn node_ports_are_declared_or_chosen_in_range_and_never_shared() {
        let nodeport = service(
            json!({"metadata": {"name": "my-app"}, "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        );
        let declared = service(
            json!({"metadata": {"name": "fixed", "namespace": "shop"}, "spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 8080, "nodePort": 30080}]}}),
        );
        let cluster_ip =
            service(json!({"metadata": {"name": "internal"}, "spec": {"ports": [{"port": 80}]}}));
        let ports = node_ports(&[nodeport.clone(), declared.clone(), cluster_ip]).unwrap();
        assert_eq!(ports.len(), 2, "{ports:?}");
        let fixed = ports.iter().find(|p| p.service.1 == "fixed").unwrap();
        assert_eq!(
            (fixed.node_port, fixed.port, fixed.client_ip_affinity),
            (30080, 8080, true)
        );
        let chosen = ports.iter().find(|p| p.service.1 == "my-app").unwrap();
        assert!(NODE_PORT_RANGE.contains(&chosen.node_port));
        assert!(!chosen.client_ip_affinity);
        // The same Services choose the same ports (stable across restarts).
        assert_eq!(
            node_ports(&[declared.clone(), nodeport.clone()]).unwrap(),
            ports
        );
        // A chosen port never lands on a declared one.
        let clash = service(
            json!({"metadata": {"name": "clash"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": chosen.node_port}]}}),
        );
        let ports = node_ports(&[nodeport.clone(), clash]).unwrap();
        assert_ne!(ports[0].node_port, ports[1].node_port);
        // Two declarations of one port: the API server's refusal.
        let twice = service(
            json!({"metadata": {"name": "twice"}, "spec": {"type": "NodePort", "ports": [{"port": 81, "nodePort": 30080}]}}),
        );
        let err = node_ports(&[declared, twice]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service shop/fixed: nodePort 30080 is already allocated to service default/twice"
        );
    }

    #[test]
    fn connections_go_round_robin_or_stay_with_a_client() {
        let addrs: Vec<SocketAddr> = ["127.1.0.1:8080", "127.1.0.2:8080", "127.1.0.3:8080"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let round: Vec<SocketAddr> = (0..6).map(|t| pick(&addrs, t, None).unwrap()).collect();
        assert_eq!(round[..3], addrs[..]);
        assert_eq!(round[3..], addrs[..]);
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let first = pick(&addrs, 0, Some(client)).unwrap();
        assert!((1..50).all(|t| pick(&addrs, t, Some(client)) == Some(first)));
        let spread: HashSet<SocketAddr> = (0..64u8)
            .map(|i| pick(&addrs, 0, Some(IpAddr::from([127, 0, 0, i]))).unwrap())
            .collect();
        assert_eq!(spread.len(), 3, "clients spread over the pods");
        assert_eq!(pick(&[], 0, None), None);
    }

    #[test]
    fn backends_are_the_ready_endpoints_at_the_target_port() {
        let svc = service(
            json!({"metadata": {"name": "my-app"}, "spec": {"type": "NodePort", "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}),
        );
        let node_ip = IpAddr::from([127, 0, 9, 9]);
        let nps = node_ports(std::slice::from_ref(&svc)).unwrap();
        let ips = cluster_ips(std::slice::from_ref(&svc), node_ip);
        let all = listeners(std::slice::from_ref(&svc), &nps, &ips, node_ip);
        let np = all.iter().find(|l| l.at.ip() == node_ip).unwrap().clone();
        let endpoint = |ip: &str, port: u16| Endpoint {
            ip: ip.parse().unwrap(),
            name: ip.to_owned(),
            workload: "my-app".into(),
            labels: BTreeMap::new(),
            ports: BTreeMap::from([("http".to_owned(), port)]),
        };
        let backends = Backends::of(
            &np,
            &[svc],
            &[endpoint("127.1.0.1", 8080), endpoint("127.1.0.2", 9090)],
        );
        assert_eq!(
            backends.addrs,
            vec![
                "127.1.0.1:8080".parse::<SocketAddr>().unwrap(),
                "127.1.0.2:9090".parse().unwrap()
            ]
        );
    }

    #[test]
    fn every_service_with_a_selector_gets_its_own_stable_cluster_ip() {
        let svc = |name: &str, extra: serde_json::Value| {
            let mut spec =
                json!({"selector": {"app": name}, "ports": [{"port": 80}, {"port": 9090}]});
            if let (Some(fields), Some(more)) = (spec.as_object_mut(), extra.as_object()) {
                fields.extend(more.clone());
            }
            service(json!({"metadata": {"name": name}, "spec": spec}))
        };
        let services = [
            svc("a", json!({})),
            svc("b", json!({"type": "NodePort"})),
            svc("headless", json!({"clusterIP": "None"})),
            service(
                json!({"metadata": {"name": "no-selector"}, "spec": {"ports": [{"port": 80}]}}),
            ),
        ];
        let node_ip = IpAddr::from([127, 0, 3, 7]);
        let ips = cluster_ips(&services, node_ip);
        assert_eq!(ips.len(), 2, "{ips:?}");
        let (a, b) = (
            ips[&("default".into(), "a".into())],
            ips[&("default".into(), "b".into())],
        );
        assert_ne!(a, b);
        for ip in [a, b] {
            let IpAddr::V4(v4) = ip else { panic!("{ip}") };
            let [x, y, _, d] = v4.octets();
            assert_eq!((x, y), (127, 0));
            assert!(ip != node_ip && d != 0 && d != 255, "{ip}");
        }
        assert_eq!(cluster_ips(&services, node_ip), ips, "stable");
        assert_ne!(
            cluster_ips(&services, IpAddr::from([127, 0, 8, 8])),
            ips,
            "another runtime, other addresses"
        );
        let nps = node_ports(&services).unwrap();
        let at: Vec<SocketAddr> = listeners(&services, &nps, &ips, node_ip)
            .iter()
            .map(|l| l.at)
            .collect();
        assert_eq!(
            at.len(),
            2 + 2 + 2,
            "a: 2 ports, b: 2 ports and 2 node ports: {at:?}"
        );
        assert!(at.contains(&SocketAddr::new(a, 9090)));
    }
}
