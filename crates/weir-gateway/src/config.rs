//! The gateway's inputs (Istio resources, Services, endpoints) and their
//! compilation into an immutable [`Snapshot`] that the request path reads
//! without locks. Compiling happens off the request path, on every change.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use k8s_openapi_types::*;
use weir_api::istio::{
    Destination, DestinationRuleSpec, GatewaySpec, Headers, HttpRoute, IstioObject,
    LoadBalancerSettings, TrafficPolicy, VirtualServiceSpec, service_for_host,
};
use weir_api::resource::{DEFAULT_NAMESPACE, Resource};

use crate::balance::{HashKey, Policy, UpstreamEndpoint};
use crate::matcher::{BadMatch, RuleMatch};
use crate::split::SmoothSplit;

mod k8s_openapi_types {
    pub use weir_api::k8s_openapi::api::core::v1::Service;
    pub use weir_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
}

/// The annotation that opts a VirtualService into version affinity; its
/// value names the cookie (empty: [`DEFAULT_AFFINITY_COOKIE`]).
pub const AFFINITY_ANNOTATION: &str = "weir.dev/version-affinity";
/// The affinity cookie's name when the annotation leaves it empty.
pub const DEFAULT_AFFINITY_COOKIE: &str = "weir-version";

/// `(namespace, name)` of a Service.
pub type ServiceKey = (String, String);

/// Qualifies a gateway reference (`name` or `namespace/name`).
pub fn qualify(gateway: &str, namespace: &str) -> String {
    if gateway.contains('/') {
        gateway.to_owned()
    } else {
        format!("{namespace}/{gateway}")
    }
}

/// A ready endpoint of a Service, as the runtime (or a WorkloadEntry) gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod's IP.
    pub ip: IpAddr,
    /// The pod's (or WorkloadEntry's) name.
    pub name: String,
    /// The workload (Deployment) name.
    pub workload: String,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// Named ports: container port names for pods, Service port names for
    /// WorkloadEntries (Istio's meaning for them).
    pub ports: BTreeMap<String, u16>,
}

/// Routing inputs: everything but the endpoints.
#[derive(Clone, Debug, Default)]
pub struct RouteInputs {
    /// Istio Gateways: which ports to listen on, for which hosts.
    pub gateways: Vec<IstioObject<GatewaySpec>>,
    /// Routing rules.
    pub virtual_services: Vec<IstioObject<VirtualServiceSpec>>,
    /// Subsets and load-balancing policies.
    pub destination_rules: Vec<IstioObject<DestinationRuleSpec>>,
    /// Services: ports and target ports.
    pub services: Vec<Service>,
}

impl RouteInputs {
    /// Picks the routing kinds out of loaded resources.
    pub fn from_resources<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Self {
        let mut inputs = Self::default();
        for r in resources {
            match r {
                Resource::Gateway(g) => inputs.gateways.push(g.clone()),
                Resource::VirtualService(v) => inputs.virtual_services.push(v.clone()),
                Resource::DestinationRule(d) => inputs.destination_rules.push(d.clone()),
                Resource::Service(s) => inputs.services.push((**s).clone()),
                _ => {}
            }
        }
        inputs
    }

    /// The Gateway ports to listen on.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .gateways
            .iter()
            .flat_map(|g| g.spec.servers.iter())
            .filter_map(|s| u16::try_from(s.port.number).ok())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// Why inputs could not be compiled (validation catches these first; this
/// guards the data plane against anything that slips through).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A header match names an invalid header.
    #[error("{vs}: {0}", vs = .1)]
    Match(#[source] BadMatch, String),
    /// A header operation names an invalid header or value.
    #[error("{0}: invalid header operation {1:?}")]
    Header(String, String),
    /// Several destinations with a zero weight total.
    #[error("{0}: http[{1}]: total destination weight = 0")]
    ZeroWeights(String, usize),
    /// A duration did not parse.
    #[error("{0}: {1}")]
    Duration(String, String),
}

/// What a rule does to headers.
#[derive(Clone, Debug, Default)]
pub struct HeaderOps {
    /// Request headers to overwrite.
    pub request_set: Vec<(HeaderName, HeaderValue)>,
    /// Request headers to append.
    pub request_add: Vec<(HeaderName, HeaderValue)>,
    /// Request headers to remove.
    pub request_remove: Vec<HeaderName>,
    /// Response headers to overwrite.
    pub response_set: Vec<(HeaderName, HeaderValue)>,
    /// Response headers to append.
    pub response_add: Vec<(HeaderName, HeaderValue)>,
    /// Response headers to remove.
    pub response_remove: Vec<HeaderName>,
}

impl HeaderOps {
    fn compile(headers: Option<&Headers>, owner: &str) -> Result<Self, ConfigError> {
        let Some(headers) = headers else {
            return Ok(Self::default());
        };
        let pairs = |map: &Option<BTreeMap<String, String>>| {
            map.iter()
                .flatten()
                .map(|(k, v)| {
                    let name = HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| ConfigError::Header(owner.to_owned(), k.clone()))?;
                    let value = HeaderValue::from_str(v)
                        .map_err(|_| ConfigError::Header(owner.to_owned(), v.clone()))?;
                    Ok((name, value))
                })
                .collect::<Result<Vec<_>, ConfigError>>()
        };
        let names = |list: &Option<Vec<String>>| {
            list.iter()
                .flatten()
                .map(|k| {
                    HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| ConfigError::Header(owner.to_owned(), k.clone()))
                })
                .collect::<Result<Vec<_>, ConfigError>>()
        };
        let req = headers.request.clone().unwrap_or_default();
        let resp = headers.response.clone().unwrap_or_default();
        Ok(Self {
            request_set: pairs(&req.set)?,
            request_add: pairs(&req.add)?,
            request_remove: names(&req.remove)?,
            response_set: pairs(&resp.set)?,
            response_add: pairs(&resp.add)?,
            response_remove: names(&resp.remove)?,
        })
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.request_set.is_empty()
            && self.request_add.is_empty()
            && self.request_remove.is_empty()
            && self.response_set.is_empty()
            && self.response_add.is_empty()
            && self.response_remove.is_empty()
    }
}

/// A Service subset on one port, with its endpoints and policy.
#[derive(Debug)]
pub struct Cluster {
    /// Istio's name: `outbound|80|v1|my-app.default.svc.cluster.local`.
    pub name: String,
    /// `my-app.default.svc.cluster.local`: `destination_service`.
    pub service_fqdn: String,
    /// The Service.
    pub service: ServiceKey,
    /// The endpoints, ready ones only.
    pub endpoints: Vec<Arc<UpstreamEndpoint>>,
    /// How an endpoint is chosen.
    pub policy: Policy,
    /// Per endpoint, the metrics of a plain 200 answer, resolved on first use.
    pub ok_metrics: Vec<std::sync::OnceLock<crate::metrics::Handles>>,
}

impl Cluster {
    /// Whether retries may pick another host (not with consistent hashing).
    pub fn is_consistent_hash(&self) -> bool {
        matches!(self.policy, Policy::RingHash { .. } | Policy::Maglev { .. })
    }
}

/// Which failures are retried.
#[derive(Clone, Debug, Default)]
pub struct RetryOn {
    /// Connection could not be made.
    pub connect_failure: bool,
    /// Any 5xx answer (and resets).
    pub five_xx: bool,
    /// 502, 503, 504.
    pub gateway_error: bool,
    /// The upstream reset the connection.
    pub reset: bool,
    /// 503 (Envoy's `unavailable` for gRPC; weir treats an HTTP 503 so too).
    pub unavailable: bool,
    /// These statuses.
    pub statuses: Vec<u16>,
}

/// A rule's retry policy.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Timeout per attempt.
    pub per_try_timeout: Option<Duration>,
    /// What is retried.
    pub on: RetryOn,
    /// Base backoff between attempts.
    pub backoff: Duration,
    /// Whether a retry avoids hosts already tried.
    pub ignore_previous_hosts: bool,
}

impl RetryPolicy {
    /// Istio's default when a route sets no `retries`: 2 attempts on
    /// connect-failure, refused-stream, unavailable, cancelled.
    pub fn istio_default() -> Self {
        Self {
            attempts: 2,
            per_try_timeout: None,
            on: RetryOn {
                connect_failure: true,
                reset: false,
                unavailable: true,
                ..RetryOn::default()
            },
            backoff: Duration::from_millis(25),
            ignore_previous_hosts: true,
        }
    }
}

/// Fault injection.
#[derive(Clone, Debug, Default)]
pub struct Fault {
    /// Delay and the share of requests delayed (0–100).
    pub delay: Option<(Duration, f64)>,
    /// Status and the share of requests aborted (0–100).
    pub abort: Option<(u16, f64)>,
}

/// A mirror target.
#[derive(Debug)]
pub struct Mirror {
    /// The cluster; `None` when it does not exist.
    pub cluster: Option<Arc<Cluster>>,
    /// The share of requests copied (0–100).
    pub percent: f64,
}

/// A weighted destination of a rule.
#[derive(Debug)]
pub struct RouteDestination {
    /// The subset name, or the host when there is none: what the affinity
    /// cookie records.
    pub label: String,
    /// The weight.
    pub weight: u64,
    /// The cluster; `None` when the subset or Service does not exist (503 NC).
    pub cluster: Option<Arc<Cluster>>,
    /// Header operations when this destination is picked.
    pub headers: HeaderOps,
}

/// One compiled http rule.
#[derive(Debug)]
pub struct Rule {
    /// `namespace/name` of its VirtualService.
    pub virtual_service: String,
    /// Its index in `spec.http`.
    pub index: usize,
    /// When it applies.
    pub matcher: RuleMatch,
    /// Where it sends requests.
    pub destinations: Vec<RouteDestination>,
    /// Which destination is next.
    pub split: SmoothSplit,
    /// Version affinity cookie name, when opted in.
    pub affinity: Option<String>,
    /// Route timeout; `None` = no timeout (Istio's default).
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Fault injection.
    pub fault: Option<Fault>,
    /// Mirror targets.
    pub mirrors: Vec<Mirror>,
    /// Rule-level header operations.
    pub headers: HeaderOps,
}

/// How a virtual host's domain is compared with the request's host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Domain {
    /// This host exactly.
    Exact(String),
    /// Any host ending in this (`.example.com` for `*.example.com`).
    Suffix(String),
    /// Every host.
    Any,
}

impl Domain {
    fn parse(host: &str) -> Self {
        let host = host.to_ascii_lowercase();
        if host == "*" {
            Domain::Any
        } else if let Some(suffix) = host.strip_prefix('*') {
            Domain::Suffix(suffix.to_owned())
        } else {
            Domain::Exact(host)
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Domain::Exact(h) => h.eq_ignore_ascii_case(host),
            Domain::Suffix(s) => {
                host.len() > s.len()
                    && host
                        .get(host.len() - s.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(s))
            }
            Domain::Any => true,
        }
    }

    /// Envoy's order: exact, then longer suffixes, then `*`.
    fn rank(&self) -> (u8, usize) {
        match self {
            Domain::Exact(_) => (0, 0),
            Domain::Suffix(s) => (1, usize::MAX - s.len()),
            Domain::Any => (2, 0),
        }
    }
}

/// A domain and its rules, in order.
#[derive(Debug)]
pub struct VirtualHost {
    /// Which hosts.
    pub domain: Domain,
    /// The rules of every VirtualService for this domain, in order.
    pub rules: Vec<Arc<Rule>>,
}

/// The routes of one Gateway port.
#[derive(Debug, Default)]
pub struct Listener {
    /// The Gateways (`namespace/name`) with a server on this port.
    pub gateways: Vec<String>,
    /// Virtual hosts, most specific first.
    pub virtual_hosts: Vec<VirtualHost>,
}

impl Listener {
    /// The virtual host for a request's host (port stripped).
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        self.virtual_hosts.iter().find(|v| v.domain.matches(host))
    }

    /// The rule for a request: the first matching rule of the most
    /// specific virtual host for `host`; `None` is Envoy's NR.
    #[inline]
    pub fn route(
        &self,
        host: &str,
        request: &crate::matcher::RequestView<'_>,
    ) -> Option<&Arc<Rule>> {
        self.virtual_host(host)?
            .rules
            .iter()
            .find(|r| r.matcher.matches(request))
    }
}

/// Everything the request path needs, immutable once built.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Routes by Gateway port.
    pub listeners: HashMap<u16, Listener>,
}

/// State kept across compilations so shared counters survive them.
#[derive(Default)]
pub struct Compiler {
    split_counters: HashMap<(String, usize), Arc<AtomicU64>>,
    endpoints: HashMap<(SocketAddr, String), Arc<UpstreamEndpoint>>,
}

impl Compiler {
    /// Compiles inputs and endpoints into a snapshot.
    pub fn compile(
        &mut self,
        inputs: &RouteInputs,
        endpoints: &HashMap<ServiceKey, Vec<Endpoint>>,
    ) -> Result<Snapshot, ConfigError> {
        let mut clusters: HashMap<String, Arc<Cluster>> = HashMap::new();
        let mut live_endpoints = HashMap::new();
        let mut listeners: HashMap<u16, Listener> = HashMap::new();
        // Server hosts per (port, gateway).
        let mut servers: HashMap<u16, Vec<(String, Vec<String>)>> = HashMap::new();
        for g in &inputs.gateways {
            let name = qualify(name_of(&g.metadata), ns_of(&g.metadata));
            for server in &g.spec.servers {
                let Ok(port) = u16::try_from(server.port.number) else {
                    continue;
                };
                let hosts = server
                    .hosts
                    .iter()
                    .map(|h| h.rsplit('/').next().unwrap_or(h).to_owned())
                    .collect();
                servers.entry(port).or_default().push((name.clone(), hosts));
                let listener = listeners.entry(port).or_default();
                if !listener.gateways.contains(&name) {
                    listener.gateways.push(name.clone());
                }
            }
        }
        for (port, listener) in &mut listeners {
            let mut hosts: Vec<VirtualHost> = Vec::new();
            for vs in &inputs.virtual_services {
                let ns = ns_of(&vs.metadata);
                let vs_name = format!("{ns}/{}", name_of(&vs.metadata));
                let bound: Vec<String> = vs
                    .spec
                    .gateways
                    .iter()
                    .flatten()
                    .map(|g| qualify(g, ns))
                    .collect();
                let server_hosts: Vec<&String> = servers[port]
                    .iter()
                    .filter(|(g, _)| bound.contains(g))
                    .flat_map(|(_, hs)| hs.iter())
                    .collect();
                if server_hosts.is_empty() {
                    continue;
                }
                let rules: Vec<Arc<Rule>> = vs
                    .spec
                    .http
                    .iter()
                    .enumerate()
                    .map(|(i, route)| {
                        self.rule(
                            vs,
                            &vs_name,
                            i,
                            route,
                            inputs,
                            endpoints,
                            &mut clusters,
                            &mut live_endpoints,
                        )
                        .map(Arc::new)
                    })
                    .collect::<Result<_, _>>()?;
                for vs_host in &vs.spec.hosts {
                    for server_host in &server_hosts {
                        let Some(domain) = intersect(server_host, vs_host) else {
                            continue;
                        };
                        let domain = Domain::parse(&domain);
                        match hosts.iter_mut().find(|h| h.domain == domain) {
                            Some(h) => {
                                for r in &rules {
                                    if !h.rules.iter().any(|x| Arc::ptr_eq(x, r)) {
                                        h.rules.push(r.clone());
                                    }
                                }
                            }
                            None => hosts.push(VirtualHost {
                                domain,
                                rules: rules.clone(),
                            }),
                        }
                    }
                }
            }
            hosts.sort_by_key(|h| h.domain.rank());
            listener.virtual_hosts = hosts;
        }
        self.endpoints = live_endpoints;
        Ok(Snapshot { listeners })
    }

    #[allow(clippy::too_many_arguments)]
    fn rule(
        &mut self,
        vs: &IstioObject<VirtualServiceSpec>,
        vs_name: &str,
        index: usize,
        route: &HttpRoute,
        inputs: &RouteInputs,
        endpoints: &HashMap<ServiceKey, Vec<Endpoint>>,
        clusters: &mut HashMap<String, Arc<Cluster>>,
        live: &mut HashMap<(SocketAddr, String), Arc<UpstreamEndpoint>>,
    ) -> Result<Rule, ConfigError> {
        let ns = ns_of(&vs.metadata);
        let owner = format!("{vs_name}: http[{index}]");
        let matcher = RuleMatch::compile(route.matches.as_deref(), ns)
            .map_err(|e| ConfigError::Match(e, vs_name.to_owned()))?;
        let mut destinations = Vec::new();
        for d in route.route.iter().flatten() {
            destinations.push(RouteDestination {
                label: d
                    .destination
                    .subset
                    .clone()
                    .unwrap_or_else(|| d.destination.host.clone()),
                weight: d.weight.unwrap_or(0).max(0) as u64,
                cluster: self.cluster(&d.destination, ns, inputs, endpoints, clusters, live),
                headers: HeaderOps::compile(d.headers.as_ref(), &owner)?,
            });
        }
        let mut weights: Vec<u64> = destinations.iter().map(|d| d.weight).collect();
        if weights.len() == 1 {
            weights[0] = 1;
        }
        if !weights.is_empty() && weights.iter().all(|&w| w == 0) {
            return Err(ConfigError::ZeroWeights(vs_name.to_owned(), index));
        }
        let counter = self
            .split_counters
            .entry((vs_name.to_owned(), index))
            .or_default()
            .clone();
        let split = SmoothSplit::new(if weights.is_empty() { &[1] } else { &weights }, counter);
        let duration = |text: &String| {
            weir_api::duration::parse(text).map_err(|e| ConfigError::Duration(owner.clone(), e))
        };
        let retry = match &route.retries {
            None => RetryPolicy::istio_default(),
            Some(r) => RetryPolicy {
                attempts: r.attempts.unwrap_or(0).max(0) as u32,
                per_try_timeout: r.per_try_timeout.as_ref().map(duration).transpose()?,
                on: retry_on(r.retry_on.as_deref()),
                backoff: r
                    .backoff
                    .as_ref()
                    .map(duration)
                    .transpose()?
                    .unwrap_or(Duration::from_millis(25)),
                ignore_previous_hosts: r.retry_ignore_previous_hosts.unwrap_or(true),
            },
        };
        let fault = match &route.fault {
            None => None,
            Some(f) => Some(Fault {
                delay: match &f.delay {
                    Some(d) => match &d.fixed_delay {
                        Some(t) => Some((
                            duration(t)?,
                            percent(d.percentage.as_ref().map(|p| p.value), d.percent),
                        )),
                        None => None,
                    },
                    None => None,
                },
                abort: f.abort.as_ref().and_then(|a| {
                    let status = u16::try_from(a.http_status?).ok()?;
                    Some((
                        status,
                        percent(a.percentage.as_ref().map(|p| p.value), a.percent),
                    ))
                }),
            }),
        };
        let mut mirrors = Vec::new();
        if let Some(m) = &route.mirror {
            let pct = route
                .mirror_percentage
                .as_ref()
                .map(|p| p.value)
                .or(route.mirror_percent.map(f64::from))
                .unwrap_or(100.0);
            mirrors.push(Mirror {
                cluster: self.cluster(m, ns, inputs, endpoints, clusters, live),
                percent: pct,
            });
        }
        for m in route.mirrors.iter().flatten() {
            mirrors.push(Mirror {
                cluster: self.cluster(&m.destination, ns, inputs, endpoints, clusters, live),
                percent: m.percentage.as_ref().map_or(100.0, |p| p.value),
            });
        }
        let affinity = vs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(AFFINITY_ANNOTATION))
            .map(|v| {
                if v.is_empty() {
                    DEFAULT_AFFINITY_COOKIE.to_owned()
                } else {
                    v.clone()
                }
            });
        Ok(Rule {
            virtual_service: vs_name.to_owned(),
            index,
            matcher,
            destinations,
            split,
            affinity,
            timeout: route.timeout.as_ref().map(duration).transpose()?,
            retry,
            fault,
            mirrors,
            headers: HeaderOps::compile(route.headers.as_ref(), &owner)?,
        })
    }

    /// The cluster for a destination, built once per snapshot; `None` when
    /// its Service, port or subset does not exist.
    fn cluster(
        &mut self,
        dest: &Destination,
        namespace: &str,
        inputs: &RouteInputs,
        endpoints: &HashMap<ServiceKey, Vec<Endpoint>>,
        clusters: &mut HashMap<String, Arc<Cluster>>,
        live: &mut HashMap<(SocketAddr, String), Arc<UpstreamEndpoint>>,
    ) -> Option<Arc<Cluster>> {
        let (svc_ns, svc_name) = service_for_host(&dest.host, namespace);
        let service = inputs
            .services
            .iter()
            .find(|s| ns_of(&s.metadata) == svc_ns && name_of(&s.metadata) == svc_name)?;
        let ports = service.spec.as_ref()?.ports.as_deref().unwrap_or_default();
        let port = match &dest.port {
            Some(p) => ports.iter().find(|sp| sp.port as u32 == p.number)?,
            None if ports.len() == 1 => &ports[0],
            None => return None,
        };
        let fqdn = format!("{svc_name}.{svc_ns}.svc.cluster.local");
        let subset_name = dest.subset.clone().unwrap_or_default();
        let name = format!("outbound|{}|{subset_name}|{fqdn}", port.port);
        if let Some(c) = clusters.get(&name) {
            return Some(c.clone());
        }
        let rule = inputs.destination_rules.iter().find(|dr| {
            service_for_host(&dr.spec.host, ns_of(&dr.metadata))
                == (svc_ns.clone(), svc_name.clone())
        });
        let (labels, policy) = match (&dest.subset, rule) {
            (None, rule) => (
                BTreeMap::new(),
                rule.and_then(|r| r.spec.traffic_policy.clone()),
            ),
            (Some(subset), Some(rule)) => {
                let s = rule.spec.subsets.iter().find(|s| &s.name == subset)?;
                let policy = s
                    .traffic_policy
                    .clone()
                    .filter(|p| p.load_balancer.is_some())
                    .or_else(|| rule.spec.traffic_policy.clone());
                (s.labels.clone(), policy)
            }
            (Some(_), None) => return None,
        };
        let key = (svc_ns.clone(), svc_name.clone());
        let members: Vec<Arc<UpstreamEndpoint>> = endpoints
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|e| labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
            .filter_map(|e| {
                let target = target_port(port, e)?;
                let addr = SocketAddr::new(e.ip, target);
                let shared = self
                    .endpoints
                    .get(&(addr, e.name.clone()))
                    .filter(|x| x.labels == e.labels)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(UpstreamEndpoint::new(
                            addr,
                            e.name.clone(),
                            e.workload.clone(),
                            e.labels.clone(),
                        ))
                    });
                live.insert((addr, e.name.clone()), shared.clone());
                Some(shared)
            })
            .collect();
        let policy = lb_policy(
            policy
                .as_ref()
                .and_then(|p: &TrafficPolicy| p.load_balancer.as_ref()),
            &members,
        );
        let cluster = Arc::new(Cluster {
            name: name.clone(),
            service_fqdn: fqdn,
            service: key,
            ok_metrics: members.iter().map(|_| std::sync::OnceLock::new()).collect(),
            endpoints: members,
            policy,
        });
        clusters.insert(name, cluster.clone());
        Some(cluster)
    }
}

/// The endpoint's port for a Service port: a WorkloadEntry's port for the
/// Service port's name, else the target port (named ports looked up).
fn target_port(
    port: &weir_api::k8s_openapi::api::core::v1::ServicePort,
    e: &Endpoint,
) -> Option<u16> {
    if let Some(name) = &port.name
        && let Some(p) = e.ports.get(name)
    {
        return Some(*p);
    }
    match &port.target_port {
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(name)) => e.ports.get(name).copied(),
        None => u16::try_from(port.port).ok(),
    }
}

fn lb_policy(lb: Option<&LoadBalancerSettings>, endpoints: &[Arc<UpstreamEndpoint>]) -> Policy {
    let Some(lb) = lb else {
        return Policy::LeastRequest;
    };
    if let Some(ch) = &lb.consistent_hash {
        let key = if let Some(h) = &ch.http_header_name {
            HeaderName::from_bytes(h.as_bytes())
                .map(HashKey::Header)
                .ok()
        } else if let Some(c) = &ch.http_cookie {
            Some(HashKey::Cookie {
                name: c.name.clone(),
                path: c.path.clone(),
                ttl: c
                    .ttl
                    .as_deref()
                    .and_then(|t| weir_api::duration::parse(t).ok()),
            })
        } else if ch.use_source_ip == Some(true) {
            Some(HashKey::SourceIp)
        } else {
            ch.http_query_parameter_name
                .clone()
                .map(HashKey::QueryParam)
        };
        if let Some(key) = key {
            return match &ch.maglev {
                Some(m) => Policy::maglev(key, endpoints, m.table_size.unwrap_or(65537)),
                None => Policy::ring_hash(
                    key,
                    endpoints,
                    ch.ring_hash
                        .as_ref()
                        .and_then(|r| r.minimum_ring_size)
                        .or(ch.minimum_ring_size)
                        .unwrap_or(1024),
                ),
            };
        }
    }
    match lb.simple.as_deref() {
        Some("ROUND_ROBIN") => Policy::RoundRobin(AtomicUsize::new(0)),
        Some("RANDOM") => Policy::Random,
        _ => Policy::LeastRequest,
    }
}

fn retry_on(text: Option<&str>) -> RetryOn {
    let mut on = RetryOn::default();
    for token in text.unwrap_or("").split(',').map(str::trim) {
        match token {
            "connect-failure" => on.connect_failure = true,
            "5xx" => on.five_xx = true,
            "gateway-error" => on.gateway_error = true,
            "reset" | "reset-before-request" | "refused-stream" => on.reset = true,
            "unavailable" => on.unavailable = true,
            code => {
                if let Ok(c) = code.parse() {
                    on.statuses.push(c);
                }
            }
        }
    }
    on
}

/// A fault's share: `percentage.value`, else the legacy integer, else 0
/// ("if left unspecified, no request will be delayed/aborted").
fn percent(value: Option<f64>, legacy: Option<i64>) -> f64 {
    value.or(legacy.map(|p| p as f64)).unwrap_or(0.0)
}

/// The domain both a Gateway server host and a VirtualService host admit.
fn intersect(server: &str, vs: &str) -> Option<String> {
    let admits = |wide: &str, narrow: &str| {
        wide == "*"
            || wide == narrow
            || wide
                .strip_prefix('*')
                .is_some_and(|suffix| narrow.ends_with(suffix) && narrow.len() > suffix.len())
    };
    if admits(server, vs) {
        Some(vs.to_owned())
    } else if admits(vs, server) {
        Some(server.to_owned())
    } else {
        None
    }
}

fn ns_of(meta: &weir_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
}

fn name_of(meta: &weir_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}
