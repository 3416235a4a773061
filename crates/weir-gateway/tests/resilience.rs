//! Failures answered as Envoy answers them (status, response flag in the
//! access log and metrics), timeouts, retries, fault injection, bad
//! requests, and configuration swapped live under load.
//!
//! Over 600 lines: each failure needs its own misbehaving upstream, and
//! those servers are shared by several tests here.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::*;
use tokio::time::Instant;
use weir_gateway::{ConnectionLimits, GatewayOptions};

fn dead_port(ip: &str) -> u16 {
    // Bound and closed at once: nothing listens there.
    std::net::TcpListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn dead_backend(ip: &str, name: &str, version: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\nspec:\n  address: {ip}\n  ports:\n    http: {}\n  labels:\n    app: my-app\n    version: {version}\n",
        dead_port(ip)
    )
}

/// The metric sample for `flags` and `code`, summed over other labels.
fn requests_with(metrics: &str, code: u16, flags: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| {
            l.contains(&format!("response_code=\"{code}\""))
                && l.contains(&format!("response_flags=\"{flags}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_for_log_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn failures_answer_like_envoy_with_response_flags() {
    let v1 = App::start(
        "127.0.0.41",
        "v1.0.0",
        "my-app-v1-a",
        &["--cpu-burn", "400ms"],
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let http = [
        "  - match:\n    - uri:\n        prefix: /uh\n    route:\n    - destination:\n        host: my-app\n        subset: v2\n",
        "  - match:\n    - uri:\n        prefix: /nc\n    route:\n    - destination:\n        host: my-app\n        subset: v3\n",
        "  - match:\n    - uri:\n        prefix: /uf\n    retries:\n      attempts: 0\n    route:\n    - destination:\n        host: dead\n",
        "  - match:\n    - headers:\n        x-ut: {}\n    timeout: 100ms\n    route:\n    - destination:\n        host: my-app\n        subset: v1\n",
    ]
    .concat();
    let dead_service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: dead\nspec:\n  ports:\n  - name: http\n    port: 80\n  selector:\n    app: dead\n";
    let dead = dead_backend("127.0.0.42", "dead-1", "v1").replace("app: my-app", "app: dead");
    let vs = virtual_service(&http).replace("hosts: [\"*\"]", "hosts: [app.test]");
    let (gw, url) = gateway_with(
        &[
            GATEWAY,
            &vs,
            SUBSETS,
            &backends(&[(&v1, &[("version", "v1.0.0")])]),
            dead_service,
            &dead,
        ],
        logging_to(&log),
    )
    .await;
    let host = [("host", "app.test")];
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: [Case<'_>; 5] = [
        ("/", &[("host", "nowhere.test")], 404, "NR"),
        ("/uh", &host, 503, "UH"),
        ("/nc", &host, 503, "NC"),
        ("/uf", &host, 503, "UF"),
        ("/", &[("host", "app.test"), ("x-ut", "1")], 504, "UT"),
    ];
    for (path, headers, code, _) in &cases {
        let (status, _, _) = get(&format!("{url}{path}"), headers).await;
        assert_eq!(status.as_u16(), *code, "{path}");
    }
    let lines = wait_for_log_lines(&log, cases.len()).await;
    assert_eq!(
        lines.len(),
        cases.len(),
        "one access-log line per request: {lines:#?}"
    );
    let metrics = gw.metrics();
    for ((path, headers, code, flags), line) in cases.iter().zip(&lines) {
        assert!(
            line.contains(&format!("\"GET {path} HTTP/1.1\" {code} {flags} ")),
            "{line}"
        );
        // The authority the request named, from its Host header.
        assert!(line.contains(&format!("\"{}\"", headers[0].1)), "{line}");
        assert_eq!(
            requests_with(&metrics, *code, flags),
            1.0,
            "{flags}\n{metrics}"
        );
    }
    // No route: no destination, every destination label `unknown`, as Istio.
    let no_route = metrics
        .lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains("response_flags=\"NR\""))
        .unwrap();
    for label in [
        "destination_service",
        "destination_workload",
        "destination_workload_namespace",
        "destination_app",
        "destination_version",
        "destination_canonical_service",
        "destination_canonical_revision",
        "destination_cluster",
    ] {
        assert!(
            no_route.contains(&format!("{label}=\"unknown\"")),
            "{label}: {no_route}"
        );
    }
    assert!(
        no_route.contains("source_workload=\"istio-ingressgateway\""),
        "{no_route}"
    );
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_endpoint_by_default() {
    let v1 = App::start("127.0.0.43", "v1.0.0", "my-app-v1-a", &[]);
    let dead = dead_backend("127.0.0.44", "my-app-v1-dead", "v1.0.0");
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let route = |extra: &str| {
        virtual_service(&format!(
            "  - route:\n    - destination:\n        host: my-app\n        subset: v1\n{extra}"
        ))
    };
    let (gw, url) = gateway(&[GATEWAY, &route(""), SUBSETS, &apps, &dead]).await;
    let seen = versions(&format!("{url}/"), 40, &[]).await;
    assert_eq!(
        seen,
        BTreeMap::from([("v1.0.0".to_owned(), 40)]),
        "Istio's default: 2 retries on connect-failure"
    );
    assert!(
        requests_with(&gw.metrics(), 200, "URX") >= 1.0,
        "some requests needed a retry"
    );
    gw.shutdown().await;

    let (_gw, url) = gateway(&[
        GATEWAY,
        &route("    retries:\n      attempts: 0\n"),
        SUBSETS,
        &apps,
        &dead,
    ])
    .await;
    let seen = versions(&format!("{url}/"), 40, &[]).await;
    assert!(
        seen.get("503 Service Unavailable").copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
}

#[tokio::test]
async fn fault_delay_and_abort_including_v1alpha3_percent() {
    let v1 = App::start("127.0.0.45", "v1.0.0", "my-app-v1-a", &[]);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let route = "    route:\n    - destination:\n        host: my-app\n        subset: v1\n";
    let http = [
        format!("  - match:\n    - uri:\n        prefix: /delay\n    fault:\n      delay:\n        fixedDelay: 300ms\n        percentage:\n          value: 100\n{route}"),
        format!("  - match:\n    - uri:\n        prefix: /abort\n    fault:\n      abort:\n        httpStatus: 418\n        percentage:\n          value: 100\n{route}"),
        format!("  - match:\n    - uri:\n        prefix: /half\n    fault:\n      abort:\n        httpStatus: 503\n        percentage:\n          value: 50\n{route}"),
        format!("  - match:\n    - uri:\n        prefix: /legacy\n    fault:\n      abort:\n        httpStatus: 500\n        percent: 100\n{route}"),
    ]
    .concat();
    let vs = virtual_service(&http).replace(
        "networking.istio.io/v1\nkind: VirtualService",
        "networking.istio.io/v1alpha3\nkind: VirtualService",
    );
    let (gw, url) = gateway(&[GATEWAY, &vs, SUBSETS, &apps]).await;

    let started = Instant::now();
    let (status, _, _) = get(&format!("{url}/delay"), &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        status, 404,
        "delayed, then forwarded (my-app has no /delay)"
    );

    let (status, _, body) = get(&format!("{url}/abort"), &[]).await;
    assert_eq!(status, 418);
    assert_eq!(body, "fault filter abort");
    assert_eq!(requests_with(&gw.metrics(), 418, "FI"), 1.0);

    let (status, _, _) = get(&format!("{url}/legacy"), &[]).await;
    assert_eq!(status, 500, "v1alpha3's removed abort.percent is honoured");

    let half = versions(&format!("{url}/half"), 200, &[]).await;
    let aborted = half.get("503 Service Unavailable").copied().unwrap_or(0);
    assert!((60..=140).contains(&aborted), "50% abort: {half:?}");
}

#[tokio::test]
async fn response_header_operations() {
    let v1 = App::start("127.0.0.46", "v1.0.0", "my-app-v1-a", &[]);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let http = "  - headers:\n      response:\n        set:\n          x-served-by: weir\n        add:\n          x-extra: one\n        remove: [content-type]\n    route:\n    - destination:\n        host: my-app\n        subset: v1\n      headers:\n        response:\n          set:\n            x-subset: v1\n";
    let (_gw, url) = gateway(&[GATEWAY, &virtual_service(http), SUBSETS, &apps]).await;
    let (status, headers, _) = get(&format!("{url}/"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-served-by"], "weir");
    assert_eq!(headers["x-extra"], "one");
    assert_eq!(headers["x-subset"], "v1");
    assert!(headers.get("content-type").is_none());
}

/// Waits (bounded, 10 s) until `app` reports one request in flight.
async fn wait_until_serving_one(app: &App) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, metrics) = get(&format!("http://{}/metrics", app.metrics), &[]).await;
        if metrics.lines().any(|l| l == "in_flight_requests 1") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the request never reached the pod"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn raw_exchange(addr: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn malformed_oversized_and_slow_requests() {
    let v1 = App::start("127.0.0.47", "v1.0.0", "my-app-v1-a", &[]);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let options = GatewayOptions {
        limits: ConnectionLimits {
            header_read_timeout: Duration::from_millis(300),
            max_header_bytes: 16 * 1024,
            ..ConnectionLimits::default()
        },
        ..GatewayOptions::default()
    };
    let (_gw, url) = gateway_with(&[GATEWAY, &split(100, 0), SUBSETS, &apps], options).await;
    let addr = url.trim_start_matches("http://").to_owned();

    let a = addr.clone();
    let garbage =
        tokio::task::spawn_blocking(move || raw_exchange(&a, b"GARBAGE\x01\x02 / HTTP/9\r\n\r\n"))
            .await
            .unwrap();
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");

    let a = addr.clone();
    let huge = tokio::task::spawn_blocking(move || {
        let request = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(32 * 1024)
        );
        raw_exchange(&a, request.as_bytes())
    })
    .await
    .unwrap();
    assert!(huge.starts_with("HTTP/1.1 431"), "{huge:?}");

    // A client that starts a request and never finishes its headers is cut off.
    let a = addr.clone();
    let (elapsed, answer) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let answer = raw_exchange(&a, b"GET / HTTP/1.1\r\nHost: x\r\n");
        (started.elapsed(), answer)
    })
    .await
    .unwrap();
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(!answer.contains("200 OK"), "{answer:?}");

    // And the gateway still serves.
    let (status, _, _) = get(&format!("{url}/"), &[]).await;
    assert_eq!(status, 200);
}

/// Reads one response with a `content-length` body from `stream`.
fn read_one_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        out.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&out).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length in {head:?}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

#[tokio::test]
async fn each_request_head_on_a_kept_alive_connection_gets_the_full_header_timeout() {
    let v1 = App::start("127.0.0.52", "v1.0.0", "my-app-v1-a", &[]);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    // The first request's head arrives in two parts 100 ms apart, and its
    // answer takes 700 ms (a fault delay): the first head's deadline
    // (1 s after it started) falls 200 ms after its response.
    let http = "  - fault:\n      delay:\n        fixedDelay: 700ms\n        percentage:\n          value: 100\n    route:\n    - destination:\n        host: my-app\n        subset: v1\n";
    let options = GatewayOptions {
        limits: ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            max_header_bytes: 16 * 1024,
            ..ConnectionLimits::default()
        },
        ..GatewayOptions::default()
    };
    let (_gw, url) =
        gateway_with(&[GATEWAY, &virtual_service(http), SUBSETS, &apps], options).await;
    let addr = url.trim_start_matches("http://").to_owned();
    let (first, cut_off_after, rest) = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        // A slow client: the gateway waits on the head's deadline meanwhile.
        std::thread::sleep(Duration::from_millis(100));
        stream.write_all(b"Host: x\r\n\r\n").unwrap();
        let first = read_one_response(&mut stream);
        // The next head starts now and never finishes.
        let started = Instant::now();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        (
            first,
            started.elapsed(),
            String::from_utf8_lossy(&rest).into_owned(),
        )
    })
    .await
    .unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
    assert!(first.contains("Version: v1.0.0"), "{first:?}");
    // Cut off by its own deadline, not by the first head's.
    assert!(
        cut_off_after >= Duration::from_millis(800),
        "{cut_off_after:?}"
    );
    assert!(cut_off_after < Duration::from_secs(5), "{cut_off_after:?}");
    assert!(!rest.contains("200 OK"), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_lets_a_request_in_flight_finish() {
    let slow = App::start(
        "127.0.0.53",
        "v1.0.0",
        "my-app-v1-slow",
        &["--cpu-burn", "300ms"],
    );
    let apps = backends(&[(&slow, &[("version", "v1.0.0")])]);
    let (gw, url) = gateway(&[GATEWAY, &split(100, 0), SUBSETS, &apps]).await;
    let addr = url.trim_start_matches("http://").to_owned();
    let connect = |addr: &str| {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };

    // One connection answered once and now idle, kept alive.
    let mut idle = connect(&addr);
    let idle = tokio::task::spawn_blocking(move || {
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let first = read_one_response(&mut idle);
        assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
        idle
    })
    .await
    .unwrap();
    // One connection whose request the pod is still working on.
    let mut busy = connect(&addr);
    busy.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let busy = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let _ = busy.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    wait_until_serving_one(&slow).await;

    gw.shutdown().await;
    let closed = tokio::task::spawn_blocking(move || {
        let mut idle = idle;
        let mut rest = Vec::new();
        idle.read_to_end(&mut rest).map(|_| rest)
    });
    let rest = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the idle connection was not closed")
        .unwrap()
        .expect("closed cleanly, not timed out");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let answered = tokio::time::timeout(Duration::from_secs(5), busy)
        .await
        .expect("the busy connection was not closed after its response")
        .unwrap();
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered:?}");
    assert!(answered.contains("Host: my-app-v1-slow"), "{answered:?}");
    assert_eq!(answered.matches("HTTP/1.1").count(), 1, "{answered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weights_swap_live_under_load_without_a_failed_request() {
    let (v1, v2) = (
        App::start("127.0.0.48", "v1.0.0", "my-app-v1-a", &[]),
        App::start("127.0.0.49", "v2.0.0", "my-app-v2-a", &[]),
    );
    let apps = backends(&[
        (&v1, &[("version", "v1.0.0")]),
        (&v2, &[("version", "v2.0.0")]),
    ]);
    let (gw, url) = gateway(&[GATEWAY, &split(90, 10), SUBSETS, &apps]).await;
    let canary = inputs(&[GATEWAY, &split(90, 10), SUBSETS, &apps]).0;
    let promoted = inputs(&[GATEWAY, &split(0, 100), SUBSETS, &apps]).0;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Empty<bytes::Bytes>>();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match client.get(url.parse().unwrap()).await {
                    Ok(r) if r.status() == 200 => {
                        let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for round in 0..100 {
        let next = if round % 2 == 0 { &promoted } else { &canary };
        gw.set_routes(next.clone()).await.unwrap();
        if round % 2 == 0 {
            // Once the swap returns, every new request follows 0/100.
            let seen = versions(&format!("{url}/"), 5, &[]).await;
            assert_eq!(
                seen,
                BTreeMap::from([("v2.0.0".to_owned(), 5)]),
                "round {round}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "the load ran: {}",
        ok.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn a_request_in_flight_on_a_removed_endpoint_completes() {
    let slow = App::start(
        "127.0.0.50",
        "v1.0.0",
        "my-app-v1-slow",
        &["--cpu-burn", "800ms"],
    );
    let other = App::start("127.0.0.51", "v1.0.0", "my-app-v1-other", &[]);
    let both = backends(&[
        (&slow, &[("version", "v1.0.0")]),
        (&other, &[("version", "v1.0.0")]),
    ]);
    let only_slow = backends(&[(&slow, &[("version", "v1.0.0")])]);
    let only_other = backends(&[(&other, &[("version", "v1.0.0")])]);
    let (gw, url) = gateway(&[GATEWAY, &split(100, 0), SUBSETS, &only_slow]).await;
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { get(&format!("{url}/"), &[]).await }
    });
    wait_until_serving_one(&slow).await;
    let (routes, endpoints) = inputs(&[GATEWAY, &split(100, 0), SUBSETS, &only_other]);
    gw.set_all(routes, endpoints).await.unwrap();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("Host: my-app-v1-slow"), "{body}");
    // New requests go to the remaining endpoint.
    let (_, _, body) = get(&format!("{url}/"), &[]).await;
    assert!(body.starts_with("Host: my-app-v1-other"), "{body}");
    drop(both);
}

/// Connects to `addr`, writes `bytes`, and returns how long the gateway
/// took to close the connection (bounded at 10 s) and what it sent.
fn time_to_close(addr: &str, bytes: &[u8]) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    (started.elapsed(), out)
}

#[tokio::test]
async fn connections_that_say_nothing_or_go_silent_are_closed() {
    let v1 = App::start("127.0.0.53", "v1.0.0", "my-app-v1-a", &[]);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let options = GatewayOptions {
        limits: ConnectionLimits {
            guard: weir_gateway::conn_guard::GuardLimits {
                first_bytes_timeout: Duration::from_millis(300),
                idle_timeout: Duration::from_millis(800),
            },
            ..ConnectionLimits::default()
        },
        ..GatewayOptions::default()
    };
    let (_gw, url) = gateway_with(&[GATEWAY, &split(100, 0), SUBSETS, &apps], options).await;
    let addr = url.trim_start_matches("http://").to_owned();

    // Nothing at all, and part of the h2 preface: closed at the first-bytes deadline.
    for opening in [&b""[..], b"PRI * HT"] {
        let a = addr.clone();
        let (elapsed, answer) = tokio::task::spawn_blocking(move || time_to_close(&a, opening))
            .await
            .unwrap();
        assert!(
            (Duration::from_millis(290)..Duration::from_secs(3)).contains(&elapsed),
            "{opening:?}: {elapsed:?}"
        );
        assert!(answer.is_empty(), "{answer:?}");
    }

    // A kept-alive connection in use stays open past the idle timeout...
    let a = addr.clone();
    let (kept, closed_after) = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&a).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        let mut answers = 0;
        let mut silent = Instant::now();
        while started.elapsed() < Duration::from_millis(1600) {
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            if read_one_response(&mut stream).starts_with("HTTP/1.1 200") {
                answers += 1;
            }
            // The last byte moved: the idle time counts from here.
            silent = Instant::now();
            std::thread::sleep(Duration::from_millis(100));
        }
        // ...and once silent, closes after it.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        (answers, silent.elapsed())
    })
    .await
    .unwrap();
    assert!(kept >= 10, "one connection served {kept} requests");
    assert!(
        (Duration::from_millis(790)..Duration::from_secs(5)).contains(&closed_after),
        "{closed_after:?}"
    );
}

/// User and system CPU time of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loop_waits_instead_of_spinning() {
    let v1 = App::start("127.0.0.54", "v1.0.0", "my-app-v1-a", &[]);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("routes.yaml"),
        [GATEWAY, &split(100, 0), SUBSETS, &apps].join("\n---\n"),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // 64 descriptors: the runtime's own take a few dozen, so a few dozen
    // clients exhaust the rest.
    let mut child = gateway_process(dir.path(), port, &["prlimit", "--nofile=64:64", "--"]);
    let addr = format!("127.0.0.1:{port}");
    let pid = child.id();
    let result = tokio::task::spawn_blocking(move || {
        // Enough connections to run the gateway out of descriptors; the
        // kernel completes them into the backlog either way.
        let clients: Vec<TcpStream> = (0..120)
            .filter_map(|_| TcpStream::connect(&addr).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let before = cpu_ticks(pid);
        let watched = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let used = cpu_ticks(pid) - before;
        let ticks_per_second = 100.0;
        let share = used as f64 / ticks_per_second / watched.elapsed().as_secs_f64();
        drop(clients);
        // Descriptors free again: it serves.
        let (_, answer) = time_to_close(
            &addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        (share, String::from_utf8_lossy(&answer).into_owned())
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let (share, answer) = result;
    assert!(
        share < 0.25,
        "the gateway used {share:.2} of a CPU at its fd limit"
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}
