//! Request to route: any method, path, query, authority and headers a
//! client can send, matched against a VirtualService that uses every match
//! kind. The route lookup must never panic.
#![no_main]

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use weir_gateway::compile::Compiler;
use weir_gateway::snapshot::Snapshot;
use weir_gateway::matcher::RequestView;
use weir_gateway::RouteInputs;

const ROUTES: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: v1
kind: Service
metadata: {name: app}
spec:
  ports: [{name: http, port: 80}]
  selector: {app: app}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: ["*.example.com", "exact.test", "*"]
  gateways: [gw]
  http:
  - match:
    - uri: {regex: "/(a|b)+[0-9]{1,3}"}
      headers: {x-user: {regex: ".*é.*"}}
    - uri: {prefix: /API}
      ignoreUriCase: true
    - queryParams: {q: {exact: "1"}}
      method: {exact: POST}
    - authority: {prefix: exact.}
      withoutHeaders: {x-block: {}}
    - headers: {x-present: {}}
      port: 80
    route: [{destination: {host: app}}]
  - route: [{destination: {host: app}, weight: 3}, {destination: {host: app}, weight: 1}]
"#;

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let manifests = weir_api::load::load_str(Path::new("fuzz.yaml"), ROUTES).expect("routes load");
        let resources: Vec<_> = manifests.resources().cloned().collect();
        Compiler::default()
            .compile(&RouteInputs::from_resources(&resources), &HashMap::new())
            .expect("routes compile")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1}');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let authority = parts.next().unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut headers = HeaderMap::new();
    for pair in parts {
        if let Some((k, v)) = pair.split_once(':')
            && let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v))
        {
            headers.append(k, v);
        }
    }
    let view = RequestView {
        path,
        query,
        method,
        scheme: "http",
        authority,
        headers: &headers,
        port: 80,
        gateway: "default/gw",
    };
    let listener = &snapshot().listeners[&80];
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    if let Some(rule) = listener.route(host, &view) {
        let _ = rule.split.pick();
    }
});
