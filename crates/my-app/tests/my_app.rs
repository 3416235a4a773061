//! Runs the real `my-app` binary on free loopback ports and checks, with a
//! real HTTP client, that it behaves as the walkthrough's Go app does.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Every listener on a free loopback port.
const LOOPBACK: [&str; 6] = [
    "--listen-address",
    "127.0.0.1:0",
    "--probe-address",
    "127.0.0.1:0",
    "--metrics-address",
    "127.0.0.1:0",
];

/// A running `my-app` and the addresses it reported binding.
struct MyApp {
    child: Child,
    stdout: BufReader<ChildStdout>,
    app: SocketAddr,
    probe: SocketAddr,
    metrics: SocketAddr,
}

impl MyApp {
    fn start(extra_args: &[&str]) -> MyApp {
        Self::start_with(&[&LOOPBACK, extra_args].concat(), &[])
    }

    fn start_with(args: &[&str], env: &[(&str, &str)]) -> MyApp {
        let mut child = Command::new(env!("CARGO_BIN_EXE_my-app"))
            .args(args)
            .envs(env.iter().copied())
            .env("VERSION", "v1.0.0")
            .env("HOSTNAME", "my-app-v1-abc12")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn my-app");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (mut app, mut probe, mut metrics) = (None, None, None);
        while app.is_none() || probe.is_none() || metrics.is_none() {
            let line = read_json_line(&mut stdout);
            let message = line["message"].as_str().expect("message").to_owned();
            let addr = || {
                message
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .parse::<SocketAddr>()
                    .ok()
            };
            if message.starts_with("Server started at") {
                app = addr();
            } else if message.starts_with("Probe server running at") {
                probe = addr();
            } else if message.starts_with("Serving Prometheus metrics on port") {
                metrics = addr();
            }
        }
        MyApp {
            child,
            stdout,
            app: app.unwrap(),
            probe: probe.unwrap(),
            metrics: metrics.unwrap(),
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for MyApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_json_line(stdout: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    let n = stdout.read_line(&mut line).expect("read stdout");
    assert!(n > 0, "my-app closed stdout");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
}

struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    body: String,
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(method: Method, addr: SocketAddr, path: &str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap();
    let resp = client().request(req).await.expect("request");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    send(Method::GET, addr, path).await
}

/// The value of the sample named `name` whose labels are exactly `labels`
/// (in any order), from Prometheus text.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (sample_name, mut have) = match series.split_once('{') {
            Some((n, rest)) => (
                n,
                rest.trim_end_matches('}')
                    .split(',')
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            ),
            None => (series, Vec::new()),
        };
        have.sort();
        (sample_name == name && have == want).then(|| value.parse().ok())?
    })
}

#[tokio::test]
async fn root_answers_host_and_version() {
    let app = MyApp::start(&[]);
    let answer = get(app.app, "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "Host: my-app-v1-abc12, Version: v1.0.0\n");
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test]
async fn other_methods_get_405_and_other_paths_404() {
    let app = MyApp::start(&[]);
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
        let answer = send(method.clone(), app.app, "/").await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.body, "");
    }
    let answer = get(app.app, "/nope").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, "404 page not found\n");
}

#[tokio::test]
async fn probes_answer_like_heptiolabs_healthcheck() {
    let app = MyApp::start(&[]);
    for path in ["/live", "/ready", "/ready?full=1"] {
        let answer = get(app.probe, path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(answer.body, "{}\n", "{path}");
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/json; charset=utf-8")
        );
    }
    assert_eq!(
        send(Method::POST, app.probe, "/live").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(get(app.probe, "/").await.status, StatusCode::NOT_FOUND);
    // The probe port is not the app: `/` is not served there.
    assert_eq!(get(app.app, "/live").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_have_the_go_apps_names_labels_and_buckets() {
    let app = MyApp::start(&[]);
    for _ in 0..3 {
        get(app.app, "/").await;
    }
    send(Method::POST, app.app, "/").await;
    let metrics = get(app.metrics, "/metrics").await.body;

    // The Go app's help texts, word for word (one period, not two).
    assert!(
        metrics.contains("# HELP http_requests A counter for requests to the wrapped handler.\n"),
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("# HELP") && l.ends_with(".."))
    );
    let get_200 = [("version", "v1.0.0"), ("code", "200"), ("method", "get")];
    let post_405 = [("version", "v1.0.0"), ("code", "405"), ("method", "post")];
    assert_eq!(
        sample(&metrics, "http_requests_total", &get_200),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "http_requests_total", &post_405),
        Some(1.0)
    );
    for le in ["0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"] {
        let labels = [get_200.as_slice(), &[("le", le)]].concat();
        assert_eq!(
            sample(&metrics, "request_duration_seconds_bucket", &labels),
            Some(3.0),
            "le={le}\n{metrics}"
        );
    }
    // 39 bytes, "Host: my-app-v1-abc12, Version: v1.0.0\n": below 200, so in every bucket.
    for le in ["200.0", "500.0", "900.0", "1500.0", "+Inf"] {
        let labels = [get_200.as_slice(), &[("le", le)]].concat();
        assert_eq!(
            sample(&metrics, "response_size_bytes_bucket", &labels),
            Some(3.0),
            "le={le}\n{metrics}"
        );
    }
    assert_eq!(
        sample(&metrics, "response_size_bytes_sum", &get_200),
        Some(3.0 * 39.0)
    );
    assert_eq!(sample(&metrics, "in_flight_requests", &[]), Some(0.0));
    assert!(metrics.contains("# TYPE request_duration_seconds histogram"));
}

#[tokio::test]
async fn one_json_access_log_line_per_request() {
    let mut app = MyApp::start(&[]);
    get(app.app, "/").await;
    send(Method::POST, app.app, "/").await;
    let first = read_json_line(&mut app.stdout);
    let second = read_json_line(&mut app.stdout);
    for (line, status, size) in [(&first, 200, 39), (&second, 405, 0)] {
        assert_eq!(line["level"], "info");
        assert_eq!(line["message"], "request");
        assert_eq!(line["version"], "v1.0.0");
        assert_eq!(line["host"], app.app.to_string());
        assert_eq!(line["status"], status);
        assert_eq!(line["size"], size);
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test]
async fn request_in_flight_at_sigterm_completes_then_exit_0() {
    let mut app = MyApp::start(&["--cpu-burn", "1500ms"]);
    let addr = app.app;
    let in_flight = tokio::spawn(async move { get(addr, "/").await });

    // Wait (bounded) until the server counts the request as in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = get(app.metrics, "/metrics").await.body;
        if sample(&metrics, "in_flight_requests", &[]) == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "request never arrived"
        );
        tokio::task::yield_now().await;
    }
    app.signal("TERM");

    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "Host: my-app-v1-abc12, Version: v1.0.0\n");

    let status = tokio::task::spawn_blocking(move || {
        let status = app.child.wait().unwrap();
        (status, app)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.code(), Some(0));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still open after exit"
    );
}

#[tokio::test]
async fn sigint_also_shuts_down_cleanly() {
    let mut app = MyApp::start(&[]);
    app.signal("INT");
    let mut saw_shutdown = false;
    loop {
        let mut line = String::new();
        if app.stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        saw_shutdown |= line.contains("Shutting down server...");
    }
    assert!(saw_shutdown);
    assert_eq!(app.child.wait().unwrap().code(), Some(0));
}

#[test]
fn bad_flags_are_rejected_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_my-app"))
        .args(["--listen-address", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("--listen-address"), "{stdout}");

    let out = Command::new(env!("CARGO_BIN_EXE_my-app"))
        .args(["--cpu-burn", "ten"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cpu-burn"));
}

#[tokio::test]
async fn port_only_addresses_bind_the_pod_ip_when_set() {
    let app = MyApp::start_with(
        &[
            "--listen-address",
            ":0",
            "--probe-address",
            ":0",
            "--metrics-address",
            ":0",
        ],
        &[("POD_IP", "127.0.0.77")],
    );
    for addr in [app.app, app.probe, app.metrics] {
        assert_eq!(addr.ip().to_string(), "127.0.0.77");
    }
    assert_eq!(get(app.app, "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_bad_canary_answers_its_share_of_500s_evenly_and_late_when_asked() {
    let app = MyApp::start_with(
        &LOOPBACK,
        &[("ERROR_PERCENT", "25"), ("EXTRA_LATENCY", "30ms")],
    );
    let mut statuses = Vec::new();
    let started = tokio::time::Instant::now();
    for _ in 0..20 {
        statuses.push(get(app.app, "/").await.status);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(20 * 30),
        "each answer waited 30 ms"
    );
    let errors = statuses
        .iter()
        .filter(|s| **s == StatusCode::INTERNAL_SERVER_ERROR)
        .count();
    assert_eq!(errors, 5, "25 % of 20, exactly: {statuses:?}");
    // Evenly: never two 500s in a row at 25 %.
    assert!(
        statuses
            .windows(2)
            .all(|w| w[0] == StatusCode::OK || w[1] == StatusCode::OK)
    );
    // Off by default: the plain app never fails.
    let plain = MyApp::start(&[]);
    for _ in 0..20 {
        assert_eq!(get(plain.app, "/").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_hanging_canary_leaves_its_share_of_requests_unanswered_evenly() {
    let app = MyApp::start_with(&LOOPBACK, &[("HANG_PERCENT", "25")]);
    let mut answered = Vec::new();
    for _ in 0..8 {
        let asked = tokio::time::timeout(Duration::from_millis(500), get(app.app, "/")).await;
        answered.push(asked.is_ok_and(|r| r.status == StatusCode::OK));
    }
    assert_eq!(
        answered,
        [true, true, true, false, true, true, true, false],
        "every 4th request hangs, the others are answered"
    );
}
