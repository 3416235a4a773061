//! Rollouts end to end, as a user runs them: a real `weir up`, real pods,
//! the real gateway, and requests from real sockets the whole time. Over
//! 600 lines because each of the engine's behaviours has its end-to-end
//! case here, on one set of helpers.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{Cluster, LoadOutcome, examples, load_until};

/// A Rollout of my-app from v1 to v2 in `steps`, judged every second.
fn write_rollout(dir: &Path, steps: &str, deadline: &str) -> std::path::PathBuf {
    write_rollout_judged(dir, steps, deadline, 90)
}

/// As [`write_rollout`], with the success rate it must keep, percent.
fn write_rollout_judged(
    dir: &Path,
    steps: &str,
    deadline: &str,
    min_success: u32,
) -> std::path::PathBuf {
    let path = dir.join("rollout.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: weir.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: my-app\nspec:\n  virtualService: my-app\n  stable: v1\n  canary: v2\n  steps:\n{steps}  analysis:\n    interval: 1s\n    confidence: 0.9\n    successRate: {{min: {min_success}}}\n  progressDeadline: {deadline}\n"
        ),
    )
    .unwrap();
    path
}

/// Writes a Rollout (see [`write_rollout`], plus `extra` spec lines) and
/// applies it; the returned dir holds its file.
fn apply_rollout(cluster: &Cluster, steps: &str, deadline: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rollout = write_rollout(dir.path(), steps, deadline);
    let text = std::fs::read_to_string(&rollout).unwrap();
    std::fs::write(&rollout, format!("{text}{extra}")).unwrap();
    cluster.apply_ok(&rollout);
    dir
}

fn phase(cluster: &Cluster) -> String {
    cluster
        .json("rollouts")
        .first()
        .and_then(|r| r["status"]["phase"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The walkthrough's manifests, each file's text through `edit` (given
/// the file name), applied; returns once both versions are ready.
async fn walkthrough_edited(cluster: &Cluster, edit: &dyn Fn(&str, String) -> String) {
    let manifests = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = edit(&name, std::fs::read_to_string(&path).unwrap());
        std::fs::write(manifests.path().join(&name), text).unwrap();
    }
    cluster.apply_ok(manifests.path());
    cluster
        .wait_for("both deployments ready", Duration::from_secs(60), |c| {
            c.ready("my-app-v1") == 1 && c.ready("my-app-v2") == 1
        })
        .await;
}

/// The walkthrough's manifests with `lines` added to app-v2.yaml after
/// `after`, applied; returns once both versions are ready.
async fn walkthrough_with_v2_lines(cluster: &Cluster, after: &str, lines: &str) {
    walkthrough_edited(cluster, &|file, text| {
        if file != "app-v2.yaml" {
            return text;
        }
        assert!(text.contains(after), "{text}");
        text.replace(after, &format!("{after}{lines}"))
    })
    .await;
}

/// The walkthrough's manifests with `ERROR_PERCENT` set on the versions
/// named (`v1.0.0`, `v2.0.0`), applied; returns once both are ready.
async fn walkthrough_failing(cluster: &Cluster, versions: &[&str], percent: u32) {
    walkthrough_edited(cluster, &|_, text| {
        versions.iter().fold(text, |t, v| {
            t.replace(
                &format!("        - name: VERSION\n          value: {v}\n"),
                &format!(
                    "        - name: VERSION\n          value: {v}\n        - name: ERROR_PERCENT\n          value: \"{percent}\"\n"
                ),
            )
        })
    })
    .await;
}

/// Replaces my-app's VirtualService with one whose `http:` rules are
/// `rules` (YAML at two spaces' indent), and applies it.
fn apply_my_app_rules(cluster: &Cluster, rules: &str) {
    let dir = tempfile::tempdir().unwrap();
    let vs = dir.path().join("vs.yaml");
    std::fs::write(
        &vs,
        format!(
            "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata:\n  name: my-app\nspec:\n  hosts: [\"*\"]\n  gateways: [http-gateway]\n  http:\n{rules}"
        ),
    )
    .unwrap();
    cluster.apply_ok(&vs);
}

/// Sequential requests through the gateway on a thread until stopped.
fn background_load(cluster: &Cluster) -> (Arc<AtomicBool>, std::thread::JoinHandle<LoadOutcome>) {
    let stop = Arc::new(AtomicBool::new(false));
    let addr = cluster.addr();
    let flag = stop.clone();
    let load = std::thread::spawn(move || load_until(addr, &flag, 400_000));
    (stop, load)
}

/// Waits (bounded) until the Rollout succeeded — never RolledBack or
/// Aborted on the way — then stops the load and checks every request was
/// answered 200.
async fn succeeded_under_load(
    cluster: &Cluster,
    within: Duration,
    stop: Arc<AtomicBool>,
    load: std::thread::JoinHandle<LoadOutcome>,
) -> LoadOutcome {
    cluster
        .wait_for("the rollout to succeed", within, |c| {
            let p = phase(c);
            assert!(
                p != "RolledBack" && p != "Aborted",
                "{}",
                String::from_utf8_lossy(&c.weir(&["rollout", "status", "my-app"]).stdout)
            );
            p == "Succeeded"
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    let outcome = load.join().unwrap();
    assert!(outcome.ok > 500, "{outcome:?}");
    assert_eq!(
        (outcome.refused, outcome.other, outcome.statuses.len()),
        (0, 0, 0),
        "every request answered 200: {outcome:?}"
    );
    outcome
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_canary_rolls_out_through_its_steps_under_load_without_a_failed_request() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let (stop, load) = background_load(&cluster);
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 10\n  - analysis: {}\n  - setWeight: 50\n  - analysis: {}\n  - setWeight: 100\n",
        "2m",
        "",
    );
    let outcome = succeeded_under_load(&cluster, Duration::from_secs(90), stop, load).await;
    assert!(outcome.v2 > 0);
    let status = cluster.weir(&["rollout", "status", "my-app"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("Phase:     Succeeded") && text.contains("v1 0 %, v2 100 %"),
        "{text}"
    );
    let vs = &cluster.json("virtualservices")[0];
    assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], 100);
    // What a dashboard sees: the metrics and `weir top`.
    let metrics = std::process::Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(cluster.dir.path().join("admin.sock"))
        .arg("http://weir/metrics")
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    for line in [
        r#"weir_rollout_phase{namespace="default",rollout="my-app",phase="Succeeded"} 1"#,
        r#"weir_rollout_phase{namespace="default",rollout="my-app",phase="Progressing"} 0"#,
        r#"weir_rollout_canary_weight{namespace="default",rollout="my-app"} 100"#,
        r#"weir_rollout_step{namespace="default",rollout="my-app"} 5"#,
        r#"weir_rollout_info{namespace="default",rollout="my-app",virtual_service="my-app",stable="v1",canary="v2"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
    assert!(
        metrics.lines().any(|l| l.starts_with(r#"weir_rollout_verdicts_total{namespace="default",rollout="my-app",metric="success-rate",verdict="Pass"}"#)),
        "{metrics}"
    );
    let top = cluster.weir(&["top", "--once", "-o", "json", "--interval", "200ms"]);
    let top: serde_json::Value = serde_json::from_slice(&top.stdout).unwrap();
    assert_eq!(top["rollouts"][0]["phase"], "Succeeded", "{top}");
    assert_eq!(top["rollouts"][0]["canary_weight"], 100, "{top}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_replica_canary_gets_the_replicas_its_full_share_needs_before_the_shift() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let replicas_of_v2 = |c: &Cluster| {
        c.json("deployments")
            .iter()
            .find(|d| d["metadata"]["name"] == "my-app-v2")
            .and_then(|d| d["spec"]["replicas"].as_i64())
            .unwrap()
    };
    assert_eq!(replicas_of_v2(&cluster), 1);
    let (stop, load) = background_load(&cluster);
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 10\n  - setWeight: 100\n",
        "2m",
        "",
    );
    succeeded_under_load(&cluster, Duration::from_secs(120), stop, load).await;
    let status = cluster.json("rollouts")[0]["status"].clone();
    let history: Vec<String> = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    let at = |what: &dyn Fn(&str) -> bool| {
        history
            .iter()
            .position(|m| what(m))
            .unwrap_or_else(|| panic!("not in the history: {history:#?}"))
    };
    let scaled = at(&|m| m.contains("canary 100 % needs") && m.contains("scaling the canary"));
    let ready = at(&|m| m.contains("canary replicas ready for canary 100 %"));
    let served = at(&|m| m.contains("the gateway serves canary 100 %"));
    assert!(scaled < ready && ready < served, "{history:#?}");
    let estimate = &status["capacity"];
    assert_eq!(estimate["share"], 100, "{status}");
    assert_eq!(estimate["decision"], "shift", "{status}");
    let needed = estimate["needed"].as_i64().unwrap();
    assert!(
        needed >= 2,
        "the full share needs more than one replica: {status}"
    );
    assert!(
        estimate["ready"].as_i64().unwrap() >= needed,
        "shifted only with the replicas ready: {status}"
    );
    assert!(replicas_of_v2(&cluster) >= needed);
    let shown = cluster.weir(&["rollout", "status", "my-app"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("Capacity:  canary 100 %: needs {needed} replicas")),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capacity_decision_is_kept_when_its_measurement_goes_missing() {
    // A 3 s window: once the load stops, the rate to estimate from is gone
    // within 3 s, while the canary's new pods take 12 s or more to be ready.
    let cluster = Cluster::up(&["--metrics-window", "3s"]);
    walkthrough_with_v2_lines(
        &cluster,
        "            path: /ready\n            port: probe\n",
        "          initialDelaySeconds: 12\n",
    )
    .await;
    let (stop, load) = background_load(&cluster);
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 10\n  - setWeight: 100\n",
        "2m",
        "",
    );
    let capacity = |c: &Cluster| {
        c.json("rollouts")
            .first()
            .map(|r| r["status"]["capacity"].clone())
            .unwrap_or_default()
    };
    cluster
        .wait_for(
            "a decision to raise the canary",
            Duration::from_secs(60),
            |c| {
                let estimate = capacity(c);
                estimate["share"] == 100
                    && estimate["needed"]
                        .as_i64()
                        .is_some_and(|n| n > estimate["ready"].as_i64().unwrap_or(0))
            },
        )
        .await;
    // The measurement goes: no requests, no rate to estimate from.
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    let mut kept_while_waiting = false;
    cluster
        .wait_for("the rollout to end", Duration::from_secs(90), |c| {
            let Some(r) = c.json("rollouts").first().cloned() else {
                return false;
            };
            let estimate = &r["status"]["capacity"];
            if estimate["reason"]
                .as_str()
                .is_some_and(|m| m.contains("kept from the earlier estimate"))
                && r["status"]["canaryWeight"] == 10
            {
                kept_while_waiting = true;
            }
            let p = r["status"]["phase"].as_str().unwrap_or_default().to_owned();
            matches!(p.as_str(), "Succeeded" | "RolledBack" | "Aborted")
        })
        .await;
    let status = cluster.json("rollouts")[0]["status"].clone();
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    assert!(
        kept_while_waiting,
        "the shift waited on the kept decision: {status:#}"
    );
    let estimate = &status["capacity"];
    let needed = estimate["needed"].as_i64().unwrap();
    assert!(needed >= 2, "{status:#}");
    assert!(
        estimate["ready"].as_i64().unwrap() >= needed,
        "shifted only with the decided replicas ready: {status:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn timed_pauses_as_long_as_the_deadline_do_not_count_against_it() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let started = tokio::time::Instant::now();
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 10\n  - pause: {duration: 3s}\n  - setWeight: 50\n  - pause: {duration: 3s}\n  - setWeight: 100\n",
        "3s",
        "",
    );
    cluster
        .wait_for("the rollout to end", Duration::from_secs(60), |c| {
            matches!(phase(c).as_str(), "Succeeded" | "RolledBack" | "Aborted")
        })
        .await;
    let status = cluster.json("rollouts")[0]["status"].clone();
    assert_eq!(
        status["phase"], "Succeeded",
        "two pauses of the whole deadline each are not a lack of progress: {status:#}"
    );
    assert!(
        started.elapsed() > Duration::from_secs(6),
        "both pauses ran their time"
    );
    let served: Vec<&str> = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("the gateway serves canary"))
        .collect();
    assert_eq!(served.len(), 3, "{status:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_answering_errors_is_rolled_back_and_then_gets_no_routed_request() {
    let cluster = Cluster::up(&[]);
    walkthrough_failing(&cluster, &["v2.0.0"], 20).await;
    let (stop, load) = background_load(&cluster);
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 20\n  - analysis: {}\n  - setWeight: 100\n",
        "2m",
        "",
    );
    cluster
        .wait_for("the rollback", Duration::from_secs(60), |c| {
            phase(c) == "RolledBack"
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    // Rolled back and confirmed: the canary serves none of the routed traffic.
    let stop = AtomicBool::new(false);
    let after = load_until(cluster.addr(), &stop, 500);
    assert_eq!(after.ok, 500, "{after:?}");
    assert_eq!(after.v2, 0, "{after:?}");
    let status = cluster.weir(&["rollout", "status", "my-app"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        status.status.code(),
        Some(1),
        "status exits 1 after a rollback: {text}"
    );
    assert!(
        text.contains("analysis failed (success-rate Fail"),
        "{text}"
    );
    assert!(text.contains("v1 100 %, v2 0 %"), "{text}");
    // Retry starts again from step 0 (and v2 gets its 20 % again).
    let retry = cluster.weir(&["rollout", "retry", "my-app"]);
    assert!(
        retry.status.success(),
        "{}",
        String::from_utf8_lossy(&retry.stderr)
    );
    assert!(String::from_utf8_lossy(&retry.stdout).contains("retried (phase Progressing)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_that_hangs_one_request_in_ten_is_never_promoted() {
    let cluster = Cluster::up(&[]);
    walkthrough_with_v2_lines(
        &cluster,
        "        - name: VERSION\n          value: v2.0.0\n",
        "        - name: HANG_PERCENT\n          value: \"10\"\n",
    )
    .await;
    // Clients that give up after a second, four at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop) = (cluster.addr(), stop.clone());
            std::thread::spawn(move || {
                support::load_until_within(addr, &stop, 100_000, Duration::from_secs(1))
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let rollout = write_rollout_judged(
        dir.path(),
        "  - setWeight: 50\n  - analysis: {}\n  - setWeight: 100\n",
        "2m",
        99,
    );
    cluster.apply_ok(&rollout);
    cluster
        .wait_for("the rollout to end", Duration::from_secs(90), |c| {
            let p = phase(c);
            assert_ne!(
                p,
                "Succeeded",
                "{}",
                String::from_utf8_lossy(&c.weir(&["rollout", "status", "my-app"]).stdout)
            );
            p == "RolledBack"
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    let gave_up: usize = loads.into_iter().map(|l| l.join().unwrap().other).sum();
    assert!(gave_up > 0, "the clients saw requests hang");
    let status = cluster.weir(&["rollout", "status", "my-app"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("success-rate Fail"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_traffic_a_rollout_never_succeeds_and_pauses_at_its_deadline_for_a_person() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 10\n  - analysis: {}\n  - setWeight: 100\n",
        "4s",
        "",
    );
    cluster
        .wait_for("the pause at the deadline", Duration::from_secs(30), |c| {
            let p = phase(c);
            assert_ne!(p, "Succeeded", "no requests must never pass");
            assert_ne!(p, "RolledBack", "nothing was found wrong with the canary");
            p == "Paused"
        })
        .await;
    let r = &cluster.json("rollouts")[0];
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("analysis inconclusive for 4s"),
        "{message}"
    );
    assert_eq!(
        r["status"]["conditions"][0]["reason"], "InconclusiveAtDeadline",
        "{r}"
    );
    assert_eq!(r["status"]["verdicts"][0]["verdict"], "Inconclusive", "{r}");
    assert_eq!(r["status"]["verdicts"][0]["n"], 0);
    assert_eq!(r["status"]["canaryWeight"], 10);
    // A person decides: abort sends everything back to the stable.
    let abort = cluster.weir(&["rollout", "abort", "my-app"]);
    assert!(
        abort.status.success(),
        "{}",
        String::from_utf8_lossy(&abort.stderr)
    );
    let r = &cluster.json("rollouts")[0];
    assert_eq!(r["status"]["phase"], "Aborted", "{r}");
    assert_eq!(r["status"]["canaryWeight"], 0, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_a_rollout_drives_is_routed_only_with_force_a_weight_changed_behind_its_back_is_put_back_and_a_deleted_rollout_reverts()
 {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let rollout = apply_rollout(
        &cluster,
        "  - setWeight: 30\n  - pause: {}\n  - setWeight: 100\n",
        "2m",
        "",
    );
    cluster
        .wait_for("the pause", Duration::from_secs(20), |c| {
            phase(c) == "Paused"
        })
        .await;
    let canary_weight =
        |c: &Cluster| c.json("virtualservices")[0]["spec"]["http"][0]["route"][1]["weight"].clone();
    // `weir route` on the rule the Rollout drives is refused, naming it.
    let by_hand = cluster.weir(&["route", "my-app", "v1=50", "v2=50"]);
    assert_eq!(by_hand.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&by_hand.stderr).contains("driven by Rollout \"my-app\""),
        "{}",
        String::from_utf8_lossy(&by_hand.stderr)
    );
    assert_eq!(canary_weight(&cluster), 30);
    // Behind its back (the walkthrough's VirtualService applied again, at
    // 10 %): put back.
    cluster.apply_ok(&examples().join("istio.yaml"));
    cluster
        .wait_for("the weight put back", Duration::from_secs(20), |c| {
            let text = String::from_utf8_lossy(&c.weir(&["rollout", "status", "my-app"]).stdout)
                .into_owned();
            canary_weight(c) == 30
                && text.contains("served canary 10 % where this rollout holds 30 %: put back")
        })
        .await;
    // `--force` routes by hand: the Rollout pauses and lets the weights be.
    let forced = cluster.weir(&["route", "my-app", "v1=50", "v2=50", "--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert!(String::from_utf8_lossy(&forced.stdout).contains("paused"));
    cluster
        .wait_for(
            "the status to see the hand-set weight",
            Duration::from_secs(20),
            |c| c.json("rollouts")[0]["status"]["canaryWeight"] == 50,
        )
        .await;
    assert_eq!(canary_weight(&cluster), 50);
    let text = String::from_utf8_lossy(&cluster.weir(&["rollout", "status", "my-app"]).stdout)
        .into_owned();
    assert!(
        text.contains("routed by hand") && !text.contains("served canary 50 %"),
        "{text}"
    );
    let deleted = cluster.weir(&[
        "delete",
        "-f",
        rollout.path().join("rollout.yaml").to_str().unwrap(),
    ]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    cluster
        .wait_for(
            "all traffic back to the stable",
            Duration::from_secs(20),
            |c| canary_weight(c) == 0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_failing_while_paused_is_rolled_back() {
    let cluster = Cluster::up(&[]);
    walkthrough_failing(&cluster, &["v2.0.0"], 30).await;
    let (stop, load) = background_load(&cluster);
    let _rollout = apply_rollout(
        &cluster,
        // The walkthrough's route already gives v2 10 %: paused at once.
        "  - pause: {}\n  - setWeight: 100\n",
        "2m",
        "",
    );
    cluster
        .wait_for(
            "the rollback from the pause",
            Duration::from_secs(60),
            |c| phase(c) == "RolledBack",
        )
        .await;
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    let r = &cluster.json("rollouts")[0];
    assert_eq!(
        r["status"]["currentStep"], 0,
        "failed during the pause: {r}"
    );
    assert_eq!(r["status"]["canaryWeight"], 0, "{r}");
    let history: Vec<&str> = r["status"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    let paused = history
        .iter()
        .position(|m| m.contains("paused until"))
        .unwrap();
    let failed = history
        .iter()
        .position(|m| m.starts_with("analysis failed"))
        .unwrap();
    assert!(paused < failed, "{history:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_resumes_at_its_step_with_its_weights_after_weir_up_is_killed() {
    let mut cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 30\n  - pause: {}\n  - setWeight: 100\n",
        "2m",
        "",
    );
    cluster
        .wait_for("the pause", Duration::from_secs(20), |c| {
            phase(c) == "Paused"
        })
        .await;
    cluster.kill9();
    cluster.start();
    let r = &cluster.json("rollouts")[0];
    assert_eq!(
        (
            r["status"]["phase"].as_str(),
            r["status"]["currentStep"].as_u64()
        ),
        (Some("Paused"), Some(1)),
        "{r}"
    );
    let vs = &cluster.json("virtualservices")[0];
    assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], 30, "{vs}");
    let promote = cluster.weir(&["rollout", "promote", "my-app"]);
    assert!(
        promote.status.success(),
        "{}",
        String::from_utf8_lossy(&promote.stderr)
    );
    cluster
        .wait_for("the end", Duration::from_secs(20), |c| {
            phase(c) == "Succeeded"
        })
        .await;
    let missing = cluster.weir(&["rollout", "abort", "nope"]);
    assert_eq!(
        missing.status.code(),
        Some(2),
        "an unknown Rollout is bad input"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_spec_traffic_a_rollout_concludes_on_its_own_load_alone() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 20\n  - analysis: {}\n  - setWeight: 100\n",
        "2m",
        "  traffic: {rate: 200}\n",
    );
    // No load from the test: weir's own gets the gate its requests.
    cluster
        .wait_for(
            "the gate to pass on weir's own traffic",
            Duration::from_secs(60),
            |c| {
                let r = &c.json("rollouts")[0];
                assert_ne!(r["status"]["phase"], "RolledBack", "{r}");
                r["status"]["currentStep"].as_u64() >= Some(2)
            },
        )
        .await;
    cluster
        .wait_for("the end", Duration::from_secs(20), |c| {
            phase(c) == "Succeeded"
        })
        .await;
    let r = &cluster.json("rollouts")[0];
    assert_eq!(
        r["status"]["trafficRate"],
        serde_json::Value::Null,
        "stopped once concluded: {r}"
    );
    assert!(r["status"]["verdicts"][0]["n"].as_u64().unwrap() > 0, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_before_exposure_measures_the_rules_rate_and_apply_prints_its_line() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_rollout(
        dir.path(),
        "  - setWeight: 10\n  - analysis: {}\n  - setWeight: 100\n",
        "2m",
    );
    let file = file.to_str().unwrap();
    // Offline, at a given rate: requests and times, as data too.
    let out = cluster.weir(&["rollout", "plan", "-f", file, "--rate", "100", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let goal = &plan["my-app"]["gates"][0]["goals"][0];
    assert_eq!(plan["my-app"]["gates"][0]["weight"], 10);
    let n = goal["passRequests"].as_f64().unwrap();
    assert!(
        (goal["passSeconds"].as_f64().unwrap() - n / 10.0).abs() < 1e-6,
        "{plan}"
    );
    let bad = cluster.weir(&["rollout", "plan", "-f", file, "--rate", "-1"]);
    assert_eq!(bad.status.code(), Some(2));
    // Measured from the running gateway under load.
    let (stop, load) = background_load(&cluster);
    let out = cluster.weir(&["rollout", "plan", "-f", file]);
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("step 1 at canary 10 %, success-rate: Pass of a clean canary ~"),
        "{text}"
    );
    assert!(!text.contains("rate unknown"), "{text}");
    assert!(text.contains(" req/s"), "{text}");
    // `apply` says what a clean canary needs.
    let applied = cluster.apply(Path::new(file));
    let text = String::from_utf8_lossy(&applied.stdout);
    assert!(
        text.contains("rollout.weir.dev/my-app plan: a clean canary passes step 1 (canary 10 %) ~"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spec_traffic_sends_what_the_rules_match_needs() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    // Testers reach the split with a header; everyone else gets v1.
    apply_my_app_rules(
        &cluster,
        "  - match:\n    - headers:\n        x-beta: {exact: \"1\"}\n    route:\n    - destination: {host: my-app, subset: v1, port: {number: 80}}\n      weight: 90\n    - destination: {host: my-app, subset: v2, port: {number: 80}}\n      weight: 10\n  - route:\n    - destination: {host: my-app, subset: v1, port: {number: 80}}\n",
    );
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 20\n  - analysis: {}\n  - setWeight: 100\n",
        "2m",
        "  route: 0\n  traffic: {rate: 200}\n",
    );
    // Only requests carrying the header reach the canary: the gate
    // concludes on weir's own load alone because it sends it.
    cluster
        .wait_for(
            "the gate to pass on weir's own traffic through the header rule",
            Duration::from_secs(60),
            |c| {
                let r = &c.json("rollouts")[0];
                assert_ne!(r["status"]["phase"], "RolledBack", "{r}");
                r["status"]["currentStep"].as_u64() >= Some(2)
            },
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_stored_status_holds_the_weight_until_abort() {
    let mut cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 30\n  - pause: {}\n  - setWeight: 100\n",
        "2m",
        "",
    );
    cluster
        .wait_for("the pause", Duration::from_secs(20), |c| {
            phase(c) == "Paused"
        })
        .await;
    cluster.kill9();
    // The stored status is damaged while weir up is down.
    let store = weir_runtime::store::Store::open(&cluster.dir.path().join("state.db")).unwrap();
    let rollout = weir_api::resource::ObjectRef {
        kind: weir_api::resource::Kind::Rollout,
        namespace: "default".into(),
        name: "my-app".into(),
    };
    store.set_status(&rollout, "{\"phase\": 7").unwrap();
    drop(store);
    cluster.start();
    cluster
        .wait_for("the hold", Duration::from_secs(20), |c| {
            c.json("rollouts")[0]["status"]["conditions"][0]["reason"] == "StatusUnreadable"
        })
        .await;
    let r = &cluster.json("rollouts")[0];
    assert_eq!(r["status"]["phase"], "Paused", "{r}");
    let vs = &cluster.json("virtualservices")[0];
    assert_eq!(
        vs["spec"]["http"][0]["route"][1]["weight"], 30,
        "never started from step 0: {vs}"
    );
    // Promote cannot go on from an unknown step; abort can.
    let promote = cluster.weir(&["rollout", "promote", "my-app"]);
    assert_eq!(
        promote.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&promote.stdout)
    );
    let abort = cluster.weir(&["rollout", "abort", "my-app"]);
    assert!(
        abort.status.success(),
        "{}",
        String::from_utf8_lossy(&abort.stderr)
    );
    let vs = &cluster.json("virtualservices")[0];
    assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], 0, "{vs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_canary_revision_restarts_the_rollout_from_its_first_step() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 30\n  - pause: {}\n  - setWeight: 100\n",
        "2m",
        "",
    );
    cluster
        .wait_for("the pause", Duration::from_secs(20), |c| {
            phase(c) == "Paused"
        })
        .await;
    let first = cluster.json("rollouts")[0]["status"]["canaryRevision"].clone();
    assert!(first.is_string(), "{first}");
    // v2's pod template changes mid-rollout: a new revision.
    let manifests = tempfile::tempdir().unwrap();
    let v2 = manifests.path().join("app-v2.yaml");
    let text = std::fs::read_to_string(examples().join("app-v2.yaml")).unwrap();
    std::fs::write(
        &v2,
        text.replace(
            "        - name: VERSION\n          value: v2.0.0\n",
            "        - name: VERSION\n          value: v2.0.0\n        - name: RELEASE\n          value: \"2\"\n",
        ),
    )
    .unwrap();
    cluster.apply_ok(&v2);
    cluster
        .wait_for("the restart", Duration::from_secs(20), |c| {
            let r = &c.json("rollouts")[0];
            r["status"]["history"].as_array().is_some_and(|h| {
                h.iter().any(|e| {
                    e["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("new canary revision"))
                })
            })
        })
        .await;
    // From its first step again, with the new revision recorded.
    cluster
        .wait_for("paused again", Duration::from_secs(20), |c| {
            phase(c) == "Paused"
        })
        .await;
    let r = &cluster.json("rollouts")[0];
    assert_eq!(r["status"]["currentStep"], 1, "{r}");
    assert_ne!(r["status"]["canaryRevision"], first, "{r}");
    assert_eq!(
        r["status"]["observedGeneration"], r["metadata"]["generation"],
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_another_rule_sends_the_canary_do_not_count_for_the_rollouts_rule() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    // Testers reach v2 through their own rule; the Rollout manages the
    // users' rule below it.
    apply_my_app_rules(
        &cluster,
        "  - match:\n    - headers:\n        x-tester: {exact: \"1\"}\n    route:\n    - destination: {host: my-app, subset: v2, port: {number: 80}}\n  - route:\n    - destination: {host: my-app, subset: v1, port: {number: 80}}\n      weight: 90\n    - destination: {host: my-app, subset: v2, port: {number: 80}}\n      weight: 10\n",
    );
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 10\n  - analysis: {}\n  - setWeight: 100\n",
        "2m",
        "  route: 1\n",
    );
    cluster
        .wait_for("the gate", Duration::from_secs(20), |c| {
            c.json("rollouts")[0]["status"]["currentStep"] == 1
        })
        .await;
    // 2,000 testers' requests to v2: far more than a verdict needs.
    let load = cluster.weir(&["load", "-n", "2000", "-c", "2", "-H", "x-tester: 1"]);
    let text = String::from_utf8_lossy(&load.stdout);
    assert!(load.status.success(), "{text}");
    assert!(text.contains("v2"), "{text}");
    // Judged after the load: the rule's canary saw none of them.
    let judged_after = cluster.json("rollouts")[0]["status"]["analyses"]
        .as_u64()
        .unwrap_or(0);
    cluster
        .wait_for("a look after the load", Duration::from_secs(20), |c| {
            c.json("rollouts")[0]["status"]["analyses"]
                .as_u64()
                .unwrap_or(0)
                > judged_after + 1
        })
        .await;
    let r = &cluster.json("rollouts")[0];
    assert_eq!(
        r["status"]["currentStep"], 1,
        "not passed on testers' requests: {r}"
    );
    assert_eq!(r["status"]["verdicts"][0]["n"], 0, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_incident_holds_the_rollout_instead_of_rolling_the_canary_back() {
    let cluster = Cluster::up(&[]);
    // Both versions fail 30 % of their requests: a shared dependency.
    walkthrough_failing(&cluster, &["v1.0.0", "v2.0.0"], 30).await;
    let (stop, load) = background_load(&cluster);
    let _rollout = apply_rollout(
        &cluster,
        "  - setWeight: 20\n  - analysis: {}\n  - setWeight: 100\n",
        "2m",
        "",
    );
    cluster
        .wait_for("the hold", Duration::from_secs(60), |c| {
            let r = &c.json("rollouts")[0];
            assert_ne!(r["status"]["phase"], "RolledBack", "{r}");
            r["status"]["conditions"][0]["reason"] == "SharedIncident"
        })
        .await;
    // Held for a few more looks, never blamed.
    let looks = cluster.json("rollouts")[0]["status"]["analyses"]
        .as_u64()
        .unwrap_or(0);
    cluster
        .wait_for("more looks", Duration::from_secs(20), |c| {
            let r = &c.json("rollouts")[0];
            assert_ne!(r["status"]["phase"], "RolledBack", "{r}");
            r["status"]["analyses"].as_u64().unwrap_or(0) >= looks + 3
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    // Held where it was when the incident began: neither shifted further
    // nor rolled back (the walkthrough's route gave v2 10 % already).
    let r = &cluster.json("rollouts")[0];
    assert_eq!(r["status"]["canaryWeight"], 10, "{r}");
    assert_eq!(r["status"]["currentStep"], 0, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("shared incident"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_while_rolled_back_does_not_re_promote_the_unchanged_canary() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    let rollout = apply_rollout(
        &cluster,
        "  - setWeight: 30\n  - pause: {}\n  - setWeight: 100\n",
        "2m",
        "",
    );
    cluster
        .wait_for("the pause", Duration::from_secs(20), |c| {
            phase(c) == "Paused"
        })
        .await;
    let abort = cluster.weir(&["rollout", "abort", "my-app"]);
    assert!(
        abort.status.success(),
        "{}",
        String::from_utf8_lossy(&abort.stderr)
    );
    // A GitOps re-sync edits the steps: the same canary stays rolled back.
    let file = write_rollout(
        rollout.path(),
        "  - setWeight: 50\n  - pause: {}\n  - setWeight: 100\n",
        "2m",
    );
    cluster.apply_ok(&file);
    cluster
        .wait_for("the edit seen", Duration::from_secs(20), |c| {
            c.json("rollouts")[0]["status"]["history"]
                .as_array()
                .is_some_and(|h| {
                    h.iter().any(|e| {
                        e["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("stays rolled back"))
                    })
                })
        })
        .await;
    let r = &cluster.json("rollouts")[0];
    assert_eq!(r["status"]["phase"], "Aborted", "{r}");
    let vs = &cluster.json("virtualservices")[0];
    assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], 0, "{vs}");
}
