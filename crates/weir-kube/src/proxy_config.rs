//! Whether one ingress gateway replica serves a VirtualService rule's new
//! weights, read from its own Envoy route configuration (the admin
//! `/config_dump`, as `istioctl proxy-config routes` reads it): what the
//! proxy acknowledged, not what istiod meant to send.
//!
//! How Istio translates a rule, from its `route.go`: each rule becomes one
//! Envoy route per match block (one when it has none), in order, and the
//! rules after the first catch-all are dropped; every route carries the
//! VirtualService as `metadata.filter_metadata.istio.config`
//! (`/apis/networking.istio.io/VERSION/namespaces/NS/virtual-service/NAME`);
//! a destination is the cluster `outbound|PORT|SUBSET|FQDN`; weight-0
//! destinations are left out when the rule has others, and a rule left with
//! one destination routes to that cluster alone (`route.cluster`, no
//! weights). Where the dump cannot be read that way (a rule bound to some
//! gateways or ports only), the answer is [`ProxyView::Unlocated`] and
//! `weir route` samples instead.

use serde_json::Value;
use weir_api::istio::{HttpMatchRequest, HttpRoute};
use weir_api::resource::ObjectRef;

/// The Envoy admin port of an Istio proxy (listening on the pod's loopback
/// only: reached through the API server's port-forward).
pub const ENVOY_ADMIN_PORT: u16 = 15000;

/// The admin path of the route configurations Envoy holds from xDS.
pub const ROUTES_DUMP_PATH: &str = "/config_dump?resource=dynamic_route_configs";

/// What one replica serves for the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyView {
    /// Every route of the rule carries the new weights.
    Serves,
    /// A route of the rule carries other weights (shown as Envoy has them).
    Stale(String),
    /// The rule's routes cannot be told apart in the dump; why.
    Unlocated(String),
}

/// One destination as Envoy routes to it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ClusterWeight {
    subset: String,
    host: String,
    weight: u32,
}

/// What the rule's Envoy routes should carry: Istio's translation of its
/// destinations with the new weights (`after`, in the rule's order).
fn expected(rule: &HttpRoute, after: &[(String, u32)]) -> Vec<ClusterWeight> {
    let destinations = rule.route.as_deref().unwrap_or_default();
    let weights = after.iter().map(|(_, w)| *w);
    let mut out: Vec<ClusterWeight> = destinations
        .iter()
        .zip(weights)
        .filter(|(_, w)| *w > 0 || destinations.len() == 1)
        .map(|(d, w)| ClusterWeight {
            subset: d.destination.subset.clone().unwrap_or_default(),
            host: d.destination.host.clone(),
            weight: w,
        })
        .collect();
    if out.len() == 1 {
        out[0].weight = 100;
    }
    out.sort();
    out
}

/// The destinations of one Envoy route: its weighted clusters, or its one
/// cluster at 100.
fn served(route: &Value) -> Vec<ClusterWeight> {
    let action = &route["route"];
    let named = |name: &str, weight: u32| {
        let mut parts = name.split('|');
        let (_, _, subset, host) = (parts.next(), parts.next(), parts.next(), parts.next());
        ClusterWeight {
            subset: subset.unwrap_or_default().to_owned(),
            host: host.unwrap_or(name).to_owned(),
            weight,
        }
    };
    let mut out: Vec<ClusterWeight> = match action["cluster"].as_str() {
        Some(name) => vec![named(name, 100)],
        None => action["weighted_clusters"]["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let weight = c["weight"]
                    .as_u64()
                    .or_else(|| c["weight"].as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0);
                named(
                    c["name"].as_str().unwrap_or_default(),
                    u32::try_from(weight).unwrap_or(u32::MAX),
                )
            })
            .collect(),
    };
    out.sort();
    out
}

/// A short host names the Service in the VirtualService's namespace; Envoy
/// has its FQDN.
fn same_host(rule_host: &str, envoy_host: &str) -> bool {
    envoy_host == rule_host
        || envoy_host
            .strip_prefix(rule_host)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn carries(expected: &[ClusterWeight], served: &[ClusterWeight]) -> bool {
    expected.len() == served.len()
        && expected.iter().all(|e| {
            served.iter().any(|s| {
                s.subset == e.subset && s.weight == e.weight && same_host(&e.host, &s.host)
            })
        })
}

fn shown(served: &[ClusterWeight]) -> String {
    served
        .iter()
        .map(|c| {
            let name = if c.subset.is_empty() {
                &c.host
            } else {
                &c.subset
            };
            format!("{name}={}", c.weight)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A match block Istio turns into a route that takes every request (and
/// drops the rules after it): no condition but a `/` prefix or an
/// everything regex.
fn catch_all(block: &HttpMatchRequest) -> bool {
    let uri_takes_all = block.uri.as_ref().is_none_or(|u| {
        u.exact.is_none()
            && (u.prefix.as_deref() == Some("/")
                || matches!(u.regex.as_deref(), Some("*" | ".*"))
                || (u.prefix.is_none() && u.regex.is_none()))
    });
    uri_takes_all
        && block.scheme.is_none()
        && block.method.is_none()
        && block.authority.is_none()
        && block.headers.as_ref().is_none_or(|h| h.is_empty())
        && block.without_headers.as_ref().is_none_or(|h| h.is_empty())
        && block.query_params.as_ref().is_none_or(|q| q.is_empty())
        && block.port.is_none()
        && block.gateways.as_ref().is_none_or(|g| g.is_empty())
}

/// How many Envoy routes each rule becomes, up to the first catch-all.
fn routes_per_rule(rules: &[HttpRoute]) -> Vec<usize> {
    let mut out = Vec::new();
    for rule in rules {
        let blocks = rule.matches.as_deref().unwrap_or_default();
        if blocks.is_empty() {
            out.push(1);
            break;
        }
        match blocks.iter().position(catch_all) {
            Some(i) => {
                out.push(i + 1);
                break;
            }
            None => out.push(blocks.len()),
        }
    }
    out
}

/// Every route configuration in a config dump, whatever its wrapping
/// (`?resource=` lists them bare; the full dump nests them).
fn route_configs<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) if map.contains_key("virtual_hosts") => out.push(value),
        Value::Object(map) => map.values().for_each(|v| route_configs(v, out)),
        Value::Array(items) => items.iter().for_each(|v| route_configs(v, out)),
        _ => {}
    }
}

/// Whether the replica whose route configuration is `dump` serves the new
/// weights `after` on rule `rule_index` of VirtualService `vs` (`rules`:
/// its `spec.http`).
pub fn rule_view(
    dump: &Value,
    vs: &ObjectRef,
    rules: &[HttpRoute],
    rule_index: usize,
    after: &[(String, u32)],
) -> ProxyView {
    let Some(rule) = rules.get(rule_index) else {
        return ProxyView::Unlocated(format!("{vs} has no rule {rule_index}"));
    };
    let per_rule = routes_per_rule(rules);
    let Some(&own) = per_rule.get(rule_index) else {
        return ProxyView::Unlocated(format!(
            "rule {rule_index} follows a rule that takes every request: Istio gives it no route"
        ));
    };
    let first: usize = per_rule[..rule_index].iter().sum();
    let total: usize = per_rule.iter().sum();
    let want = expected(rule, after);
    let tag = format!("/namespaces/{}/virtual-service/{}", vs.namespace, vs.name);
    let mut configs = Vec::new();
    route_configs(dump, &mut configs);
    let mut located = 0;
    for config in configs {
        for host in config["virtual_hosts"].as_array().into_iter().flatten() {
            let ours: Vec<&Value> = host["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| {
                    r["metadata"]["filter_metadata"]["istio"]["config"]
                        .as_str()
                        .is_some_and(|c| c.ends_with(&tag))
                })
                .collect();
            if ours.is_empty() {
                continue;
            }
            if ours.len() != total {
                return ProxyView::Unlocated(format!(
                    "virtual host {} has {} routes of {vs} where its rules make {total} (rules bound to some gateways or ports only)",
                    host["name"].as_str().unwrap_or("?"),
                    ours.len()
                ));
            }
            for route in &ours[first..first + own] {
                let has = served(route);
                if !carries(&want, &has) {
                    return ProxyView::Stale(shown(&has));
                }
            }
            located += 1;
        }
    }
    if located == 0 {
        ProxyView::Unlocated(format!("no route of {vs} in the proxy's configuration"))
    } else {
        ProxyView::Serves
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_api::resource::Kind;

    use super::*;

    fn vs() -> ObjectRef {
        ObjectRef {
            kind: Kind::VirtualService,
            namespace: "default".into(),
            name: "my-app".into(),
        }
    }

    fn rules(http: Value) -> Vec<HttpRoute> {
        serde_json::from_value(http).unwrap()
    }

    const TAG: &str = "/apis/networking.istio.io/v1/namespaces/default/virtual-service/my-app";

    fn weighted(pairs: &[(&str, u32)]) -> Value {
        let clusters: Vec<Value> = pairs
            .iter()
            .map(|(subset, w)| json!({"name": format!("outbound|80|{subset}|my-app.default.svc.cluster.local"), "weight": w}))
            .collect();
        json!({"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": clusters}}, "metadata": {"filter_metadata": {"istio": {"config": TAG}}}})
    }

    fn single(subset: &str) -> Value {
        json!({"match": {"prefix": "/"}, "route": {"cluster": format!("outbound|80|{subset}|my-app.default.svc.cluster.local")}, "metadata": {"filter_metadata": {"istio": {"config": TAG}}}})
    }

    fn other_vs() -> Value {
        json!({"match": {"prefix": "/"}, "route": {"cluster": "outbound|80||other.default.svc.cluster.local"},
               "metadata": {"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/default/virtual-service/other"}}}})
    }

    /// A dump as `?resource=dynamic_route_configs` returns it.
    fn dump(hosts: Value) -> Value {
        json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump.DynamicRouteConfig",
            "version_info": "2026-12-02T10:00:00Z/7",
            "route_config": {"name": "http.8080", "virtual_hosts": hosts}}]})
    }

    #[test]
    fn a_replica_serves_the_rule_when_each_of_its_routes_carries_the_new_weights() {
        let canary = rules(json!([{"route": [
            {"destination": {"host": "my-app", "subset": "v1"}, "weight": 90},
            {"destination": {"host": "my-app", "subset": "v2"}, "weight": 10}]}]));
        let headed = rules(json!([
            {"match": [{"headers": {"x-canary": {"exact": "1"}}}, {"uri": {"prefix": "/beta"}}],
             "route": [{"destination": {"host": "my-app", "subset": "v2"}}]},
            {"route": [{"destination": {"host": "my-app", "subset": "v1"}, "weight": 50},
                       {"destination": {"host": "my-app.default.svc.cluster.local", "subset": "v2"}, "weight": 50}]}]));
        let after = |pairs: &[(&str, u32)]| -> Vec<(String, u32)> {
            pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
        };
        let host =
            |routes: Vec<Value>| json!([{"name": "*:80", "domains": ["*"], "routes": routes}]);
        /// Name, the rules, the rule changed, its new weights, the dump, the view.
        type Case<'a> = (
            &'a str,
            &'a [HttpRoute],
            usize,
            Vec<(String, u32)>,
            Value,
            ProxyView,
        );
        let cases: Vec<Case> = vec![
            ("new weights", &canary, 0, after(&[("v1", 80), ("v2", 20)]),
             dump(host(vec![weighted(&[("v1", 80), ("v2", 20)])])), ProxyView::Serves),
            ("old weights", &canary, 0, after(&[("v1", 80), ("v2", 20)]),
             dump(host(vec![weighted(&[("v1", 90), ("v2", 10)])])), ProxyView::Stale("v1=90 v2=10".into())),
            // Istio leaves weight 0 out and routes to the one left alone.
            ("all to v2", &canary, 0, after(&[("v1", 0), ("v2", 100)]),
             dump(host(vec![single("v2")])), ProxyView::Serves),
            ("all to v2, not yet", &canary, 0, after(&[("v1", 0), ("v2", 100)]),
             dump(host(vec![weighted(&[("v1", 90), ("v2", 10)])])), ProxyView::Stale("v1=90 v2=10".into())),
            // Other VirtualServices' routes in the same virtual host are not ours.
            ("shared host", &canary, 0, after(&[("v1", 80), ("v2", 20)]),
             dump(host(vec![other_vs(), weighted(&[("v1", 80), ("v2", 20)])])), ProxyView::Serves),
            // Rule 1 comes after rule 0's two match blocks; an FQDN host matches.
            ("second rule", &headed, 1, after(&[("v1", 0), ("v2", 100)]),
             dump(host(vec![single("v2"), single("v2"), single("v2")])), ProxyView::Serves),
            ("second rule, not yet", &headed, 1, after(&[("v1", 0), ("v2", 100)]),
             dump(host(vec![single("v2"), single("v2"), weighted(&[("v1", 50), ("v2", 50)])])),
             ProxyView::Stale("v1=50 v2=50".into())),
            // Every virtual host of the VirtualService (one per host) must serve it.
            ("two hosts, one stale", &canary, 0, after(&[("v1", 80), ("v2", 20)]),
             dump(json!([{"name": "a:80", "routes": [weighted(&[("v1", 80), ("v2", 20)])]},
                         {"name": "b:80", "routes": [weighted(&[("v1", 90), ("v2", 10)])]}])),
             ProxyView::Stale("v1=90 v2=10".into())),
            ("not pushed at all", &canary, 0, after(&[("v1", 80), ("v2", 20)]),
             dump(host(vec![other_vs()])),
             ProxyView::Unlocated("no route of virtualservice.networking.istio.io/my-app in the proxy's configuration".into())),
            ("a rule bound to another gateway", &headed, 1, after(&[("v1", 0), ("v2", 100)]),
             dump(host(vec![single("v2"), single("v2")])),
             ProxyView::Unlocated("virtual host *:80 has 2 routes of virtualservice.networking.istio.io/my-app where its rules make 3 (rules bound to some gateways or ports only)".into())),
        ];
        for (name, rules, index, after, dump, expected) in cases {
            assert_eq!(
                rule_view(&dump, &vs(), rules, index, &after),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn rules_become_one_route_per_match_up_to_the_first_catch_all() {
        let cases = [
            (json!([{"route": []}]), vec![1]),
            (
                json!([{"match": [{"uri": {"prefix": "/a"}}, {"uri": {"exact": "/b"}}]}, {}]),
                vec![2, 1],
            ),
            (
                json!([{"match": [{"uri": {"prefix": "/"}}, {"uri": {"prefix": "/b"}}]}, {}]),
                vec![1],
            ),
            (json!([{"match": [{"uri": {"regex": ".*"}}]}, {}]), vec![1]),
            (
                json!([{"match": [{"uri": {"prefix": "/"}, "headers": {"a": {"exact": "1"}}}]}, {}]),
                vec![1, 1],
            ),
            (json!([{}, {}]), vec![1]),
        ];
        for (http, expected) in cases {
            assert_eq!(routes_per_rule(&rules(http.clone())), expected, "{http}");
        }
    }
}
