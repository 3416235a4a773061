//! Istio routing through real sockets to real `my-app` processes: host and
//! gateway binding, rule order, every match kind, weighted subsets, load
//! balancing and consistent hashing, version affinity.

mod support;

use std::collections::{BTreeMap, HashSet};

use support::*;

fn pair() -> (App, App) {
    (
        App::start("127.0.0.11", "v1.0.0", "my-app-v1-a", &[]),
        App::start("127.0.0.12", "v2.0.0", "my-app-v2-a", &[]),
    )
}

fn labelled<'a>(v1: &'a App, v2: &'a App) -> String {
    backends(&[
        (v1, &[("version", "v1.0.0")]),
        (v2, &[("version", "v2.0.0")]),
    ])
}

#[tokio::test]
async fn the_walkthroughs_90_10_is_exact_over_every_window_of_10() {
    let (v1, v2) = pair();
    let (_gw, url) = gateway(&[GATEWAY, &split(90, 10), SUBSETS, &labelled(&v1, &v2)]).await;
    let mut sequence = Vec::new();
    for _ in 0..1000 {
        let (status, _, body) = get(&format!("{url}/"), &[]).await;
        assert_eq!(status, 200);
        sequence.push(version(&body).to_owned());
    }
    assert_eq!(sequence.iter().filter(|v| *v == "v2.0.0").count(), 100);
    assert_eq!(sequence.iter().filter(|v| *v == "v1.0.0").count(), 900);
    for (i, window) in sequence.windows(10).enumerate() {
        let canary = window.iter().filter(|v| *v == "v2.0.0").count();
        assert_eq!(canary, 1, "window starting at request {i}: {window:?}");
    }
    assert_eq!(v1.served().await, 900.0);
    assert_eq!(v2.served().await, 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_split_is_shared_by_all_connections_and_threads() {
    let (v1, v2) = pair();
    let (_gw, url) = gateway(&[GATEWAY, &split(90, 10), SUBSETS, &labelled(&v1, &v2)]).await;
    // 8 clients with their own connections, 125 requests each, concurrently.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Empty<bytes::Bytes>>();
            let mut canary = 0;
            for _ in 0..125 {
                let resp = client.get(url.parse().unwrap()).await.unwrap();
                let body = http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                if String::from_utf8_lossy(&body).contains("v2.0.0") {
                    canary += 1;
                }
            }
            canary
        }));
    }
    let mut canary = 0;
    for t in tasks {
        canary += t.await.unwrap();
    }
    assert_eq!(canary, 100, "1000 requests over 8 connections at 90/10");
}

#[tokio::test]
async fn hosts_and_gateway_binding_decide_which_rules_apply() {
    let (v1, v2) = pair();
    let gateway_hosts = GATEWAY.replace("    - \"*\"\n", "    - \"*.example.com\"\n");
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: shop\nspec:\n  hosts: [shop.example.com]\n  gateways: [http-gateway]\n  http:\n  - route:\n    - destination:\n        host: my-app\n        subset: v2\n";
    let fallback = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: all\nspec:\n  hosts: [\"*.example.com\"]\n  gateways: [http-gateway]\n  http:\n  - route:\n    - destination:\n        host: my-app\n        subset: v1\n";
    let unbound = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: other\nspec:\n  hosts: [other.test]\n  gateways: [another-gateway]\n  http:\n  - route:\n    - destination:\n        host: my-app\n";
    let (_gw, url) = gateway(&[
        &gateway_hosts,
        vs,
        fallback,
        unbound,
        SUBSETS,
        &labelled(&v1, &v2),
    ])
    .await;
    let (_, _, body) = get(&format!("{url}/"), &[("host", "shop.example.com")]).await;
    assert_eq!(
        version(&body),
        "v2.0.0",
        "the exact host wins over the wildcard"
    );
    let (_, _, body) = get(&format!("{url}/"), &[("host", "blog.example.com:80")]).await;
    assert_eq!(version(&body), "v1.0.0", "wildcard host, port ignored");
    let (status, _, _) = get(&format!("{url}/"), &[("host", "other.test")]).await;
    assert_eq!(
        status, 404,
        "a VirtualService bound to another gateway is not served here"
    );
    let (status, _, _) = get(&format!("{url}/"), &[("host", "example.org")]).await;
    assert_eq!(status, 404, "a host the gateway does not admit");
}

#[tokio::test]
async fn rules_apply_in_order_and_the_first_match_wins() {
    let (v1, v2) = pair();
    let vs = virtual_service(
        "  - match:\n    - uri:\n        prefix: /canary\n    route:\n    - destination:\n        host: my-app\n        subset: v2\n  - match:\n    - uri:\n        prefix: /\n    route:\n    - destination:\n        host: my-app\n        subset: v1\n  - route:\n    - destination:\n        host: my-app\n        subset: v2\n",
    );
    let (_gw, url) = gateway(&[GATEWAY, &vs, SUBSETS, &labelled(&v1, &v2)]).await;
    // my-app answers 404 for paths other than `/`; the version is in which app answered.
    let (status, _, _) = get(&format!("{url}/canary"), &[]).await;
    assert_eq!(status, 404);
    assert_eq!((v1.served().await, v2.served().await), (0.0, 1.0));
    let (_, _, body) = get(&format!("{url}/"), &[]).await;
    assert_eq!(
        version(&body),
        "v1.0.0",
        "the catch-all third rule is never reached"
    );
}

/// One rule per match kind, each sending to v2; everything else goes to v1.
#[tokio::test]
async fn every_match_kind() {
    let (v1, v2) = pair();
    let to_v2 = "    route:\n    - destination:\n        host: my-app\n        subset: v2\n";
    let rules = [
        "  - match:\n    - uri:\n        exact: /?exact\n",
        "  - match:\n    - headers:\n        x-exact:\n          exact: yes\n",
        "  - match:\n    - headers:\n        x-prefix:\n          prefix: canary-\n",
        "  - match:\n    - headers:\n        x-regex:\n          regex: \"user-[0-9]+\"\n",
        "  - match:\n    - headers:\n        x-present: {}\n",
        "  - match:\n    - queryParams:\n        canary:\n          exact: \"true\"\n",
        "  - match:\n    - method:\n        exact: HEAD\n",
        "  - match:\n    - authority:\n        prefix: canary.\n",
        "  - match:\n    - port: 80\n      headers:\n        x-port: {}\n",
        "  - match:\n    - scheme:\n        exact: http\n      headers:\n        x-scheme: {}\n",
        "  - match:\n    - uri:\n        regex: \"/[0-9]{3}\"\n",
        "  - match:\n    - headers:\n        x-not-absent: {}\n      withoutHeaders:\n        x-block: {}\n",
    ];
    let mut http = String::new();
    for r in rules {
        http.push_str(r);
        http.push_str(to_v2);
    }
    http.push_str("  - route:\n    - destination:\n        host: my-app\n        subset: v1\n");
    let (_gw, url) = gateway(&[
        GATEWAY,
        &virtual_service(&http),
        SUBSETS,
        &labelled(&v1, &v2),
    ])
    .await;
    /// Method, path, headers, and whether it should reach v2.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], bool);
    let cases: &[Case<'_>] = &[
        ("GET", "/", &[("x-exact", "yes")], true),
        ("GET", "/", &[("x-exact", "yess")], false),
        ("GET", "/", &[("x-prefix", "canary-7")], true),
        ("GET", "/", &[("x-prefix", "stable-7")], false),
        ("GET", "/", &[("x-regex", "user-42")], true),
        ("GET", "/", &[("x-regex", "user-42x")], false),
        ("GET", "/", &[("x-present", "")], true),
        ("GET", "/?canary=true", &[], true),
        ("GET", "/?canary=false", &[], false),
        ("HEAD", "/", &[], true),
        ("GET", "/", &[("host", "canary.example.com")], true),
        ("GET", "/", &[("x-port", "1")], true),
        ("GET", "/", &[("x-scheme", "1")], true),
        ("GET", "/404", &[], true),
        ("GET", "/40", &[], false),
        ("GET", "/", &[("x-not-absent", "1")], true),
        (
            "GET",
            "/",
            &[("x-not-absent", "1"), ("x-block", "1")],
            false,
        ),
        ("GET", "/", &[], false),
    ];
    for (method, path, headers, canary) in cases {
        let before = v2.served().await;
        request(method, &format!("{url}{path}"), headers).await;
        let went_to_v2 = v2.served().await > before;
        assert_eq!(went_to_v2, *canary, "{method} {path} {headers:?}");
    }
    // The exact-uri rule: `/?exact` has path `/` (the query is not part of the uri match).
    assert!(v1.served().await > 0.0);
}

#[tokio::test]
async fn uri_matches_ignore_case_when_asked() {
    let (v1, v2) = pair();
    let vs = virtual_service(
        "  - match:\n    - uri:\n        prefix: /API\n      ignoreUriCase: true\n    route:\n    - destination:\n        host: my-app\n        subset: v2\n  - route:\n    - destination:\n        host: my-app\n        subset: v1\n",
    );
    let (_gw, url) = gateway(&[GATEWAY, &vs, SUBSETS, &labelled(&v1, &v2)]).await;
    get(&format!("{url}/api/x"), &[]).await;
    get(&format!("{url}/other"), &[]).await;
    assert_eq!((v1.served().await, v2.served().await), (1.0, 1.0));
}

fn three_v1() -> (App, App, App) {
    (
        App::start("127.0.0.21", "v1.0.0", "my-app-v1-a", &[]),
        App::start("127.0.0.22", "v1.0.0", "my-app-v1-b", &[]),
        App::start("127.0.0.23", "v1.0.0", "my-app-v1-c", &[]),
    )
}

fn with_policy(policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: my-app\nspec:\n  host: my-app\n  trafficPolicy:\n    loadBalancer:\n{policy}"
    )
}

async fn hosts_seen(url: &str, n: usize, headers: &[(&str, &str)]) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let (_, _, body) = get(url, headers).await;
        seen.push(
            body.split(',')
                .next()
                .unwrap_or_default()
                .trim_start_matches("Host: ")
                .to_owned(),
        );
    }
    seen
}

#[tokio::test]
async fn round_robin_random_and_least_request_spread_over_the_subset() {
    let (a, b, c) = three_v1();
    let apps = backends(&[(&a, &[]), (&b, &[]), (&c, &[])]);
    let route = virtual_service("  - route:\n    - destination:\n        host: my-app\n");
    for policy in [
        "      simple: ROUND_ROBIN\n",
        "      simple: RANDOM\n",
        "      simple: LEAST_REQUEST\n",
    ] {
        let (gw, url) = gateway(&[GATEWAY, &route, &with_policy(policy), &apps]).await;
        let seen = hosts_seen(&format!("{url}/"), 60, &[]).await;
        let distinct: HashSet<&String> = seen.iter().collect();
        assert_eq!(distinct.len(), 3, "{policy}: {seen:?}");
        if policy.contains("ROUND_ROBIN") {
            for w in seen.windows(3) {
                let set: HashSet<&String> = w.iter().collect();
                assert_eq!(
                    set.len(),
                    3,
                    "round robin visits each endpoint in turn: {seen:?}"
                );
            }
        }
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn consistent_hash_by_header_source_ip_and_query_parameter_is_sticky() {
    let (a, b, c) = three_v1();
    let apps = backends(&[(&a, &[]), (&b, &[]), (&c, &[])]);
    let route = virtual_service("  - route:\n    - destination:\n        host: my-app\n");
    for (policy, vary) in [
        (
            "      consistentHash:\n        httpHeaderName: x-user\n",
            "header",
        ),
        (
            "      consistentHash:\n        httpQueryParameterName: user\n",
            "query",
        ),
        ("      consistentHash:\n        useSourceIp: true\n", "ip"),
        (
            "      consistentHash:\n        httpHeaderName: x-user\n        maglev:\n          tableSize: 65537\n",
            "header",
        ),
    ] {
        let (gw, url) = gateway(&[GATEWAY, &route, &with_policy(policy), &apps]).await;
        let mut endpoints_used = HashSet::new();
        for user in 0..24 {
            let user = format!("user-{user}");
            let (path, headers): (String, Vec<(&str, &str)>) = match vary {
                "header" => ("/".into(), vec![("x-user", user.as_str())]),
                "query" => (format!("/?user={user}"), vec![]),
                _ => ("/".into(), vec![]),
            };
            let seen = hosts_seen(&format!("{url}{path}"), 5, &headers).await;
            assert!(
                seen.iter().all(|h| h == &seen[0]),
                "{policy} {user}: {seen:?}"
            );
            endpoints_used.insert(seen[0].clone());
        }
        if vary != "ip" {
            assert!(
                endpoints_used.len() >= 2,
                "{policy}: 24 users all on {endpoints_used:?}"
            );
        }
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn the_walkthroughs_cookie_hash_generates_a_session_cookie_then_sticks() {
    let (a, b, c) = three_v1();
    let apps = backends(&[(&a, &[]), (&b, &[]), (&c, &[])]);
    let route = virtual_service("  - route:\n    - destination:\n        host: my-app\n");
    let policy =
        "      consistentHash:\n        httpCookie:\n          name: user\n          ttl: 0s\n";
    let (_gw, url) = gateway(&[GATEWAY, &route, &with_policy(policy), &apps]).await;
    let mut endpoints_used = HashSet::new();
    for _ in 0..12 {
        let (_, headers, body) = get(&format!("{url}/"), &[]).await;
        let set_cookie = headers["set-cookie"].to_str().unwrap().to_owned();
        assert!(set_cookie.starts_with("user=\""), "{set_cookie}");
        assert!(
            !set_cookie.contains("Max-Age"),
            "ttl 0s is a session cookie: {set_cookie}"
        );
        let value = set_cookie.split(';').next().unwrap().to_owned();
        let first_host = body.split(',').next().unwrap().to_owned();
        for _ in 0..4 {
            let (_, headers, body) = get(&format!("{url}/"), &[("cookie", &value)]).await;
            assert!(
                headers.get("set-cookie").is_none(),
                "no new cookie once the client has one"
            );
            assert_eq!(body.split(',').next().unwrap(), first_host);
        }
        endpoints_used.insert(first_host);
    }
    assert!(
        endpoints_used.len() >= 2,
        "new clients spread: {endpoints_used:?}"
    );
}

#[tokio::test]
async fn the_walkthroughs_cookie_hash_does_not_pin_a_version_but_affinity_does() {
    let (v1, v2) = pair();
    let walkthrough_dr = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/canary-istio/istio.yaml"),
    )
    .unwrap();
    let dr = walkthrough_dr.split("---").nth(2).unwrap().to_owned();
    let backends = labelled(&v1, &v2);

    // Istio's semantics: the weight picks the subset before the hash picks the
    // endpoint, so one cookie sees both versions.
    let (gw, url) = gateway(&[GATEWAY, &split(50, 50), &dr, &backends]).await;
    let seen = versions(&format!("{url}/"), 20, &[("cookie", "user=alice")]).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    gw.shutdown().await;

    // weir's opt-in version affinity: one user stays on one version.
    let sticky = split(90, 10).replace(
        "metadata:\n  name: my-app\n",
        "metadata:\n  name: my-app\n  annotations:\n    weir.dev/version-affinity: \"\"\n",
    );
    let (gw, url) = gateway(&[GATEWAY, &sticky, &dr, &backends]).await;
    let mut users_per_version: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..100 {
        let (_, headers, body) = get(&format!("{url}/"), &[]).await;
        let cookie = headers["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert!(cookie.starts_with("weir-version="), "{cookie}");
        let first = version(&body).to_owned();
        let again = versions(&format!("{url}/"), 9, &[("cookie", &cookie)]).await;
        assert_eq!(again, BTreeMap::from([(first.clone(), 9)]), "{cookie}");
        *users_per_version.entry(first).or_default() += 1;
    }
    // New users are assigned by the exact split: 90 of 100 on v1.
    assert_eq!(users_per_version["v1.0.0"], 90);
    assert_eq!(users_per_version["v2.0.0"], 10);

    // When a version's weight drops to 0, its users move.
    gw.set_routes(
        inputs(&[
            GATEWAY,
            &sticky
                .replace("weight: 90", "weight: 0")
                .replace("weight: 10", "weight: 100"),
            &dr,
            &backends,
        ])
        .0,
    )
    .await
    .unwrap();
    let moved = versions(&format!("{url}/"), 5, &[("cookie", "weir-version=v1")]).await;
    assert_eq!(moved, BTreeMap::from([("v2.0.0".to_owned(), 5)]));
}
