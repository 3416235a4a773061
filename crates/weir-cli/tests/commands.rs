//! The walkthrough's commands with a verdict: `weir verify`, `weir load`,
//! `weir top --once`, and `weir demo` in full (twice at once).

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

async fn walkthrough() -> Cluster {
    let cluster = Cluster::up(&[]);
    assert!(cluster.apply(&examples()).status.success());
    cluster
        .wait_for("both deployments ready", Duration::from_secs(30), |c| {
            c.ready("my-app-v1") == 1 && c.ready("my-app-v2") == 1
        })
        .await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_90_10_fails_50_50_with_a_reason_and_passes_0_100_after_route() {
    let cluster = walkthrough().await;
    let out = cluster.weir(&["verify", "--expect", "v1=90,v2=10"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("PASS: over "), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("v1") && l.contains("90.0%")),
        "{stdout}"
    );

    let out = cluster.weir(&["verify", "--expect", "v1=50,v2=50"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let reason = stdout
        .lines()
        .find(|l| l.starts_with("FAIL: "))
        .expect("a one-sentence reason");
    assert!(reason.contains("where 50.0% was expected"), "{reason}");

    assert!(
        cluster
            .weir(&["route", "my-app", "v1=0", "v2=100"])
            .status
            .success()
    );
    let out = cluster.weir(&["verify", "--expect", "v1=0,v2=100", "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], true);
    assert_eq!(v["split"]["shares"][0]["count"], 0);

    // --replicas waits for scaling, and fails when it does not come.
    let out = cluster.weir(&["verify", "--replicas", "my-app-v2>=1", "--within", "5s"]);
    assert_eq!(out.status.code(), Some(0));
    let out = cluster.weir(&["verify", "--replicas", "my-app-v1>=3", "--within", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("FAIL: my-app-v1 has 1 ready replicas, not 3")
    );

    // Bad input is exit 2.
    assert_eq!(
        cluster
            .weir(&["verify", "--expect", "v1=ninety"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        cluster.weir(&["route", "my-app", "v3=100"]).status.code(),
        Some(2)
    );
    assert_eq!(
        cluster.weir(&["route", "my-app", "v1=-1"]).status.code(),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_reports_json_and_top_sees_the_split_by_version() {
    let cluster = walkthrough().await;
    let out = cluster.weir(&[
        "load", "-c", "2", "-n", "500", "--users", "20", "-o", "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["requests"], 500);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["status"]["200"], 500);
    assert_eq!(report["versions"]["v1.0.0"], 450);
    assert_eq!(report["versions"]["v2.0.0"], 50);
    for p in ["p50", "p90", "p99", "p999"] {
        assert!(report["latency_ms"][p].as_f64().unwrap() > 0.0, "{p}");
    }

    // A fixed rate is held: 200 req/s for 2 s.
    let out = cluster.weir(&["load", "-c", "2", "-q", "200", "-z", "2s", "-o", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = report["requests"].as_u64().unwrap();
    assert!((380..=402).contains(&n), "{n} requests at 200/s for 2 s");

    // top: run load in the background while taking one snapshot.
    let url = cluster.url();
    let load = std::thread::spawn(move || {
        Command::new(weir_bin())
            .args(["load", &url, "-c", "2", "-z", "3s"])
            .output()
            .unwrap()
    });
    let out = cluster.weir(&["top", "--once", "-o", "json", "--interval", "1s"]);
    load.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top: Value = serde_json::from_slice(&out.stdout).unwrap();
    let versions = top["versions"].as_array().unwrap();
    let share = |v: &str| {
        versions
            .iter()
            .find(|x| x["version"] == v)
            .and_then(|x| x["share"].as_f64())
            .unwrap_or(-1.0)
    };
    assert!((share("v1.0.0") - 90.0).abs() < 1.0, "{top}");
    assert!(
        versions
            .iter()
            .all(|v| v["rps"].as_f64().unwrap() > 0.0 && v["p99_ms"].as_f64().is_some()),
        "{top}"
    );
    let deployments = top["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 2);
    assert!(deployments.iter().all(|d| d["cpu_target"] == 50), "{top}");

    // Bad input is exit 2.
    assert_eq!(
        cluster.weir(&["load", "ftp://x/", "-n", "1"]).status.code(),
        Some(2)
    );
    assert_eq!(
        cluster.weir(&["load", "-c", "0", "-n", "1"]).status.code(),
        Some(2)
    );
}

#[test]
fn the_demo_runs_in_full_twice_at_the_same_time() {
    let started = tokio::time::Instant::now();
    let runs: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| Command::new(weir_bin()).arg("demo").output().unwrap()))
        .collect();
    for run in runs {
        let out = run.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for check in [
            "both deployments have a ready pod",
            "traffic splits 90/10",
            "traffic splits 0/100",
            "v2 scales up under load",
            "v1 receives none of the load",
            "clean up",
        ] {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(check) && l.contains("pass")),
                "{check}\n{stdout}"
            );
        }
        assert!(stdout.contains("PASS in "), "{stdout}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_selects_by_label_and_prints_names_jsonpath_and_bare_rows() {
    let cluster = walkthrough().await;
    let text = |args: &[&str]| {
        let out = cluster.weir(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let names = text(&[
        "get",
        "pods",
        "-l",
        "app=my-app,version=v2.0.0",
        "-o",
        "name",
    ]);
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("pod/my-app-v2-"), "{names:?}");
    let both = text(&[
        "get",
        "pods",
        "-l",
        "version in (v1.0.0,v2.0.0)",
        "-o",
        "name",
    ]);
    assert_eq!(both.lines().count(), 2, "{both}");
    let none = text(&["get", "pods", "-l", "!app", "-o", "name"]);
    assert_eq!(none, "");
    assert_eq!(
        text(&["get", "deploy", "-o", "name"]),
        "deployment.apps/my-app-v1\ndeployment.apps/my-app-v2\n"
    );
    let rows = text(&["get", "deploy", "--no-headers"]);
    assert_eq!(rows.lines().count(), 2, "{rows}");
    assert!(rows.lines().all(|l| l.starts_with("my-app-v")), "{rows}");
    assert_eq!(
        text(&["get", "deploy", "-o", "jsonpath={.items[*].metadata.name}"]),
        "my-app-v1 my-app-v2"
    );
    assert_eq!(
        text(&[
            "get",
            "deploy",
            "my-app-v2",
            "-o",
            r#"jsonpath={.spec.template.metadata.labels.version}{"\n"}"#
        ]),
        "v2.0.0\n"
    );
    for bad in [
        ["get", "pods", "-l", "app in my-app"],
        ["get", "pods", "-o", "jsonpath={range .items[*]}"],
    ] {
        let out = cluster.weir(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_and_verify_find_their_target_or_say_so_and_send_what_they_are_told() {
    // Nothing running: exit 3 and why, never a default URL.
    let nowhere = tempfile::tempdir().unwrap();
    let state = nowhere.path().to_str().unwrap();
    for args in [
        vec!["load", "-n", "5", "--state-dir", state],
        vec!["verify", "--expect", "v1=90,v2=10", "--state-dir", state],
        vec!["load", "http://127.0.0.1:1/", "-n", "3"],
    ] {
        let out = Command::new(weir_bin()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot reach") || stderr.contains("nothing answered"),
            "{args:?}: {stderr}"
        );
    }
    // The walkthrough, its VirtualService for one host only, with a header
    // rule sending testers to v2.
    let cluster = Cluster::up(&[]);
    let dir = tempfile::tempdir().unwrap();
    for file in ["app-v1.yaml", "app-v2.yaml", "weir-images.conf"] {
        std::fs::copy(examples().join(file), dir.path().join(file)).unwrap();
    }
    let istio = std::fs::read_to_string(examples().join("istio.yaml")).unwrap();
    let istio = istio
        .replacen("  hosts:\n    - \"*\"", "  hosts:\n    - shop.example.com", 1)
        .replacen(
            "  http:\n  - route:",
            "  http:\n  - match:\n    - headers:\n        x-tester: {exact: \"yes\"}\n    route:\n    - destination:\n        host: my-app\n        subset: v2\n  - route:",
            1,
        );
    assert!(istio.contains("shop.example.com") && istio.contains("x-tester"));
    std::fs::write(dir.path().join("istio.yaml"), istio).unwrap();
    cluster.apply_ok(dir.path());
    cluster.both_versions_ready().await;
    let load = |extra: &[&str]| {
        let out = cluster.weir(&[&["load", "-n", "40", "-c", "2", "-o", "json"], extra].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let no_host = load(&[]);
    assert_eq!(no_host["status"]["404"], 40, "{no_host}");
    let host = load(&["--host", "shop.example.com"]);
    assert_eq!(host["status"]["200"], 40, "{host}");
    let tester = load(&["--host", "shop.example.com", "-H", "x-tester: yes"]);
    assert_eq!(tester["versions"]["v2.0.0"], 40, "{tester}");
    let verified = cluster.weir(&[
        "verify",
        "--expect",
        "v2=100",
        "-n",
        "100",
        "--host",
        "shop.example.com",
        "-H",
        "x-tester: yes",
    ]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    // An expectation that cannot hold is a usage error before any request.
    for expect in ["v1=50,v2=40", "v1=90,v3=10"] {
        let out = cluster.weir(&["verify", "--expect", expect]);
        assert_eq!(out.status.code(), Some(2), "{expect}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("100")
                || String::from_utf8_lossy(&out.stderr).contains("no destination has"),
            "{expect}"
        );
    }
    for bad in [["-H", "no-colon"], ["--host", "a b"]] {
        let out = cluster.weir(&[&["load", "-n", "1"], &bad[..]].concat());
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    // Naming one subset shows what every destination now gets.
    let route = cluster.weir(&["route", "my-app", "--rule", "1", "v2=50"]);
    let text = String::from_utf8_lossy(&route.stdout);
    assert!(
        text.contains("shares: v1 64.3 %, v2 35.7 % (weights add up to 140)"),
        "{text}{}",
        String::from_utf8_lossy(&route.stderr)
    );
}

#[test]
fn the_rollout_demo_rolls_a_good_canary_out_and_a_bad_one_back() {
    let out = Command::new(weir_bin())
        .args(["demo", "rollout"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "the good canary rolls out to 100 %",
        "no failed request during the good rollout",
        "v1 serves everything, the bad v2 is ready",
        "the bad canary is rolled back on its own",
        "the rolled-back v2 receives none of the traffic",
        "clean up",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(check) && l.contains(" pass ")),
            "{check}\n{stdout}"
        );
    }
    // The live view showed the bad canary's failing verdict.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("RolledBack") && l.contains("success-rate Fail")),
        "{stdout}"
    );
    assert!(stdout.contains("PASS in "), "{stdout}");
    let unknown = Command::new(weir_bin())
        .args(["demo", "no-such-scenario"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_names_the_rule_it_changes_and_get_watch_prints_changes() {
    let cluster = Cluster::up(&[]);
    let dir = tempfile::tempdir().unwrap();
    for file in ["app-v1.yaml", "app-v2.yaml", "weir-images.conf"] {
        std::fs::copy(examples().join(file), dir.path().join(file)).unwrap();
    }
    // Two rules: a header match to v2 first, then the 90/10 split.
    let istio = std::fs::read_to_string(examples().join("istio.yaml")).unwrap();
    let two_rules = istio.replacen(
        "  http:\n  - route:",
        "  http:\n  - name: testers\n    match:\n    - headers:\n        x-tester: {}\n    route:\n    - destination:\n        host: my-app\n        subset: v2\n  - name: canary\n    route:",
        1,
    );
    std::fs::write(dir.path().join("istio.yaml"), two_rules).unwrap();
    assert!(cluster.apply(dir.path()).status.success());
    cluster
        .wait_for("both deployments ready", Duration::from_secs(30), |c| {
            c.ready("my-app-v1") == 1 && c.ready("my-app-v2") == 1
        })
        .await;

    let out = cluster.weir(&["route", "my-app", "v1=0", "v2=100"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("http[1]: v1 90→0, v2 10→100"),
        "the first rule with several destinations: {stdout}"
    );
    let out = cluster.weir(&["route", "my-app", "--rule", "testers", "v1=100"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("http[0] has no destination \"v1\" (it has v2)")
    );

    // get -w: the current rows, then a row when a Deployment changes.
    let mut watch = std::process::Command::new(weir_bin())
        .args([
            "get",
            "deploy",
            "-w",
            "--state-dir",
            cluster.dir.path().to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    // The edit waits for the watch's listing (header and both rows): made
    // before it, the listing would already show the new count.
    let (listed_tx, listed) = std::sync::mpsc::channel();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.starts_with("my-app-v1") && line.contains("2/2");
            seen.push(line);
            if seen.len() == 3 {
                let _ = listed_tx.send(());
            }
            if done {
                break;
            }
        }
        seen
    });
    listed
        .recv_timeout(Duration::from_secs(30))
        .expect("get -w lists the Deployments");
    cluster.edit_and_apply(
        &dir.path().join("app-v1.yaml"),
        "  replicas: 1",
        "  replicas: 2",
    );
    cluster
        .wait_for("v1 at 2 ready", Duration::from_secs(30), |c| {
            c.ready("my-app-v1") == 2
        })
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !lines.is_finished() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = lines.join().unwrap();
    assert!(seen[0].starts_with("NAME"), "{seen:#?}");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("my-app-v1") && l.contains("1/1")),
        "{seen:#?}"
    );
    assert!(seen.last().unwrap().contains("2/2"), "{seen:#?}");

    // HTTP/2 load.
    let out = cluster.weir(&["load", "--http2", "-c", "2", "-n", "100", "-o", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"]["200"], 100, "{report}");
}
