//! The routing decision for the walkthrough's VirtualService: find the
//! rule, pick the destination by the smooth split, pick the endpoint by the
//! DestinationRule's cookie hash. Target: under 200 ns per request.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use weir_api::load::load_paths;
use weir_gateway::balance::HashInput;
use weir_gateway::compile::Compiler;
use weir_gateway::matcher::RequestView;
use weir_gateway::{Endpoint, RouteInputs};

fn walkthrough() -> (
    RouteInputs,
    HashMap<weir_gateway::ServiceKey, Vec<Endpoint>>,
) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/canary-istio");
    let manifests = load_paths(&[dir]).expect("walkthrough manifests");
    let resources: Vec<_> = manifests.resources().cloned().collect();
    let mut endpoints = HashMap::new();
    let pods = |version: &str, ip: [u8; 4]| Endpoint {
        ip: IpAddr::from(ip),
        name: format!("my-app-{version}-pod"),
        workload: format!("my-app-{version}"),
        labels: [
            ("app".to_owned(), "my-app".to_owned()),
            ("version".to_owned(), format!("{version}.0.0")),
        ]
        .into(),
        ports: [("http".to_owned(), 8080)].into(),
    };
    endpoints.insert(
        ("default".to_owned(), "my-app".to_owned()),
        vec![pods("v1", [127, 0, 0, 2]), pods("v2", [127, 0, 0, 3])],
    );
    (
        RouteInputs::from_resources(resources.iter().cloned()),
        endpoints,
    )
}

fn route_decision(c: &mut Criterion) {
    let (inputs, endpoints) = walkthrough();
    let snapshot = Compiler::default().compile(&inputs, &endpoints).unwrap();
    let listener = &snapshot.listeners[&80];
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
    headers.insert("user-agent", HeaderValue::from_static("curl/7.88.1"));
    headers.insert("cookie", HeaderValue::from_static("user=\"3f2a9c\""));
    let client = IpAddr::from([127, 0, 0, 1]);
    c.bench_function("walkthrough route + split + endpoint", |b| {
        b.iter(|| {
            let view = RequestView {
                path: "/",
                query: None,
                method: "GET",
                scheme: "http",
                authority: "127.0.0.1:8080",
                headers: &headers,
                port: 80,
                gateway: "default/http-gateway",
            };
            let rule = listener.route(black_box("127.0.0.1"), &view).unwrap();
            let destination = &rule.destinations[rule.split.pick()];
            let cluster = destination.cluster.as_ref().unwrap();
            let input = HashInput {
                headers: &headers,
                client,
                query: None,
            };
            black_box(cluster.policy.pick(&cluster.endpoints, &input).index)
        })
    });
}

criterion_group!(benches, route_decision);
criterion_main!(benches);
