//! Compiling the gateway's inputs (Istio resources, Services, endpoints)
//! into a [`Snapshot`], off the request path, on every change: hosts
//! intersected with the Gateways' servers, rules in order, clusters per
//! subset and port, load-balancing and retry policies, faults, mirrors.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use weir_api::istio::{
    Destination, Headers, HttpRoute, IstioObject, LoadBalancerSettings, TrafficPolicy,
    VirtualServiceSpec, service_for_host,
};
use weir_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_api::resource::DEFAULT_NAMESPACE;

use crate::balance::{HashKey, Policy};
use crate::endpoint::UpstreamEndpoint;
use crate::matcher::{BadMatch, RuleMatch, qualify};
use crate::retry::{RetryOn, RetryPolicy};
use crate::snapshot::{
    Cluster, Domain, Endpoint, Fault, HeaderOps, Listener, Mirror, RouteDestination, RouteInputs,
    Rule, RuleCounters, ServiceKey, Snapshot, VirtualHost, WaitBound,
};
use crate::split::SmoothSplit;

mod ingress;

/// The annotation that opts a VirtualService into version affinity; its
/// value names the cookie (empty: [`DEFAULT_AFFINITY_COOKIE`]).
pub const AFFINITY_ANNOTATION: &str = "weir.dev/version-affinity";
/// The affinity cookie's name when the annotation leaves it empty.
pub const DEFAULT_AFFINITY_COOKIE: &str = "weir-version";

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
    /// A Service's node port is taken or none is left.
    #[error("{0}")]
    NodePort(String),
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
            let mut host_index: HashMap<Domain, usize> = HashMap::new();
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
                        match host_index.get(&domain) {
                            Some(&i) => {
                                let h = &mut hosts[i];
                                for r in &rules {
                                    if !h.rules.iter().any(|x| Arc::ptr_eq(x, r)) {
                                        h.rules.push(r.clone());
                                    }
                                }
                            }
                            None => {
                                host_index.insert(domain.clone(), hosts.len());
                                hosts.push(VirtualHost {
                                    domain,
                                    rules: rules.clone(),
                                });
                            }
                        }
                    }
                }
            }
            listener.set_virtual_hosts(hosts);
        }
        let ingress =
            self.ingress_listener(inputs, endpoints, &mut clusters, &mut live_endpoints)?;
        self.endpoints = live_endpoints;
        Ok(Snapshot { listeners, ingress })
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
            let cluster = self.cluster(&d.destination, ns, inputs, endpoints, clusters, live);
            let members = cluster.as_ref().map_or(0, |c| c.ok_metrics.len());
            destinations.push(RouteDestination {
                label: d
                    .destination
                    .subset
                    .clone()
                    .unwrap_or_else(|| d.destination.host.clone()),
                weight: d.weight.unwrap_or(0).max(0) as u64,
                cluster,
                headers: header_ops(d.headers.as_ref(), &owner)?,
                rule_counters: RuleCounters {
                    virtual_service: vs_name.to_owned(),
                    index,
                    by_endpoint: (0..members).map(|_| std::sync::OnceLock::new()).collect(),
                },
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
                on: RetryOn::parse(r.retry_on.as_deref()),
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
                rule: (vs_name.to_owned(), index),
            });
        }
        for m in route.mirrors.iter().flatten() {
            mirrors.push(Mirror {
                cluster: self.cluster(&m.destination, ns, inputs, endpoints, clusters, live),
                percent: m.percentage.as_ref().map_or(100.0, |p| p.value),
                rule: (vs_name.to_owned(), index),
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
            headers: header_ops(route.headers.as_ref(), &owner)?,
            canary: None,
            waits_as: WaitBound::Envoy,
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

/// A rule's (or destination's) header operations, checked.
fn header_ops(headers: Option<&Headers>, owner: &str) -> Result<HeaderOps, ConfigError> {
    let Some(headers) = headers else {
        return Ok(HeaderOps::default());
    };
    let pairs = |map: &Option<BTreeMap<String, String>>| {
        map.iter()
            .flatten()
            .map(|(k, v)| {
                // Istio treats setting `:authority` as setting Host.
                let name = if k.eq_ignore_ascii_case(":authority") {
                    http::header::HOST
                } else {
                    HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| ConfigError::Header(owner.to_owned(), k.clone()))?
                };
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
    Ok(HeaderOps {
        request_set: pairs(&req.set)?,
        request_add: pairs(&req.add)?,
        request_remove: names(&req.remove)?,
        response_set: pairs(&resp.set)?,
        response_add: pairs(&resp.add)?,
        response_remove: names(&resp.remove)?,
    })
}

/// The endpoint's port for a Service port: a WorkloadEntry's port for the
/// Service port's name, else the target port (named ports looked up).
pub(crate) fn target_port(
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

#[cfg(test)]
mod tests {
    use super::*;
    use weir_api::istio::HeaderOperations;

    #[test]
    fn setting_authority_sets_the_host_header_as_istio_does() {
        let headers = Headers {
            request: Some(HeaderOperations {
                set: Some([(":authority".to_owned(), "shop.example".to_owned())].into()),
                ..Default::default()
            }),
            response: None,
        };
        let ops = header_ops(Some(&headers), "default/vs").unwrap();
        assert_eq!(
            ops.request_set,
            vec![(http::header::HOST, HeaderValue::from_static("shop.example"))]
        );
    }
}
