//! Compiling Ingresses into the ingress controller's [`Listener`], as
//! ingress-nginx builds its server blocks: one virtual host per Ingress
//! host, a rule per path (exact paths first, then longest first), the first
//! Ingress to claim a host and path (the oldest: the caller's order) owning it, and a canary Ingress for
//! the same host and path merged into that rule as its second destination,
//! chosen by header, cookie, then weight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use weir_api::ingress::{BackendPort, Canary, IngressRoute, PathType, canary, routes};
use weir_api::istio::{
    Destination, HttpMatchRequest, HttpRoute, HttpRouteDestination, IstioObject, PortSelector,
    StringMatch, VirtualServiceSpec,
};
use weir_api::k8s_openapi::api::networking::v1::Ingress;

use super::{Compiler, ConfigError, name_of, ns_of};
use crate::canary::CanaryPolicy;
use crate::endpoint::UpstreamEndpoint;
use crate::snapshot::{
    Cluster, Domain, Endpoint, Listener, RouteInputs, ServiceKey, VirtualHost, WaitBound,
};

/// A host and path claimed by a main Ingress, with the canary merged in.
struct Claimed<'a> {
    ingress: &'a Ingress,
    /// The route's position among its Ingress's routes (a stable key for
    /// the split counter).
    position: usize,
    route: IngressRoute,
    canary: Option<(&'a Ingress, IngressRoute, Canary)>,
}

/// The Istio string match for an Ingress path.
pub(crate) fn path_match(path: &str, path_type: PathType) -> StringMatch {
    match path_type {
        PathType::Exact => StringMatch {
            exact: Some(path.to_owned()),
            ..StringMatch::default()
        },
        PathType::Prefix if path.trim_end_matches('/').is_empty() => StringMatch {
            prefix: Some("/".to_owned()),
            ..StringMatch::default()
        },
        PathType::Prefix => StringMatch {
            regex: Some(format!(
                "{}(/.*)?",
                regex::escape(path.trim_end_matches('/'))
            )),
            ..StringMatch::default()
        },
        PathType::ImplementationSpecific => StringMatch {
            prefix: Some(path.to_owned()),
            ..StringMatch::default()
        },
    }
}

/// nginx's order within a host: exact locations, then the longest prefix.
fn precedence(route: &IngressRoute) -> (bool, std::cmp::Reverse<usize>) {
    (
        route.path_type != PathType::Exact,
        std::cmp::Reverse(route.path.len()),
    )
}

impl Compiler {
    /// The ingress controller's listener: every Ingress's routes, the
    /// canaries merged into the routes they share a host and path with.
    pub(super) fn ingress_listener(
        &mut self,
        inputs: &RouteInputs,
        endpoints: &HashMap<ServiceKey, Vec<Endpoint>>,
        clusters: &mut HashMap<String, Arc<Cluster>>,
        live: &mut HashMap<(SocketAddr, String), Arc<UpstreamEndpoint>>,
    ) -> Result<Listener, ConfigError> {
        // Each Ingress's canary annotations, read once.
        let read: Vec<(&Ingress, Option<Canary>)> = inputs
            .ingresses
            .iter()
            .map(|ing| {
                let c = ing
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| canary(a).ok().flatten());
                (ing, c)
            })
            .collect();
        let mut claimed: Vec<Claimed<'_>> = Vec::new();
        let mut owner: HashMap<(Option<String>, String), usize> = HashMap::new();
        for (ing, _) in read.iter().filter(|(_, c)| c.is_none()) {
            for (position, route) in routes(ing).into_iter().enumerate() {
                let key = (route.host.clone(), route.path.clone());
                if owner.contains_key(&key) {
                    continue;
                }
                owner.insert(key, claimed.len());
                claimed.push(Claimed {
                    ingress: ing,
                    position,
                    route,
                    canary: None,
                });
            }
        }
        for (ing, c) in &read {
            let Some(c) = c else { continue };
            for route in routes(ing) {
                if let Some(&i) = owner.get(&(route.host.clone(), route.path.clone()))
                    && claimed[i].canary.is_none()
                {
                    claimed[i].canary = Some((ing, route, c.clone()));
                }
            }
        }
        claimed.sort_by_key(|c| (c.route.host.clone(), precedence(&c.route)));
        let mut hosts: Vec<VirtualHost> = Vec::new();
        let mut host_index: HashMap<Domain, usize> = HashMap::new();
        for c in &claimed {
            let ns = ns_of(&c.ingress.metadata);
            let name = format!("ingress {ns}/{}", name_of(&c.ingress.metadata));
            let mut route = HttpRoute {
                matches: Some(vec![HttpMatchRequest {
                    uri: Some(path_match(&c.route.path, c.route.path_type)),
                    ..HttpMatchRequest::default()
                }]),
                ..HttpRoute::default()
            };
            let main = destination(&c.route, ns, inputs);
            let policy = match &c.canary {
                None => {
                    route.route = Some(vec![main]);
                    None
                }
                Some((canary_ing, canary_route, canary)) => {
                    let canary_ns = ns_of(&canary_ing.metadata);
                    let to_canary = canary.weight.min(canary.total);
                    route.route = Some(vec![
                        HttpRouteDestination {
                            weight: Some(i64::from(canary.total - to_canary)),
                            ..main
                        },
                        HttpRouteDestination {
                            weight: Some(i64::from(to_canary)),
                            ..destination(canary_route, canary_ns, inputs)
                        },
                    ]);
                    CanaryPolicy::compile(canary)
                }
            };
            let vs = IstioObject {
                api_version: String::new(),
                kind: "Ingress".to_owned(),
                metadata: c.ingress.metadata.clone(),
                spec: VirtualServiceSpec::default(),
            };
            let mut rule = self.rule(
                &vs, &name, c.position, &route, inputs, endpoints, clusters, live,
            )?;
            rule.canary = policy;
            rule.waits_as = WaitBound::IngressNginx;
            let domain = Domain::parse(c.route.host.as_deref().unwrap_or("*"));
            let i = *host_index.entry(domain.clone()).or_insert_with(|| {
                hosts.push(VirtualHost {
                    domain,
                    rules: Vec::new(),
                });
                hosts.len() - 1
            });
            hosts[i].rules.push(Arc::new(rule));
        }
        let mut listener = Listener::default();
        listener.set_virtual_hosts(hosts);
        Ok(listener)
    }
}

/// The Istio destination for an Ingress backend: its Service, and the
/// port by number (a named port looked up in the Service).
fn destination(
    route: &IngressRoute,
    namespace: &str,
    inputs: &RouteInputs,
) -> HttpRouteDestination {
    let number = match &route.port {
        BackendPort::Number(n) => u32::try_from(*n).ok(),
        BackendPort::Name(port_name) => inputs
            .services
            .iter()
            .find(|s| ns_of(&s.metadata) == namespace && name_of(&s.metadata) == route.service)
            .and_then(|s| s.spec.as_ref()?.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(port_name)))
            .and_then(|p| u32::try_from(p.port).ok()),
    };
    HttpRouteDestination {
        destination: Destination {
            host: format!("{}.{namespace}.svc.cluster.local", route.service),
            subset: None,
            // A named port the Service lacks: no such port, 503 NC.
            port: Some(PortSelector {
                number: number.unwrap_or(0),
            }),
        },
        weight: None,
        headers: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::HeaderMap;

    use super::*;
    use crate::matcher::RequestView;
    use crate::snapshot::{Rule, Snapshot};

    const SERVICES: [&str; 8] = [
        "svc-root",
        "svc-api",
        "svc-exact",
        "svc-static",
        "svc-other",
        "svc-any",
        "svc-canary",
        "svc-lone",
    ];

    fn ingress(
        name: &str,
        host: Option<&str>,
        annotations: &str,
        paths: &[(&str, &str, &str)],
    ) -> String {
        let paths: String = paths
            .iter()
            .map(|(path, kind, service)| {
                format!(
                    "      - path: {path}\n        pathType: {kind}\n        backend:\n          service:\n            name: {service}\n            port:\n              number: 80\n"
                )
            })
            .collect();
        let host = host.map_or(String::new(), |h| format!("    host: {h}\n"));
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n  rules:\n  - http:\n      paths:\n{paths}{host}---\n"
        )
    }

    fn snapshot() -> Snapshot {
        let mut text: String = SERVICES
            .iter()
            .map(|s| {
                format!(
                    "apiVersion: v1\nkind: Service\nmetadata:\n  name: {s}\nspec:\n  selector: {{app: {s}}}\n  ports:\n  - port: 80\n    targetPort: 8080\n---\n"
                )
            })
            .collect();
        text += &ingress(
            "a-main",
            Some("shop.com"),
            "",
            &[
                ("/", "Prefix", "svc-root"),
                ("/api", "Prefix", "svc-api"),
                ("/api/v2", "Exact", "svc-exact"),
                ("/static", "ImplementationSpecific", "svc-static"),
            ],
        );
        // Claims a host and path a-main owns: a-main is first.
        text += &ingress(
            "b-other",
            Some("shop.com"),
            "",
            &[("/api", "Prefix", "svc-other")],
        );
        text += &ingress("c-any", None, "", &[("/", "Prefix", "svc-any")]);
        text += &ingress(
            "d-canary",
            Some("shop.com"),
            "nginx.ingress.kubernetes.io/canary: \"true\", nginx.ingress.kubernetes.io/canary-weight: \"25\", nginx.ingress.kubernetes.io/canary-by-header: x-canary",
            &[("/api", "Prefix", "svc-canary")],
        );
        // A canary with no main Ingress for its host and path: ignored.
        text += &ingress(
            "e-lone",
            Some("nope.com"),
            "nginx.ingress.kubernetes.io/canary: \"true\", nginx.ingress.kubernetes.io/canary-weight: \"100\"",
            &[("/x", "Prefix", "svc-lone")],
        );
        let manifests = weir_api::load::load_str(std::path::Path::new("ingress.yaml"), &text)
            .unwrap_or_else(|e| panic!("{e}"));
        let inputs = RouteInputs::from_resources(manifests.resources().cloned());
        let endpoints: HashMap<ServiceKey, Vec<Endpoint>> = SERVICES
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    ("default".to_owned(), (*s).to_owned()),
                    vec![Endpoint {
                        ip: std::net::IpAddr::from([127, 0, 0, 10 + i as u8]),
                        name: format!("{s}-pod"),
                        workload: (*s).to_owned(),
                        labels: BTreeMap::from([("app".to_owned(), (*s).to_owned())]),
                        ports: BTreeMap::new(),
                    }],
                )
            })
            .collect();
        Compiler::default().compile(&inputs, &endpoints).unwrap()
    }

    fn routed(snapshot: &Snapshot, host: &str, path: &str) -> Option<Arc<Rule>> {
        let headers = HeaderMap::new();
        let view = RequestView {
            path,
            query: None,
            method: "GET",
            scheme: "http",
            authority: host,
            headers: &headers,
            port: 80,
            gateway: "",
        };
        snapshot.ingress.route(host, &view).cloned()
    }

    fn service_of(rule: &Rule, i: usize) -> String {
        rule.destinations[i]
            .cluster
            .as_ref()
            .map(|c| c.service.1.clone())
            .unwrap_or_default()
    }

    #[test]
    fn paths_and_hosts_route_as_ingress_nginx_routes_them() {
        let snapshot = snapshot();
        let rows = [
            ("shop.com", "/api/v2", Some("svc-exact")),
            ("shop.com", "/api/v2/x", Some("svc-api")),
            ("shop.com", "/api", Some("svc-api")),
            ("shop.com", "/api/", Some("svc-api")),
            ("shop.com", "/apix", Some("svc-root")),
            ("shop.com", "/staticfoo", Some("svc-static")),
            ("SHOP.com", "/", Some("svc-root")),
            ("other.com", "/anything", Some("svc-any")),
            ("nope.com", "/x", Some("svc-any")),
        ];
        for (host, path, want) in rows {
            let rule = routed(&snapshot, host, path);
            let got = rule.as_ref().map(|r| service_of(r, 0));
            assert_eq!(got.as_deref(), want, "{host}{path}");
            // ingress-nginx's bound on the wait for an answer, not Envoy's.
            assert_eq!(
                rule.map(|r| r.waits_as),
                want.map(|_| WaitBound::IngressNginx),
                "{host}{path}"
            );
        }
    }

    #[test]
    fn a_canary_joins_the_rule_it_shares_a_host_and_path_with() {
        let snapshot = snapshot();
        let rule = routed(&snapshot, "shop.com", "/api").unwrap();
        assert_eq!(rule.destinations.len(), 2);
        assert_eq!(service_of(&rule, 1), "svc-canary");
        assert_eq!(
            rule.destinations
                .iter()
                .map(|d| d.weight)
                .collect::<Vec<_>>(),
            vec![75, 25]
        );
        assert!(rule.canary.is_some());
        assert_eq!(rule.split.period(), 4, "25 of 100: one in every four");
        // Other paths of the host are not the canary's.
        let root = routed(&snapshot, "shop.com", "/").unwrap();
        assert_eq!(root.destinations.len(), 1);
        assert!(root.canary.is_none());
    }
}
