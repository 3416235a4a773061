//! `istioctl analyze` parity for IST0132 (a VirtualService bound to a
//! Gateway none of whose hosts it shares), with Istio's host rules: `*`,
//! wildcards both ways, and namespace-qualified Gateway hosts (`ns/host`,
//! `*/host`, `./host`). Istio reports only when no VirtualService host
//! matches any of the Gateway's hosts.

use std::path::Path;

use weir_api::load::load_str;

fn warnings(gateway_hosts: &[&str], vs_namespace: &str, vs_hosts: &[&str]) -> Vec<String> {
    let list = |v: &[&str]| {
        v.iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: edge}}
spec:
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [{}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: {vs_namespace}}}
spec:
  hosts: [{}]
  gateways: [edge/gw]
  http:
  - route:
    - destination: {{host: backend}}
",
        list(gateway_hosts),
        list(vs_hosts)
    );
    let manifests = load_str(Path::new("analyze.yaml"), &text).expect("valid manifests");
    manifests
        .warnings
        .iter()
        .map(|w| w.message.clone())
        .filter(|m| m.contains("IST0132") || m.contains("not among Gateway"))
        .collect()
}

#[test]
fn ist0132_follows_istios_host_matching() {
    // (gateway hosts, VirtualService namespace, VirtualService hosts, IST0132 expected)
    let cases: &[(&[&str], &str, &[&str], bool)] = &[
        (&["foo.bar.com"], "edge", &["*"], false),
        (&["*"], "edge", &["foo.bar.com"], false),
        (&["*.bar.com"], "edge", &["foo.bar.com"], false),
        (&["foo.bar.com"], "edge", &["*.bar.com"], false),
        (&["*.bar.com"], "edge", &["*.foo.bar.com"], false),
        (&["foo.bar.com"], "edge", &["other.com"], true),
        (&["*.bar.com"], "edge", &["bar.com"], true),
        (&["edge/foo.bar.com"], "edge", &["foo.bar.com"], false),
        (&["edge/foo.bar.com"], "shop", &["foo.bar.com"], true),
        (&["*/foo.bar.com"], "shop", &["foo.bar.com"], false),
        (&["./foo.bar.com"], "edge", &["foo.bar.com"], false),
        (&["./foo.bar.com"], "shop", &["foo.bar.com"], true),
        // Any one shared host is enough for Istio.
        (
            &["foo.bar.com"],
            "edge",
            &["foo.bar.com", "other.com"],
            false,
        ),
    ];
    for (gw, ns, vs, expected) in cases {
        let found = warnings(gw, ns, vs);
        let ist0132 = found.iter().any(|w| w.contains("IST0132"));
        assert_eq!(
            ist0132, *expected,
            "gateway {gw:?}, {ns}/vs {vs:?}: {found:?}"
        );
    }
}

#[test]
fn a_host_the_gateway_does_not_serve_is_named_even_without_ist0132() {
    let found = warnings(&["foo.bar.com"], "edge", &["foo.bar.com", "other.com"]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("\"other.com\" is not among Gateway edge/gw's hosts"));
}

/// IST0101 for destination hosts, on the Service-based VirtualServices of
/// Istio's analyzer input `virtualservice_destinationhosts.yaml` (those
/// naming ServiceEntries, which weir does not implement, are left out; each
/// VirtualService gets `hosts`, which weir requires and the analyzer does
/// not read). Istio resolves only `name.ns.svc.cluster.local` across
/// namespaces; `reviews.default` is a short name no Service has.
#[test]
fn ist0101_destination_hosts_follow_istios_resolution() {
    let vs = |name: &str, ns: &str, dest: &str| {
        format!(
            "---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {dest}
"
        )
    };
    let mut text = String::from(
        "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports:
  - {port: 42, name: tcp-test, protocol: TCP}
",
    );
    let cases = [
        ("reviews", "default", "{host: reviews}", false),
        (
            "reviews-bogushost",
            "default",
            "{host: reviews-bogus}",
            true,
        ),
        (
            "reviews-fqdn",
            "default",
            "{host: reviews.default.svc.cluster.local}",
            false,
        ),
        (
            "reviews-bogusport",
            "default",
            "{host: reviews, port: {number: 999}}",
            true,
        ),
        (
            "cross-namespace",
            "istio-system",
            "{host: reviews.default.svc.cluster.local}",
            false,
        ),
        (
            "dotted-short-name",
            "istio-system",
            "{host: reviews.default}",
            true,
        ),
    ];
    for (name, ns, dest, _) in &cases {
        text.push_str(&vs(name, ns, dest));
    }
    let manifests = load_str(Path::new("destinationhosts.yaml"), &text).expect("valid manifests");
    for (name, ns, dest, expected) in cases {
        let reported = manifests.warnings.iter().any(|w| {
            w.object
                .as_deref()
                .is_some_and(|o| o.ends_with(&format!("virtualservice.networking.istio.io/{name}")))
                && w.message.contains("IST0101")
                && w.field.to_string().contains("destination")
        });
        assert_eq!(
            reported, expected,
            "{ns}/{name} → {dest}: {:?}",
            manifests.warnings
        );
    }
}

/// IST0173 and IST0174 on the inputs of Istio's analyzer tests
/// `DestinationRuleSubsetsNotSelectPods` (a subset whose labels, merged with
/// the Service's selector, select no pod) and `DestinationRuleWithFakeHost`
/// (a host that names no Service), plus the namespace rule: Istio looks for
/// a matching pod in any namespace.
#[test]
fn ist0173_and_ist0174_follow_istios_destination_rule_analyzer() {
    let service = "apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: default}
spec:
  ports: [{name: http, port: 8000}]
  selector: {app: httpbin}
";
    let dr = |host: &str| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: dr, namespace: default}}
spec:
  host: {host}
  trafficPolicy: {{loadBalancer: {{simple: LEAST_REQUEST}}}}
  subsets:
  - name: fake
    labels: {{version: v3}}
"
        )
    };
    let pod_in = |ns: &str| {
        format!(
            "---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: httpbin-v3, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: httpbin, version: v3}}}}
  template:
    metadata: {{labels: {{app: httpbin, version: v3}}}}
    spec:
      containers: [{{name: httpbin, image: my-app}}]
"
        )
    };
    let codes = |text: String| -> Vec<String> {
        let m = load_str(Path::new("dr.yaml"), &text).expect("valid manifests");
        m.warnings
            .iter()
            .filter(|w| {
                w.object
                    .as_deref()
                    .is_some_and(|o| o.starts_with("destinationrule"))
            })
            .map(|w| w.message.clone())
            .collect()
    };
    let no_pods = codes(format!(
        "{service}{}",
        dr("httpbin.default.svc.cluster.local")
    ));
    assert!(
        no_pods
            .iter()
            .any(|m| m.contains("\"fake\"") && m.contains("IST0173")),
        "{no_pods:?}"
    );
    let fake_host = codes(format!("{service}{}", dr("fake-host")));
    assert!(
        fake_host
            .iter()
            .any(|m| m.contains("\"fake-host\"") && m.contains("IST0174")),
        "{fake_host:?}"
    );
    let selected = codes(format!("{service}{}{}", dr("httpbin"), pod_in("default")));
    assert!(selected.is_empty(), "{selected:?}");
    let elsewhere = codes(format!("{service}{}{}", dr("httpbin"), pod_in("other")));
    assert!(
        elsewhere.len() == 1
            && !elsewhere[0].contains("IST0173")
            && elsewhere[0].contains("only outside namespace default"),
        "{elsewhere:?}"
    );
}
