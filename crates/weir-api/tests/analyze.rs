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
