//! Istio's networking resources (Gateway, VirtualService, DestinationRule),
//! typed field for field after Istio's API reference for every field weir
//! implements. The three served apiVersions (v1alpha3, v1beta1, v1) share
//! one schema, so they share these types.
//!
//! Fields Istio has and weir does not implement are left out on purpose:
//! the loader finds them as unknown to these types and reports them by name
//! (see `fields.rs`), so none is silently ignored.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// An Istio object: the Kubernetes envelope around a typed `spec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioObject<S> {
    /// `networking.istio.io/v1alpha3`, `v1beta1` or `v1`, as written.
    pub api_version: String,
    /// The kind, as written.
    pub kind: String,
    /// Name, namespace, labels, annotations.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The resource's specification.
    pub spec: S,
}

/// `Gateway.spec`: which ports the ingress gateway listens on, for which hosts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Labels of the gateway workloads this applies to; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
    /// The listeners.
    #[serde(default)]
    pub servers: Vec<Server>,
}

/// One listener of a [`GatewaySpec`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    /// The port to listen on and its protocol.
    pub port: Port,
    /// Hosts exposed here, `[namespace/]dnsName`; `*` for any.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The address to bind (on a cluster, of the gateway pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// An optional name for the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A gateway server's port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// The port number.
    pub number: u32,
    /// `HTTP`, `HTTP2`, `HTTPS`, `GRPC`, `TLS`, `TCP`, ...
    pub protocol: String,
    /// A label for the port.
    #[serde(default)]
    pub name: String,
    /// Istio accepts and ignores it on Gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

/// `VirtualService.spec`: routing rules for a set of hosts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    /// Hosts the rules apply to.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways the rules apply to; absent = the reserved `mesh` (sidecars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Ordered HTTP rules; the first that matches is used.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
}

/// One HTTP rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// The rule's name, for logs and `weir route --rule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Match conditions, OR-ed; absent = match everything. A `null` block
    /// reads as an empty one (it matches everything), as in Istio.
    #[serde(
        default,
        rename = "match",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "null_blocks_as_empty"
    )]
    pub matches: Option<Vec<HttpMatchRequest>>,
    /// Weighted destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Vec<HttpRouteDestination>>,
    /// Kept only to report Istio's own conflicts; weir does not implement it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<serde_json::Value>,
    /// Kept only to report Istio's own conflicts; weir does not implement it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<serde_json::Value>,
    /// Request timeout, a duration such as `10s`; absent = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Retry policy; absent = Istio's default (2 attempts on connect failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Fault injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    /// Traffic mirrored to this destination, fire and forget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Several mirror destinations, each with its percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrors: Option<Vec<HttpMirrorPolicy>>,
    /// Share of traffic mirrored to `mirror`; absent = 100 %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    /// Deprecated integer form of `mirrorPercentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<u32>,
    /// Header manipulation for the whole rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// Conditions on a request, AND-ed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// A name for the match, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// The HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// The Host / :authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Request headers (lowercase names); an empty match tests presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, StringMatch>>,
    /// Headers that must not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_headers: Option<BTreeMap<String, StringMatch>>,
    /// The port the request arrived on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Query parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_params: Option<BTreeMap<String, StringMatch>>,
    /// Case-insensitive `uri` exact/prefix matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_uri_case: Option<bool>,
    /// Gateways this match applies to (overrides the VirtualService's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
}

/// One of exact, prefix or regex (RE2 syntax); all absent = presence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    /// The whole value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The whole value matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A weighted destination of a rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteDestination {
    /// Where to send the request.
    pub destination: Destination,
    /// Relative weight; absent = 0 (a sole destination gets everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Header manipulation applied only when this destination is picked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// A service, optionally narrowed to a subset and port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// The Service name (short or FQDN).
    pub host: String,
    /// A subset defined by the host's DestinationRule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// The Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// A Service port by number.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSelector {
    /// The port number.
    pub number: u32,
}

/// Request and response header operations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Headers {
    /// Applied to the request before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// Applied to the response before returning it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// Set, add and remove headers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderOperations {
    /// Overwrite these headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<BTreeMap<String, String>>,
    /// Append these headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<BTreeMap<String, String>>,
    /// Remove these headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Vec<String>>,
}

/// Retry policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    /// Retries allowed; 0 disables retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i64>,
    /// Timeout per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    /// Conditions, comma-separated Envoy policies and/or status codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
    /// Whether retries avoid hosts already tried (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval between retries (default 25ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

/// Fault injection: delay and/or abort a share of requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpFaultInjection {
    /// Delay before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// Answer with an error instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// A fixed delay for a share of requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    /// The delay, a duration such as `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_delay: Option<String>,
    /// Share of requests delayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
}

/// An error answer for a share of requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    /// The HTTP status to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i64>,
    /// Share of requests aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
    /// Integer percentage, removed from the API in Istio 1.5 but written by
    /// v1alpha3 manifests of the Istio 1.0 era; accepted with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
}

/// A percentage, 0 to 100, fractions allowed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Percent {
    /// The percentage.
    #[serde(default)]
    pub value: f64,
}

/// One mirror target of `mirrors`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMirrorPolicy {
    /// Where the copies go.
    pub destination: Destination,
    /// Share of requests copied; absent = 100 %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// `DestinationRule.spec`: subsets and policies of one service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    /// The Service this applies to.
    #[serde(default)]
    pub host: String,
    /// Policy for every subset unless a subset overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of the Service's endpoints, by labels.
    #[serde(default)]
    pub subsets: Vec<Subset>,
}

/// A named group of endpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    /// The name routes refer to.
    pub name: String,
    /// Labels an endpoint must carry, on top of the Service's selector.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Overrides the rule-level policy for this subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// Traffic policy; weir implements load balancing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// How an endpoint is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// TLS to the upstream: only a cluster's sidecars use it (weir's
    /// embedded runtime warns and ignores it), typed so that Istio's rules
    /// for it are checked before it reaches a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// Upstream TLS settings, as far as Istio's validation reads them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsSettings {
    /// DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Client certificate file (MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Client key file (MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA bundle file verifying the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// A Secret holding the above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Names the server certificate must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_alt_names: Option<Vec<String>>,
    /// SNI sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Skip verifying the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// Certificate revocation list file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
}

/// A simple policy or consistent hashing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    /// `ROUND_ROBIN`, `LEAST_REQUEST`, `LEAST_CONN`, `RANDOM`, `PASSTHROUGH`, `UNSPECIFIED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<String>,
    /// Hash a request attribute to an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
}

/// Consistent hashing: which attribute, and which algorithm.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHashLb {
    /// Hash this request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    /// Hash this cookie, generating it when `ttl` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    /// Hash the client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    /// Hash this query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    /// Ring hash (the default algorithm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    /// Maglev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<Maglev>,
    /// Deprecated top-level form of `ringHash.minimumRingSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

/// The cookie hashed for consistent hashing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpCookie {
    /// Cookie name.
    #[serde(default)]
    pub name: String,
    /// Cookie path when generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Generate the cookie with this lifetime when absent; `0s` = session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// Ring hash parameters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingHash {
    /// Minimum ring size (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

/// Maglev parameters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Maglev {
    /// Table size, a prime (default 65537).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u64>,
}

/// Reads a `match` list whose `null` entries stand for empty blocks.
fn null_blocks_as_empty<'de, D>(d: D) -> Result<Option<Vec<HttpMatchRequest>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let blocks: Option<Vec<Option<HttpMatchRequest>>> = Option::deserialize(d)?;
    Ok(blocks.map(|b| b.into_iter().map(Option::unwrap_or_default).collect()))
}

/// The Service a destination `host` names, as `(namespace, name)`, by
/// Istio's rule: `name.ns.svc.cluster.local` names `name` in `ns`; any other
/// host is read as a short name in the referring object's namespace, so a
/// host with dots that is not such an FQDN (`my-app.prod`) names no Service
/// (Service names have no dots) and is reported and answered as missing, as
/// Istio does.
pub fn service_for_host(host: &str, namespace: &str) -> (String, String) {
    match host
        .strip_suffix(".svc.cluster.local")
        .and_then(|rest| rest.rsplit_once('.'))
    {
        Some((name, ns)) if !name.is_empty() && !ns.is_empty() => (ns.to_owned(), name.to_owned()),
        _ => (namespace.to_owned(), host.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_hosts_resolve_short_and_qualified_names() {
        assert_eq!(
            service_for_host("my-app", "default"),
            ("default".into(), "my-app".into())
        );
        // Not an FQDN: a (dotted) short name in the referring namespace,
        // which no Service can have, as in Istio.
        assert_eq!(
            service_for_host("my-app.prod", "default"),
            ("default".into(), "my-app.prod".into())
        );
        assert_eq!(
            service_for_host("my-app.prod.svc", "default"),
            ("default".into(), "my-app.prod.svc".into())
        );
        assert_eq!(
            service_for_host("my-app.prod.svc.cluster.local", "default"),
            ("prod".into(), "my-app".into())
        );
    }
}

/// `WorkloadEntry.spec`: a workload outside Kubernetes (here: a static
/// endpoint) that Services select by labels, as Istio lets them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntrySpec {
    /// The endpoint's IP address.
    #[serde(default)]
    pub address: String,
    /// Service port name → this endpoint's port.
    #[serde(default)]
    pub ports: BTreeMap<String, u32>,
    /// Labels Services and subsets select on.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The network the endpoint is in: only a multi-network cluster uses it
    /// (weir warns and ignores it), typed so validation can read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}
