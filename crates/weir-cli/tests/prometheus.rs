//! A real Prometheus (Debian's, installed by `.ci/test-tools`) scraping a
//! real `weir up` with nothing but the output of `weir prometheus-config`:
//! the seed dashboard's query gives per-version rates that match weir-load's
//! counts, pods an HPA adds are scraped within two scrape intervals of
//! being listed, removed pods leave the targets, the gateway is scraped.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::{Cluster, examples, weir_bin};
use tokio::time::Instant;

/// The scrape interval: `weir prometheus-config`'s default, as a user runs
/// it. Prometheus applies discovery changes at most every 5 s, twice over
/// (its discovery and scrape managers), so "within two scrape intervals"
/// holds for intervals of 10 s and more, the default among them.
const SCRAPE: Duration = Duration::from_secs(15);

/// Stops the test's Prometheus however the test ends.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` with `config` on a free loopback port, ready.
    async fn start(config: &Path, data: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (installed by .ci/test-tools)");
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !curl(&format!("{}/-/ready", prometheus.url)).is_some_and(|b| b.contains("Ready")) {
            assert!(Instant::now() < deadline, "prometheus not ready within 30s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        prometheus
    }

    fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut args = vec![
            "-s".to_owned(),
            "-G".to_owned(),
            format!("{}{path}", self.url),
        ];
        for (k, v) in query {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        let out = Command::new("curl").args(&args).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// An instant query's result: the value of each series by `label`.
    fn query_by(&self, query: &str, label: &str) -> Vec<(String, f64)> {
        let v = self.api("/api/v1/query", &[("query", query)]);
        v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["metric"][label].as_str().unwrap_or_default().to_owned(),
                    s["value"][1]
                        .as_str()
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(f64::NAN),
                )
            })
            .collect()
    }

    /// The active targets' labels and health.
    fn targets(&self) -> Vec<Value> {
        self.api("/api/v1/targets", &[("state", "active")])["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl").args(["-s", url]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The pods the runtime lists for Prometheus, by name.
fn listed_pods(cluster: &Cluster) -> Vec<String> {
    let text = std::fs::read_to_string(cluster.dir.path().join("prometheus/pods.json"))
        .unwrap_or_default();
    let groups: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
    let mut names: Vec<String> = groups
        .iter()
        .filter_map(|g| g["labels"]["__meta_kubernetes_pod_name"].as_str())
        .map(str::to_owned)
        .collect();
    names.dedup();
    names
}

fn seconds_since_epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Whether Prometheus's `targets` have the gateway and each `listed` pod
/// up, every pod target labelled as on Kubernetes.
fn all_scraped(listed: &[String], targets: &[Value]) -> bool {
    let up = |t: &Value| t["health"] == "up";
    let pods: Vec<&Value> = targets
        .iter()
        .filter(|t| t["labels"]["job"] == "kubernetes-pods")
        .collect();
    targets
        .iter()
        .any(|t| t["labels"]["job"] == "weir-gateway" && up(t))
        && listed.iter().all(|p| {
            pods.iter()
                .any(|t| t["labels"]["pod"] == p.as_str() && up(t))
        })
        && pods.iter().all(|t| {
            t["labels"]["app"] == "my-app"
                && t["labels"]["namespace"] == "default"
                && t["scrapeUrl"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with(":9101/metrics")
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_finds_every_pod_from_weir_prometheus_config_alone() {
    let cluster = Cluster::up(&["--hpa-sync-period", "2s", "--metrics-window", "4s"]);
    cluster.walkthrough_ready().await;
    let work = tempfile::tempdir().unwrap();
    let config = cluster.weir(&["prometheus-config"]);
    assert!(config.status.success());
    let config_path = work.path().join("prometheus.yml");
    std::fs::write(&config_path, &config.stdout).unwrap();
    let prometheus = Prometheus::start(&config_path, &work.path().join("data")).await;

    // Every pod annotated for scraping is a target, labelled as on
    // Kubernetes (the HPA may add pods meanwhile: each listed one counts).
    assert!(listed_pods(&cluster).len() >= 2);
    cluster
        .wait_for(
            "every listed pod and the gateway scraped",
            Duration::from_secs(60),
            |c| all_scraped(&listed_pods(c), &prometheus.targets()),
        )
        .await;

    // The seed dashboard's query against weir-load's counts: a steady 100
    // req/s for longer than the query's 2-minute window.
    let url = cluster.url();
    let steady = std::thread::spawn(move || {
        Command::new(weir_bin())
            .args([
                "load", &url, "-q", "100", "-c", "2", "-z", "135s", "-o", "json",
            ])
            .output()
            .unwrap()
    });
    tokio::time::sleep(Duration::from_secs(128)).await;
    let rates = prometheus.query_by(
        r#"sum(rate(http_requests_total{app="my-app"}[2m])) by (version)"#,
        "version",
    );
    let out = steady.join().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    for version in ["v1.0.0", "v2.0.0"] {
        let sent = report["versions"][version].as_f64().unwrap_or(0.0) / 135.0;
        let seen = rates
            .iter()
            .find(|(v, _)| v == version)
            .map_or(0.0, |(_, r)| *r);
        assert!(
            sent > 0.0 && (seen - sent).abs() <= 0.1 * sent,
            "{version}: Prometheus says {seen:.2} req/s, weir-load sent {sent:.2} req/s ({rates:?}, {report})"
        );
    }
    let gateway = prometheus.query_by(
        "sum(rate(istio_requests_total[1m])) by (destination_version)",
        "destination_version",
    );
    assert!(
        gateway.iter().any(|(v, r)| v == "v1.0.0" && *r > 0.0),
        "the gateway's metrics are scraped too: {gateway:?}"
    );

    // The HPA adds v2 pods under load; each is scraped within two scrape
    // intervals of being listed, without touching the configuration.
    let before = listed_pods(&cluster);
    let route = cluster.weir(&["route", "my-app", "v1=0", "v2=100"]);
    assert!(route.status.success());
    let url = cluster.url();
    let heavy = std::thread::spawn(move || {
        Command::new(weir_bin())
            .args(["load", &url, "-c", "4", "-z", "40s"])
            .output()
            .unwrap()
    });
    let mut new_pod = None;
    let deadline = Instant::now() + Duration::from_secs(45);
    while new_pod.is_none() {
        assert!(
            Instant::now() < deadline,
            "v2 never scaled: {:?}",
            listed_pods(&cluster)
        );
        new_pod = listed_pods(&cluster)
            .into_iter()
            .find(|p| p.starts_with("my-app-v2-") && !before.contains(p))
            .map(|p| (p, seconds_since_epoch(SystemTime::now())));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (pod, listed_at) = new_pod.unwrap();
    let selector = format!(r#"up{{pod="{pod}"}}[1m]"#);
    let mut first_up = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while first_up.is_none() {
        assert!(Instant::now() < deadline, "{pod} never scraped");
        let samples = prometheus.api("/api/v1/query", &[("query", &selector)]);
        first_up = samples["data"]["result"][0]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s[1] == "1")
            .and_then(|s| s[0].as_f64());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = first_up.unwrap() - listed_at;
    assert!(
        after <= 2.0 * SCRAPE.as_secs_f64() + 0.5,
        "{pod} was first scraped {after:.2}s after it was listed"
    );
    heavy.join().unwrap();

    // Removed pods leave the targets.
    let deleted = cluster.weir(&[
        "delete",
        "-f",
        examples().join("app-v2.yaml").to_str().unwrap(),
    ]);
    assert!(deleted.status.success());
    cluster
        .wait_for(
            "v2's pods to leave the targets",
            Duration::from_secs(45),
            |c| {
                !listed_pods(c).iter().any(|p| p.starts_with("my-app-v2-"))
                    && !prometheus
                        .targets()
                        .iter()
                        .any(|t| t["labels"]["version"] == "v2.0.0")
            },
        )
        .await;
}
