//! The gateway's compiled configuration: an immutable [`Snapshot`] of
//! listeners, virtual hosts, rules and clusters that the request path reads
//! without locks, and the inputs it is compiled from ([`crate::compile`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use weir_api::istio::{DestinationRuleSpec, GatewaySpec, IstioObject, VirtualServiceSpec};
use weir_api::k8s_openapi::api::core::v1::Service;
use weir_api::k8s_openapi::api::networking::v1::Ingress;
use weir_api::resource::Resource;

use crate::balance::Policy;
use crate::canary::CanaryPolicy;
use crate::endpoint::UpstreamEndpoint;
use crate::matcher::{RequestView, RuleMatch};
use crate::retry::RetryPolicy;
use crate::split::SmoothSplit;

/// `(namespace, name)` of a Service.
pub type ServiceKey = (String, String);

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
    /// Ingresses, for the ingress controller's listener, oldest first (the
    /// first to claim a host and path owns it, as in ingress-nginx).
    pub ingresses: Vec<Ingress>,
}

impl RouteInputs {
    /// Picks the routing kinds out of loaded resources, moving them (a
    /// caller holding borrowed ones passes clones): a thousand-service load
    /// should not hold every spec twice.
    pub fn from_resources(resources: impl IntoIterator<Item = Resource>) -> Self {
        let mut inputs = Self::default();
        for r in resources {
            match r {
                Resource::Gateway(g) => inputs.gateways.push(g),
                Resource::VirtualService(v) => inputs.virtual_services.push(v),
                Resource::DestinationRule(d) => inputs.destination_rules.push(d),
                Resource::Service(s) => inputs.services.push(*s),
                Resource::Ingress(i) => inputs.ingresses.push(*i),
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
    /// `namespace/name` of the VirtualService and the rule's index: the
    /// per-rule counters a copy's answer is kept under (a Rollout's
    /// mirrored step judges the canary by them).
    pub rule: (String, usize),
}

impl Mirror {
    /// The per-rule counters' key of a copy answered by `version`.
    pub fn key(&self, version: &str) -> weir_api::version_stats::VersionKey {
        (
            self.rule.0.clone(),
            self.rule.1.to_string(),
            version.to_owned(),
        )
    }
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
    /// The requests this rule sent here, per version, for the Rollout
    /// that manages the rule.
    pub rule_counters: RuleCounters,
}

/// One rule destination's counters per version: what a Rollout judges its
/// rule by (a header rule sending testers to the canary does not dilute
/// another rule's verdict). Resolved once per endpoint from the gateway's
/// table, which outlives snapshots, so a route change keeps the counts.
#[derive(Debug, Default)]
pub struct RuleCounters {
    /// `namespace/name` of the VirtualService.
    pub virtual_service: String,
    /// The rule's index in `spec.http`.
    pub index: usize,
    /// Per endpoint of the destination's cluster, its version's counters.
    pub by_endpoint:
        Vec<std::sync::OnceLock<std::sync::Arc<weir_api::version_stats::VersionStats>>>,
}

impl RuleCounters {
    /// The table key of `version`'s counters for this rule.
    pub fn key(&self, version: &str) -> weir_api::version_stats::VersionKey {
        (
            self.virtual_service.clone(),
            self.index.to_string(),
            version.to_owned(),
        )
    }
}

/// One compiled http rule.
#[derive(Debug)]
pub struct Rule {
    /// What declared it: `namespace/name` of its VirtualService, or
    /// `ingress namespace/name`.
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
    /// An Ingress canary's header and cookie rules (destination 1 is the
    /// canary); the split decides what they leave.
    pub canary: Option<CanaryPolicy>,
    /// Whose bound on the wait for a response head the rule keeps: an
    /// Istio route's (its timeouts only) or an Ingress's (ingress-nginx's
    /// read timeout).
    pub waits_as: WaitBound,
}

/// How a virtual host's domain is compared with the request's host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Domain {
    /// This host exactly.
    Exact(String),
    /// Any host ending in this (`.example.com` for `*.example.com`).
    Suffix(String),
    /// Every host.
    Any,
}

impl Domain {
    /// A VirtualService host as a domain (`*` and `*.suffix` are wildcards).
    pub fn parse(host: &str) -> Self {
        let host = host.to_ascii_lowercase();
        if host == "*" {
            Domain::Any
        } else if let Some(suffix) = host.strip_prefix('*') {
            Domain::Suffix(suffix.to_owned())
        } else {
            Domain::Exact(host)
        }
    }

    /// Whether a request's host (port stripped) is in this domain.
    pub fn matches(&self, host: &str) -> bool {
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
    pub fn rank(&self) -> (u8, usize) {
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
    virtual_hosts: Vec<VirtualHost>,
    /// Exact domains (lowercase) → index: found by hash, as Envoy does, so
    /// a thousand hosts cost what one does.
    exact: HashMap<String, usize>,
    /// Indexes of the wildcard domains, longest suffix first, then `*`.
    wildcards: Vec<usize>,
}

impl Listener {
    /// Installs the port's virtual hosts (any order: sorted here, most
    /// specific first) and indexes their exact domains.
    pub fn set_virtual_hosts(&mut self, mut hosts: Vec<VirtualHost>) {
        hosts.sort_by_key(|h| h.domain.rank());
        self.exact = hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| match &h.domain {
                Domain::Exact(d) => Some((d.clone(), i)),
                _ => None,
            })
            .collect();
        self.wildcards = hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| !matches!(h.domain, Domain::Exact(_)))
            .map(|(i, _)| i)
            .collect();
        self.virtual_hosts = hosts;
    }

    /// The port's virtual hosts, most specific first.
    pub fn virtual_hosts(&self) -> &[VirtualHost] {
        &self.virtual_hosts
    }

    /// The virtual host for a request's host (port stripped): the exact
    /// domain by hash, else the longest matching wildcard, else `*`.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let exact = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.exact.get(&host.to_ascii_lowercase())
        } else {
            self.exact.get(host)
        };
        if let Some(&i) = exact {
            return self.virtual_hosts.get(i);
        }
        self.wildcards
            .iter()
            .map(|&i| &self.virtual_hosts[i])
            .find(|v| v.domain.matches(host))
    }

    /// The rule for a request: the first matching rule of the most
    /// specific virtual host for `host`; `None` is Envoy's NR.
    #[inline]
    pub fn route(&self, host: &str, request: &RequestView<'_>) -> Option<&Arc<Rule>> {
        self.virtual_host(host)?
            .rules
            .iter()
            .find(|r| r.matcher.matches(request))
    }
}

/// Which listener a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entry {
    /// An Istio Gateway port.
    Gateway(u16),
    /// The ingress controller (port 80, as ingress-nginx's).
    Ingress,
}

impl Entry {
    /// The port a request's `port` match compares with.
    pub fn port(self) -> u16 {
        match self {
            Entry::Gateway(port) => port,
            Entry::Ingress => 80,
        }
    }
}

/// Everything the request path needs, immutable once built.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Routes by Gateway port.
    pub listeners: HashMap<u16, Listener>,
    /// The ingress controller's routes, from Ingresses.
    pub ingress: Listener,
}

impl Snapshot {
    /// The routes of the listener a request arrived on.
    pub fn listener(&self, entry: Entry) -> Option<&Listener> {
        match entry {
            Entry::Gateway(port) => self.listeners.get(&port),
            Entry::Ingress => Some(&self.ingress),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_are_found_as_envoy_finds_them() {
        let host = |d: &str| VirtualHost {
            domain: Domain::parse(d),
            rules: Vec::new(),
        };
        let mut listener = Listener::default();
        listener.set_virtual_hosts(vec![
            host("*"),
            host("*.example.com"),
            host("shop.example.com"),
            host("*.a.example.com"),
        ]);
        let cases = [
            ("shop.example.com", Domain::parse("shop.example.com")),
            ("SHOP.Example.com", Domain::parse("shop.example.com")),
            ("x.a.example.com", Domain::parse("*.a.example.com")),
            ("y.example.com", Domain::parse("*.example.com")),
            ("example.com", Domain::Any),
            ("other", Domain::Any),
        ];
        for (request_host, want) in cases {
            let got = listener
                .virtual_host(request_host)
                .map(|v| v.domain.clone());
            assert_eq!(got, Some(want), "{request_host}");
        }
        let mut exact_only = Listener::default();
        exact_only.set_virtual_hosts(vec![host("shop.example.com")]);
        assert!(exact_only.virtual_host("other.example.com").is_none());
    }
}

/// Whose bound on the wait for a response head a rule keeps, when nothing
/// tighter (a route or per-try timeout) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitBound {
    /// The route's own timeouts only. (Envoy's stream idle timeout is not
    /// kept per request: the connection's idle timeout bounds the wait.)
    #[default]
    Envoy,
    /// ingress-nginx's `proxy-read-timeout`: 504, flag `UT`.
    IngressNginx,
}
