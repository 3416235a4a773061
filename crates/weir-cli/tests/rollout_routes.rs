//! A Rollout's header-matched (A/B) and mirrored steps, end to end: a
//! real `weir up`, the walkthrough, requests with and without the header
//! from real sockets, the gateway's answers and its VirtualService.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::Cluster;

/// Sequential requests (with `header` when given) until stopped or
/// `limit`; the versions that answered 200, and how many did not.
fn requests(
    addr: std::net::SocketAddr,
    header: Option<&'static str>,
    stop: Arc<AtomicBool>,
    limit: usize,
) -> std::thread::JoinHandle<(BTreeMap<String, usize>, usize)> {
    std::thread::spawn(move || {
        let (mut versions, mut other) = (BTreeMap::new(), 0);
        for _ in 0..limit {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
                other += 1;
                continue;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let extra = header.map_or(String::new(), |h| format!("{h}\r\n"));
            let request = format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
            let mut answer = String::new();
            let ok = stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_string(&mut answer).is_ok();
            match (ok, answer.split(' ').nth(1)) {
                (true, Some("200")) => {
                    let version = answer.split("Version: ").nth(1).map_or("", str::trim);
                    *versions.entry(version.to_owned()).or_default() += 1;
                }
                _ => other += 1,
            }
        }
        (versions, other)
    })
}

fn status(cluster: &Cluster) -> serde_json::Value {
    cluster
        .json("rollouts")
        .first()
        .map(|r| r["status"].clone())
        .unwrap_or_default()
}

fn rules(cluster: &Cluster) -> Vec<serde_json::Value> {
    cluster.json("virtualservices")[0]["spec"]["http"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_route_then_a_mirror_judge_the_canary_while_plain_clients_see_the_stable() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    cluster.route(&["v1=100", "v2=0"]);
    let stop = Arc::new(AtomicBool::new(false));
    let plain = requests(cluster.addr(), None, stop.clone(), 200_000);
    let testers = requests(cluster.addr(), Some("x-canary: yes"), stop.clone(), 200_000);
    let dir = tempfile::tempdir().unwrap();
    let rollout = dir.path().join("rollout.yaml");
    std::fs::write(
        &rollout,
        "apiVersion: weir.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: my-app\nspec:\n  virtualService: my-app\n  stable: v1\n  canary: v2\n  steps:\n  - setHeaderRoute:\n      match:\n      - headers: {x-canary: {exact: \"yes\"}}\n  - analysis: {}\n  - setHeaderRoute: {}\n  - setMirror: {percentage: 100}\n  - analysis: {}\n  - setWeight: 100\n  analysis:\n    interval: 1s\n    confidence: 0.9\n    successRate: {min: 90}\n  progressDeadline: 2m\n",
    )
    .unwrap();
    cluster.apply_ok(&rollout);

    // Step 1: the header rule sends the testers to v2, judged on them.
    cluster
        .wait_for(
            "the header route's analysis",
            Duration::from_secs(30),
            |c| status(c)["currentStep"] == 1,
        )
        .await;
    let now = rules(&cluster);
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0]["name"], "weir-header-my-app");
    assert_eq!(now[0]["route"][0]["destination"]["subset"], "v2");
    assert_eq!(now[1]["route"][1]["weight"], 0, "no weight moved");
    // Step 4: the header rule gone, every request mirrored, judged on the
    // copies' answers.
    cluster
        .wait_for("the mirror's analysis", Duration::from_secs(60), |c| {
            status(c)["currentStep"] == 4
        })
        .await;
    let now = rules(&cluster);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0]["mirror"]["subset"], "v2");
    assert_eq!(now[0]["mirrorPercentage"]["value"], 100.0);
    let judged_at_4 = status(&cluster)["history"].clone();
    cluster
        .wait_for("the rollout to succeed", Duration::from_secs(60), |c| {
            status(c)["phase"] == "Succeeded"
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    let (plain, plain_failed) = plain.join().unwrap();
    let (testers, testers_failed) = testers.join().unwrap();
    assert_eq!((plain_failed, testers_failed), (0, 0));
    assert!(
        testers.get("v2.0.0").copied().unwrap_or(0) > 50,
        "{testers:?}"
    );
    // Plain clients saw v2 only at the last step (weight 100).
    assert!(plain.get("v1.0.0").copied().unwrap_or(0) > 100, "{plain:?}");
    let history = status(&cluster)["history"].to_string();
    assert!(
        history.contains("step 3: the gateway mirrors 100 % to the canary")
            && history.contains("step 4: analysis passed"),
        "{judged_at_4} / {history}"
    );
    // Done: no header rule, no mirror, all weight to v2.
    let now = rules(&cluster);
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(now[0].get("mirror").is_none(), "{now:?}");
    assert_eq!(now[0]["route"][1]["weight"], 100);
}
