//! A Rollout's webhooks against a real HTTP server on loopback: the gates
//! hold, the answers' effects, and the JSON each hook is sent (Flagger's).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::Cluster;

/// A hook server: each path answers the status set for it (200 unless
/// set), and every request's path and JSON body is kept.
#[derive(Clone, Default)]
struct Hooks {
    answers: Arc<Mutex<HashMap<String, u16>>>,
    calls: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Hooks {
    /// Serves on a free loopback port (a thread per connection, for the
    /// test's length); its base URL.
    fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hooks = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let hooks = hooks.clone();
                std::thread::spawn(move || hooks.answer(stream));
            }
        });
        url
    }

    fn answer(&self, mut stream: std::net::TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        self.calls.lock().unwrap().push((path.clone(), json));
        let code = self
            .answers
            .lock()
            .unwrap()
            .get(&path)
            .copied()
            .unwrap_or(200);
        let _ = stream.write_all(
            format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno")
                .as_bytes(),
        );
    }

    fn set(&self, path: &str, code: u16) {
        self.answers.lock().unwrap().insert(path.to_owned(), code);
    }

    /// The bodies sent to `path` so far.
    fn sent(&self, path: &str) -> Vec<serde_json::Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

fn status(cluster: &Cluster) -> serde_json::Value {
    cluster
        .json("rollouts")
        .first()
        .map(|r| r["status"].clone())
        .unwrap_or_default()
}

fn canary_weight(cluster: &Cluster) -> serde_json::Value {
    cluster.json("virtualservices")[0]["spec"]["http"][0]["route"][1]["weight"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn hooks_gate_check_and_are_told_as_flagger_tells_them() {
    let hooks = Hooks::default();
    let base = hooks.serve();
    hooks.set("/gate", 403);
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    cluster.route(&["v1=100", "v2=0"]);
    let dir = tempfile::tempdir().unwrap();
    let rollout = dir.path().join("rollout.yaml");
    std::fs::write(
        &rollout,
        format!(
            "apiVersion: weir.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: my-app\nspec:\n  virtualService: my-app\n  stable: v1\n  canary: v2\n  steps:\n  - setWeight: 20\n  - pause: {{}}\n  - setWeight: 100\n  analysis:\n    interval: 1s\n    successRate: {{min: 50}}\n    failureLimit: 1\n  progressDeadline: 3s\n  webhooks:\n  - {{name: gate, type: confirm-rollout, url: \"{base}/gate\"}}\n  - {{name: smoke, type: pre-rollout, url: \"{base}/pre\", timeout: 2s}}\n  - {{name: check, type: rollout, url: \"{base}/check\"}}\n  - {{name: tell, type: post-rollout, url: \"{base}/post\", metadata: {{team: web}}}}\n"
        ),
    )
    .unwrap();
    cluster.apply_ok(&rollout);

    // The closed gate holds the canary at 0 %, past the 3 s deadline: five
    // asks, one per 1 s interval, span at least 4 s.
    cluster
        .wait_for("the gate asked five times", Duration::from_secs(30), |_| {
            hooks.sent("/gate").len() >= 5
        })
        .await;
    let s = status(&cluster);
    assert_eq!(s["phase"], "Progressing", "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("waiting for confirm-rollout hook \"gate\" (it answered HTTP 403: no)"),
        "{s}"
    );
    assert_eq!(canary_weight(&cluster), 0);
    assert!(
        hooks.sent("/pre").is_empty(),
        "pre-rollout waits for the gate"
    );
    let gate = &hooks.sent("/gate")[0];
    assert_eq!(gate["name"], "my-app");
    assert_eq!(gate["namespace"], "default");
    assert_eq!(gate["phase"], "Waiting");
    assert!(
        gate["checksum"].as_str().is_some_and(|c| !c.is_empty()),
        "{gate}"
    );

    // Opened: pre-rollout, then the canary's traffic, then the checks.
    hooks.set("/gate", 200);
    cluster
        .wait_for("the canary at 20 %", Duration::from_secs(20), |c| {
            canary_weight(c) == 20
        })
        .await;
    assert_eq!(hooks.sent("/pre")[0]["phase"], "Progressing");
    cluster
        .wait_for("a rollout check", Duration::from_secs(20), |_| {
            !hooks.sent("/check").is_empty()
        })
        .await;
    assert_eq!(status(&cluster)["phase"], "Paused");

    // A failing check rolls back (failureLimit 1), after its retries.
    hooks.set("/check", 500);
    cluster
        .wait_for("the rollback", Duration::from_secs(30), |c| {
            status(c)["phase"] == "RolledBack"
        })
        .await;
    let s = status(&cluster);
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("rollout hook \"check\" failed: HTTP 500: no (after 3 attempts)"),
        "{s}"
    );
    assert_eq!(canary_weight(&cluster), 0);
    cluster
        .wait_for("post-rollout told", Duration::from_secs(20), |_| {
            !hooks.sent("/post").is_empty()
        })
        .await;
    let post = &hooks.sent("/post")[0];
    assert_eq!(post["phase"], "Failed");
    assert_eq!(post["metadata"], serde_json::json!({"team": "web"}));
}
