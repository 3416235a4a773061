//! What the client saw is what the gateway records: a faulty upstream on
//! loopback (a raw socket, so it can fail as real servers do) behind a real
//! gateway, real clients, and the metrics, per-rule counters and access log
//! read back. Each fault is one a canary can have: a body reset after the
//! head (RST, FIN), every 10th answer reset, a body trickled for seconds, a
//! request left hanging until the client gives up.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The body every answer declares.
const BODY_LEN: usize = 30;

/// Serves one connection as the request's path says, then closes it.
async fn misbehave(mut stream: TcpStream, served: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let path = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let n = served.fetch_add(1, Ordering::SeqCst) + 1;
    let answer =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY_LEN}\r\nConnection: close\r\n\r\n");
    let half = vec![b'x'; BODY_LEN / 2];
    let whole = vec![b'x'; BODY_LEN];
    match path.as_str() {
        "/reset-rst" => {
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.write_all(&half).await;
            let _ = stream.set_zero_linger();
        }
        "/reset-fin" => {
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.write_all(&half).await;
            let _ = stream.shutdown().await;
        }
        "/every-10th-reset" => {
            let _ = stream.write_all(answer.as_bytes()).await;
            if n.is_multiple_of(10) {
                let _ = stream.write_all(&half).await;
                let _ = stream.set_zero_linger();
            } else {
                let _ = stream.write_all(&whole).await;
            }
        }
        "/trickle" => {
            let _ = stream.write_all(answer.as_bytes()).await;
            for _ in 0..BODY_LEN {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(b"x").await.is_err() {
                    return;
                }
            }
        }
        // Never answers; the connection is held until the test is long over.
        "/hang" => tokio::time::sleep(Duration::from_secs(60)).await,
        _ => {
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.write_all(&whole).await;
        }
    }
}

/// A gateway whose only route goes to the faulty upstream, labelled as
/// the walkthrough's v2; its access log goes to `log`.
async fn faulty(log: &std::path::Path) -> (Arc<weir_gateway::Gateway>, String) {
    faulty_with(logging_to(log), "").await
}

/// As [`faulty`], with these options and `more` manifests.
async fn faulty_with(
    options: weir_gateway::GatewayOptions,
    more: &str,
) -> (Arc<weir_gateway::Gateway>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(misbehave(stream, served.clone()));
        }
    });
    let entry = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: my-app\nspec:\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n  selector:\n    app: my-app\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: my-app-v2-a\nspec:\n  address: {}\n  ports:\n    http: {}\n  labels:\n    app: my-app\n    version: v2.0.0\n",
        addr.ip(),
        addr.port()
    );
    let mut docs = vec![GATEWAY, SUBSETS];
    let route = split(0, 100);
    docs.extend([route.as_str(), entry.as_str()]);
    if !more.is_empty() {
        docs.push(more);
    }
    gateway_with(&docs, options).await
}

/// Sends GET `path` on a connection of its own and reads the body to its
/// end (or its error), giving up after `patience`. How many body bytes came.
async fn fetch(url: &str, path: &str, patience: Duration) -> usize {
    let attempt = async {
        let stream = TcpStream::connect(url.trim_start_matches("http://"))
            .await
            .unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let req = http::Request::get(path)
            .header("host", "my-app.local")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let Ok(resp) = sender.send_request(req).await else {
            return 0;
        };
        let mut body = resp.into_body();
        let mut got = 0;
        while let Some(Ok(frame)) = body.frame().await {
            got += frame.data_ref().map_or(0, Bytes::len);
        }
        got
    };
    tokio::time::timeout(patience, attempt).await.unwrap_or(0)
}

/// The samples of `metric` with this code and flag, summed.
fn sum_of(text: &str, metric: &str, code: &str, flag: &str) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == metric
                && s.labels.get("response_code") == Some(code)
                && s.labels.get("response_flags") == Some(flag)
                && s.labels.get("destination_version") == Some("v2.0.0")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v)
            | prometheus_parse::Value::Gauge(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Waits (bounded) until `metric` with this code and flag reaches `n`.
async fn recorded(gw: &weir_gateway::Gateway, metric: &str, code: &str, flag: &str, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sum_of(&gw.metrics(), metric, code, flag) < n {
        assert!(
            Instant::now() < deadline,
            "{metric} {code} {flag} never reached {n}:\n{}",
            gw.metrics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The rollout's view: requests and failures of v2 on the route's rule.
fn v2_counts(gw: &weir_gateway::Gateway) -> (u64, u64) {
    gw.rule_version_counts()
        .into_iter()
        .filter(|(key, _)| key.2 == "v2.0.0")
        .fold((0, 0), |(r, f), (_, c)| (r + c.requests, f + c.failures))
}

/// The access log's lines so far.
fn log_lines(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_reset_after_the_head_is_recorded_uc_and_counts_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (gw, url) = faulty(&log).await;
    let patience = Duration::from_secs(5);
    assert!(fetch(&url, "/reset-rst", patience).await < BODY_LEN);
    assert!(fetch(&url, "/reset-fin", patience).await < BODY_LEN);
    assert_eq!(fetch(&url, "/whole", patience).await, BODY_LEN);
    recorded(&gw, "istio_requests_total", "200", "UC", 2.0).await;
    recorded(&gw, "istio_requests_total", "200", "-", 1.0).await;
    assert_eq!(v2_counts(&gw), (3, 2), "both cut bodies fail the canary");
    // The bytes are those the client got, not those the head declared.
    let cut = log_lines(&log)
        .into_iter()
        .filter(|l| l.contains("\"GET /reset-"))
        .collect::<Vec<_>>();
    assert_eq!(cut.len(), 2, "{cut:?}");
    for line in &cut {
        assert!(line.contains("\" 200 UC 0 15 "), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenth_answer_reset_is_every_tenth_request_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, url) = faulty(&dir.path().join("access.log")).await;
    let mut whole = 0;
    for _ in 0..100 {
        whole +=
            usize::from(fetch(&url, "/every-10th-reset", Duration::from_secs(5)).await == BODY_LEN);
    }
    assert_eq!(whole, 90);
    recorded(&gw, "istio_requests_total", "200", "UC", 10.0).await;
    recorded(&gw, "istio_requests_total", "200", "-", 90.0).await;
    assert_eq!(v2_counts(&gw), (100, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_timed_to_its_last_byte() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (gw, url) = faulty(&log).await;
    assert_eq!(
        fetch(&url, "/trickle", Duration::from_secs(10)).await,
        BODY_LEN
    );
    recorded(&gw, "istio_requests_total", "200", "-", 1.0).await;
    let ms = sum_of(
        &gw.metrics(),
        "istio_request_duration_milliseconds_sum",
        "200",
        "-",
    );
    assert!(ms >= 2_900.0, "the body took 3 s, recorded {ms} ms");
    let bytes = sum_of(&gw.metrics(), "istio_response_bytes_sum", "200", "-");
    assert_eq!(bytes, BODY_LEN as f64);
    let line = log_lines(&log).pop().unwrap_or_default();
    let took: u64 = line
        .split(' ')
        .nth(8)
        .and_then(|t| t.parse().ok())
        .unwrap_or_default();
    assert!(took >= 2_900, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_the_client_abandons_is_recorded_0_dc_with_its_wait_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (gw, url) = faulty(&log).await;
    for _ in 0..3 {
        assert_eq!(fetch(&url, "/hang", Duration::from_millis(400)).await, 0);
    }
    recorded(&gw, "istio_requests_total", "0", "DC", 3.0).await;
    let ms = sum_of(
        &gw.metrics(),
        "istio_request_duration_milliseconds_sum",
        "0",
        "DC",
    );
    assert!(
        ms >= 3.0 * 390.0,
        "each waited 400 ms before giving up: {ms} ms"
    );
    assert_eq!(v2_counts(&gw), (3, 3), "an abandoned request failed");
    let lines = log_lines(&log);
    assert_eq!(
        lines.iter().filter(|l| l.contains("\" 0 DC 0 0 ")).count(),
        3,
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_waits_as_ingress_nginx_reads_then_answers_504() {
    const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: my-app\nspec:\n  ingressClassName: nginx\n  rules:\n  - http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: my-app\n            port:\n              number: 80\n";
    let dir = tempfile::tempdir().unwrap();
    let options = weir_gateway::GatewayOptions {
        ingress_read_timeout: Duration::from_millis(500),
        node_ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
        ingress_port: 0,
        ..logging_to(&dir.path().join("access.log"))
    };
    let (gw, _) = faulty_with(options, INGRESS).await;
    let ingress = gw.ingress_address().await.expect("the ingress listens");
    let started = Instant::now();
    let (status, _, body) = get(&format!("http://{ingress}/hang"), &[]).await;
    assert_eq!(status, http::StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    let (status, _, _) = get(&format!("http://{ingress}/whole"), &[]).await;
    assert_eq!(status, http::StatusCode::OK);
    recorded(&gw, "istio_requests_total", "504", "UT", 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers_is_cut_at_the_stream_idle_timeout_504_si() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let options = weir_gateway::GatewayOptions {
        stream_idle_timeout: Duration::from_millis(500),
        ..logging_to(&log)
    };
    let (gw, url) = faulty_with(options, "").await;
    // Twice on one keep-alive connection (HTTP/1.1: the connection's one
    // clock), then over h2 (a timer per stream).
    for _ in 0..2 {
        let started = Instant::now();
        let (status, _, body) = get(&format!("{url}/hang"), &[("host", "my-app.local")]).await;
        assert_eq!(status, http::StatusCode::GATEWAY_TIMEOUT, "{body}");
        assert_eq!(body, "stream timeout");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }
    let stream = TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let req = http::Request::get(format!("{url}/hang"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::GATEWAY_TIMEOUT);
    // Recorded as Envoy records it, and a failure for the rollout.
    recorded(&gw, "istio_requests_total", "504", "SI", 3.0).await;
    assert_eq!(v2_counts(&gw), (3, 3));
    let lines = log_lines(&log);
    assert_eq!(
        lines.iter().filter(|l| l.contains("\" 504 SI ")).count(),
        3,
        "{lines:?}"
    );
    // What answers is served as before.
    let (status, _, _) = get(&format!("{url}/whole"), &[("host", "my-app.local")]).await;
    assert_eq!(status, http::StatusCode::OK);
}
