//! `weir demo`: the whole walkthrough on the embedded runtime, in a
//! temporary state dir on free ports — start, apply the four manifests,
//! wait for ready pods, verify 90/10, shift to 0/100, verify, raise the load,
//! check that v2 scales up while v1 gets none of it, clean up — each step
//! shown with its command, then a summary. Exit 0 only if every check passed.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Args;
use tokio::time::Instant;
use weir_api::backend::RuleSelector;
use weir_api::load::read_sources;
use weir_api::resource::{Kind, ObjectRef};
use weir_load::generator::Progress;
use weir_runtime::admin::{AdminClient, RouteRequest};

use crate::checks::{check_split, wait_replicas};
use crate::drive::{LoadSpec, options};
use crate::exit;
use crate::target::TargetArgs;

/// The walkthrough's manifests, verbatim, and the image map.
const FILES: [(&str, &str); 5] = [
    (
        "app-v1.yaml",
        include_str!("../../../../examples/canary-istio/app-v1.yaml"),
    ),
    (
        "app-v2.yaml",
        include_str!("../../../../examples/canary-istio/app-v2.yaml"),
    ),
    (
        "hpa.yaml",
        include_str!("../../../../examples/canary-istio/hpa.yaml"),
    ),
    (
        "istio.yaml",
        include_str!("../../../../examples/canary-istio/istio.yaml"),
    ),
    (
        "weir-images.conf",
        include_str!("../../../../examples/canary-istio/weir-images.conf"),
    ),
];

/// `weir demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long v2 may take to scale up under load.
    #[arg(long, default_value = "90s", value_parser = weir_api::duration::parse)]
    pub scale_within: Duration,
}

struct Check {
    step: &'static str,
    passed: bool,
    detail: String,
    seconds: f64,
}

struct Demo {
    checks: Vec<Check>,
    started: Instant,
}

impl Demo {
    fn step(&self, name: &str, command: &str) -> Instant {
        println!("\n▶ {name}\n  $ {command}");
        Instant::now()
    }

    fn record(&mut self, step: &'static str, since: Instant, passed: bool, detail: String) -> bool {
        let seconds = since.elapsed().as_secs_f64();
        println!(
            "  {} {detail} ({seconds:.1}s)",
            if passed { "✓" } else { "✗" }
        );
        self.checks.push(Check {
            step,
            passed,
            detail,
            seconds,
        });
        passed
    }

    fn summary(&self) -> u8 {
        println!("\n{:<46} {:<6} {:>7}  DETAIL", "CHECK", "RESULT", "TIME");
        for c in &self.checks {
            println!(
                "{:<46} {:<6} {:>6.1}s  {}",
                c.step,
                if c.passed { "pass" } else { "FAIL" },
                c.seconds,
                c.detail
            );
        }
        let all = !self.checks.is_empty() && self.checks.iter().all(|c| c.passed);
        println!(
            "\n{} in {:.0}s: {} of {} checks passed",
            if all { "PASS" } else { "FAIL" },
            self.started.elapsed().as_secs_f64(),
            self.checks.iter().filter(|c| c.passed).count(),
            self.checks.len()
        );
        if all { exit::OK } else { exit::FAILED }
    }
}

/// Stops the demo's `weir up` however the demo ends.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn v1_requests(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("istio_requests_total{") && l.contains("destination_version=\"v1.0.0\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> u8 {
    let mut demo = Demo {
        checks: Vec::new(),
        started: Instant::now(),
    };
    let Ok(dir) = tempfile::Builder::new().prefix("weir-demo-").tempdir() else {
        eprintln!("weir demo: cannot create a temporary state dir");
        return exit::FAILED;
    };
    let manifests = dir.path().join("canary-istio");
    if std::fs::create_dir_all(&manifests).is_err()
        || FILES
            .iter()
            .any(|(f, t)| std::fs::write(manifests.join(f), t).is_err())
    {
        eprintln!(
            "weir demo: cannot write the manifests to {}",
            manifests.display()
        );
        return exit::FAILED;
    }
    let state_dir = dir.path().join("state");
    let state = TargetArgs::local(state_dir.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()
        .and_then(|l| l.local_addr().ok())
        .map_or(18080, |a| a.port());
    let url = format!("http://127.0.0.1:{port}/");
    println!(
        "weir demo: the Istio canary walkthrough on this machine (state dir {})",
        state_dir.display()
    );

    // 1. Deploy the mesh.
    let t = demo.step(
        "Deploy the mesh: control plane, gateway, autoscaler",
        &format!("weir up --port-map 80={port} --hpa-sync-period 5s --metrics-window 5s"),
    );
    let Ok(exe) = std::env::current_exe() else {
        return exit::FAILED;
    };
    let log = std::fs::File::create(dir.path().join("up.log")).ok();
    let child = Command::new(exe)
        .args([
            "up",
            "--state-dir",
            &state_dir.display().to_string(),
            "--port-map",
            &format!("80={port}"),
            "--hpa-sync-period",
            "5s",
            "--metrics-window",
            "5s",
        ])
        .stdout(
            log.as_ref()
                .and_then(|f| f.try_clone().ok())
                .map_or(Stdio::null(), Stdio::from),
        )
        .stderr(log.map_or(Stdio::null(), Stdio::from))
        .spawn();
    let _up = match child {
        Ok(c) => Up(c),
        Err(e) => {
            demo.record(
                "weir up starts",
                t,
                false,
                format!("cannot start weir up: {e}"),
            );
            return demo.summary();
        }
    };
    let client = AdminClient::new(&state_dir);
    let mut up = false;
    while t.elapsed() < Duration::from_secs(20) {
        if client.status().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !demo.record(
        "weir up starts",
        t,
        up,
        if up {
            "control plane and admin API up".into()
        } else {
            "no answer within 20s".into()
        },
    ) {
        return demo.summary();
    }

    // 2. Deploy the two versions, the routing rule and the autoscalers.
    let t = demo.step(
        "Deploy two versions, the 90/10 route and the autoscalers",
        "weir apply -f canary-istio/",
    );
    let applied = match read_sources(&[&manifests]) {
        Ok(sources) => client.apply(sources).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let ok = applied.is_ok();
    let detail = match applied {
        Ok(objects) => format!(
            "{} objects applied from the walkthrough's unmodified manifests",
            objects.len()
        ),
        Err(e) => e,
    };
    if !demo.record("apply the walkthrough's manifests", t, ok, detail) {
        return demo.summary();
    }

    // 3. Both pods ready.
    let t = demo.step("Wait for both application pods", "weir get pods -w");
    let v1 = wait_replicas(&state, None, "my-app-v1", 1, Duration::from_secs(30)).await;
    let v2 = wait_replicas(&state, None, "my-app-v2", 1, Duration::from_secs(30)).await;
    let ok = matches!((&v1, &v2), (Ok(Ok(_)), Ok(Ok(_))));
    if !demo.record(
        "both deployments have a ready pod",
        t,
        ok,
        if ok {
            "my-app-v1 1/1, my-app-v2 1/1".into()
        } else {
            "pods did not become ready within 30s".into()
        },
    ) {
        return demo.summary();
    }

    // 4. Verify 90/10.
    let t = demo.step(
        "Verify the split: v1 90%, v2 10%",
        "weir verify --expect v1=90,v2=10",
    );
    let expect = |a: f64, b: f64| vec![("v1".to_owned(), a), ("v2".to_owned(), b)];
    match check_split(Some(url.clone()), &expect(90.0, 10.0), None, &state, false).await {
        Ok(v) => demo.record("traffic splits 90/10", t, v.passed, v.reason),
        Err(e) => demo.record("traffic splits 90/10", t, false, e),
    };

    // 5. Shift to 0/100.
    let t = demo.step(
        "Change the split so v2 serves everything",
        "weir route my-app v1=0 v2=100",
    );
    let change = client
        .route(RouteRequest {
            virtual_service: ObjectRef {
                kind: Kind::VirtualService,
                namespace: "default".into(),
                name: "my-app".into(),
            },
            rule: RuleSelector::Default,
            weights: vec![("v1".into(), 0), ("v2".into(), 100)],
        })
        .await;
    let ok = change.is_ok();
    demo.record(
        "route change served by the gateway",
        t,
        ok,
        match change {
            Ok(c) => format!(
                "{} after {:.1} ms",
                c.confirmed_by.split(':').next().unwrap_or_default(),
                c.elapsed.as_secs_f64() * 1000.0
            ),
            Err(e) => e.to_string(),
        },
    );

    // 6. Verify 0/100.
    let t = demo.step(
        "Verify the split: v2 100%",
        "weir verify --expect v1=0,v2=100",
    );
    match check_split(Some(url.clone()), &expect(0.0, 100.0), None, &state, false).await {
        Ok(v) => demo.record("traffic splits 0/100", t, v.passed, v.reason),
        Err(e) => demo.record("traffic splits 0/100", t, false, e),
    };

    // 7. Raise the load; v2 scales up.
    let t = demo.step(
        "Increase traffic and watch v2 scale",
        "weir load -c 4 -z 90s & weir verify --replicas my-app-v2>=2 --within 90s",
    );
    let v1_before = v1_requests(&client.metrics().await.unwrap_or_default());
    let load_args = LoadSpec::closed_loop(Some(url.clone()), 4, Some(args.scale_within), None);
    let progress = std::sync::Arc::new(Progress::default());
    let load = match options(&load_args, &state).await {
        Ok(o) => {
            let p = progress.clone();
            Some(tokio::spawn(async move {
                weir_load::generator::run(o, p).await
            }))
        }
        Err(_) => None,
    };
    let ticker = {
        let (progress, client) = (progress.clone(), AdminClient::new(&state_dir));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let pods = client.list(Kind::Pod, "default").await.unwrap_or_default();
                let v2 = pods
                    .iter()
                    .filter(|p| {
                        p["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .starts_with("my-app-v2-")
                    })
                    .count();
                println!(
                    "  … {} requests answered, my-app-v2 pods: {v2}",
                    progress.answered.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
        })
    };
    let scaled = wait_replicas(&state, None, "my-app-v2", 2, args.scale_within).await;
    ticker.abort();
    if let Some(l) = &load {
        l.abort();
    }
    let ok = matches!(scaled, Ok(Ok(_)));
    demo.record(
        "v2 scales up under load",
        t,
        ok,
        match scaled {
            Ok(Ok(secs)) => format!("my-app-v2 reached 2+ ready replicas after {secs:.0}s of load"),
            Ok(Err(n)) => format!(
                "my-app-v2 had {n} ready replicas after {:?}",
                args.scale_within
            ),
            Err(e) => e.to_string(),
        },
    );

    // 8. v1 received none of it.
    let t = demo.step("Check that v1 served none of the load", "weir top --once");
    let v1_after = v1_requests(&client.metrics().await.unwrap_or_default());
    let delta = v1_after - v1_before;
    demo.record(
        "v1 receives none of the load",
        t,
        delta == 0.0,
        format!("v1 answered {delta} requests since the split moved to 0/100"),
    );

    // 9. Clean up.
    let t = demo.step("Clean up", "weir delete -f canary-istio/ && weir down");
    let objects: Vec<ObjectRef> = match weir_api::load::load_paths(&[&manifests]) {
        Ok(m) => m.resources().map(|r| r.object_ref()).collect(),
        Err(_) => Vec::new(),
    };
    let deleted = client.delete(objects).await.is_ok();
    let down = client.shutdown().await.is_ok();
    demo.record(
        "clean up",
        t,
        deleted && down,
        "objects deleted, pods stopped, weir down".into(),
    );
    demo.summary()
}
