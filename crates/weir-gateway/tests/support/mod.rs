//! Shared test support: real `my-app` processes on their own loopback
//! addresses, an in-process gateway on real sockets, and a real HTTP client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use weir_api::load::load_str;
use weir_gateway::{AccessLogTarget, Gateway, GatewayOptions, RouteInputs, static_endpoints};

/// The `my-app` binary, built once if this package's tests run alone.
pub fn my_app_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap();
        let bin = dir.join("my-app");
        if !bin.exists() {
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "-p", "my-app"])
                .status()
                .unwrap();
            assert!(status.success(), "building my-app failed");
        }
        bin
    })
    .clone()
}

/// A running `my-app`.
pub struct App {
    child: Child,
    /// Its app address.
    pub addr: SocketAddr,
    /// Its metrics address.
    pub metrics: SocketAddr,
    /// The name it answers with.
    pub host: String,
}

impl App {
    /// Starts `my-app` on `ip` (free ports) answering `Version: version`.
    pub fn start(ip: &str, version: &str, host: &str, extra: &[&str]) -> App {
        let any = format!("{ip}:0");
        let mut child = Command::new(my_app_bin())
            .args([
                "--listen-address",
                &any,
                "--probe-address",
                &any,
                "--metrics-address",
                &any,
            ])
            .args(extra)
            .env("VERSION", version)
            .env("HOSTNAME", host)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn my-app");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut addr, mut metrics) = (None, None);
        while addr.is_none() || metrics.is_none() {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "my-app exited");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let msg = v["message"].as_str().unwrap_or_default();
            let parsed = msg.rsplit(' ').next().and_then(|a| a.parse().ok());
            if msg.starts_with("Server started at") {
                addr = parsed;
            } else if msg.starts_with("Serving Prometheus metrics") {
                metrics = parsed;
            }
        }
        // Keep draining stdout so the app never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
        App {
            child,
            addr: addr.unwrap(),
            metrics: metrics.unwrap(),
            host: host.to_owned(),
        }
    }

    /// Requests this app has answered (its `http_requests_total`, summed).
    pub async fn served(&self) -> f64 {
        let (_, _, body) = get(&format!("http://{}/metrics", self.metrics), &[]).await;
        body.lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Service `my-app` (port 80 → `http`) and one WorkloadEntry per app,
/// labelled `app: my-app` plus the given labels.
pub fn backends(apps: &[(&App, &[(&str, &str)])]) -> String {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: my-app\nspec:\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n  selector:\n    app: my-app\n",
    );
    for (i, (app, labels)) in apps.iter().enumerate() {
        yaml.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {}\nspec:\n  address: {}\n  ports:\n    http: {}\n  labels:\n    app: my-app\n",
            if app.host.is_empty() { format!("we-{i}") } else { app.host.clone() },
            app.addr.ip(),
            app.addr.port()
        ));
        for (k, v) in *labels {
            yaml.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    yaml
}

/// The walkthrough's Gateway (port 80, hosts `*`).
pub const GATEWAY: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: http-gateway\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: 80\n      name: http\n      protocol: HTTP\n    hosts:\n    - \"*\"\n";

/// The walkthrough's DestinationRule (subsets v1 and v2 by `version`).
pub const SUBSETS: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: my-app\nspec:\n  host: my-app\n  subsets:\n  - name: v1\n    labels:\n      version: v1.0.0\n  - name: v2\n    labels:\n      version: v2.0.0\n";

/// Loads YAML documents (joined with `---`) and returns routes + static endpoints.
pub fn inputs(
    docs: &[&str],
) -> (
    RouteInputs,
    std::collections::HashMap<weir_gateway::ServiceKey, Vec<weir_gateway::Endpoint>>,
) {
    let yaml = docs.join("\n---\n");
    let manifests =
        load_str(Path::new("test.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let resources: Vec<_> = manifests.resources().cloned().collect();
    (
        RouteInputs::from_resources(resources.iter().cloned()),
        static_endpoints::from_workload_entries(&resources),
    )
}

/// A gateway on a free port serving `docs`; returns it and its base URL.
pub async fn gateway(docs: &[&str]) -> (Arc<Gateway>, String) {
    gateway_with(docs, GatewayOptions::default()).await
}

/// As [`gateway`], with options (port 80 is always mapped to a free port).
pub async fn gateway_with(docs: &[&str], mut options: GatewayOptions) -> (Arc<Gateway>, String) {
    options.port_map = BTreeMap::from([(80, 0)]);
    let gw = Arc::new(Gateway::new(options).unwrap());
    let (routes, endpoints) = inputs(docs);
    gw.set_all(routes, endpoints).await.unwrap();
    let addr = gw.listeners().await[&80];
    (gw, format!("http://{addr}"))
}

/// Options with the access log written to `path`.
pub fn logging_to(path: &Path) -> GatewayOptions {
    GatewayOptions {
        access_log: Some(AccessLogTarget::File(
            path.to_owned(),
            weir_rotating_file::LogLimits::default(),
        )),
        ..GatewayOptions::default()
    }
}

fn client() -> &'static HyperClient<HttpConnector, Empty<Bytes>> {
    static CLIENT: OnceLock<HyperClient<HttpConnector, Empty<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| HyperClient::builder(TokioExecutor::new()).build_http())
}

/// GET `url` with extra headers; returns status, headers and body.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
    request("GET", url, headers).await
}

/// Any body-less request.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client()
        .request(req.body(Empty::new()).unwrap())
        .await
        .expect("request");
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The `Version:` in a `my-app` answer.
pub fn version(body: &str) -> &str {
    body.rsplit("Version: ").next().unwrap_or_default().trim()
}

/// Counts answers by version for `n` sequential GETs.
pub async fn versions(url: &str, n: usize, headers: &[(&str, &str)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let (status, _, body) = get(url, headers).await;
        let key = if status == StatusCode::OK {
            version(&body).to_owned()
        } else {
            status.to_string()
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// A VirtualService `my-app` on the walkthrough's gateway with `http` rules (YAML, indented 2).
pub fn virtual_service(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: my-app\nspec:\n  hosts: [\"*\"]\n  gateways: [http-gateway]\n  http:\n{http}"
    )
}

/// A route splitting between subsets v1 and v2.
pub fn split(v1: u32, v2: u32) -> String {
    virtual_service(&format!(
        "  - route:\n    - destination:\n        host: my-app\n        subset: v1\n      weight: {v1}\n    - destination:\n        host: my-app\n        subset: v2\n      weight: {v2}\n"
    ))
}

/// The standalone `weir-gateway` binary (a process of its own, whose memory
/// and CPU can be read from /proc) serving the manifests in `dir` on
/// 127.0.0.1:`port`, started through `wrapper` (e.g. `prlimit ...`) if
/// given; returns once it listens.
#[allow(
    clippy::zombie_processes,
    reason = "the child is returned to the caller, who stops and waits for it"
)]
pub fn gateway_process(dir: &Path, port: u16, wrapper: &[&str]) -> std::process::Child {
    let binary = env!("CARGO_BIN_EXE_weir-gateway");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = std::process::Command::new(program);
            c.args(args).arg(binary);
            c
        }
        None => std::process::Command::new(binary),
    };
    let mut child = command
        .args(["-f", dir.to_str().unwrap()])
        .args(["--port-map", &format!("80={port}")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap_or(0) == 0 {
            let status = child.wait();
            panic!("gateway exited: {status:?}");
        }
        if line.starts_with("listening:") {
            return child;
        }
    }
}
