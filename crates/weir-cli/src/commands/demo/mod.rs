//! `weir demo [SCENARIO]`: a scenario on the embedded runtime, in a
//! temporary state dir on free ports — start `weir up`, apply the
//! scenario's unmodified manifests as its README does, run its steps, clean
//! up — each step shown with its command, then a table of checks. Exit 0
//! only if every check passed. Scenarios: `canary-istio` (the walkthrough by
//! hand, the default), `rollout` (the same canary as an automated Rollout, a
//! good one and a bad one), `release` (a Rollout owning my-app through
//! four releases, one bad), and the seed repository's other strategies
//! ([`strategies`]); `--all` runs the nine strategies in turn.

mod release;
mod rollout;
mod sampler;
mod steps;
mod strategies;
mod verdict;
mod walkthrough;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::time::Instant;
use weir_api::backend::{Backend, BackendError, RouteChange, RuleSelector};
use weir_api::load::load_paths;
use weir_api::resource::{Kind, ObjectRef};
use weir_runtime::backend::LocalBackend;

use crate::checks::wait_replicas;
use crate::exit;
use crate::target::TargetArgs;

/// The walkthrough's manifests, verbatim, and the image map.
const FILES: [(&str, &str); 5] = [
    (
        "app-v1.yaml",
        include_str!("../../../../../examples/canary-istio/app-v1.yaml"),
    ),
    (
        "app-v2.yaml",
        include_str!("../../../../../examples/canary-istio/app-v2.yaml"),
    ),
    (
        "hpa.yaml",
        include_str!("../../../../../examples/canary-istio/hpa.yaml"),
    ),
    (
        "istio.yaml",
        include_str!("../../../../../examples/canary-istio/istio.yaml"),
    ),
    (
        "weir-images.conf",
        include_str!("../../../../../examples/canary-istio/weir-images.conf"),
    ),
];

/// The release example's manifests, verbatim, and the image map.
const RELEASE_FILES: [(&str, &str); 4] = [
    (
        "app.yaml",
        include_str!("../../../../../examples/canary-istio-release/app.yaml"),
    ),
    (
        "istio.yaml",
        include_str!("../../../../../examples/canary-istio-release/istio.yaml"),
    ),
    (
        "rollout.yaml",
        include_str!("../../../../../examples/canary-istio-release/rollout.yaml"),
    ),
    (
        "weir-images.conf",
        include_str!("../../../../../examples/canary-istio-release/weir-images.conf"),
    ),
];

/// A strategy's manifests, verbatim from the seed repository, and the
/// image map, embedded so the demo runs from the binary alone.
macro_rules! strategy_files {
    ($dir:literal: $($file:literal),+) => {
        &[
            $(($file, include_str!(concat!("../../../../../examples/strategies/", $dir, "/", $file))),)+
            ("weir-images.conf", include_str!(concat!("../../../../../examples/strategies/", $dir, "/weir-images.conf"))),
        ]
    };
}

/// What `weir demo` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// The walkthrough by hand: verify 90/10, shift to 0/100, load, v2 scales.
    CanaryIstio,
    /// The canary as an automated Rollout: a good v2 succeeds, a bad one is
    /// rolled back.
    Rollout,
    /// Release after release with a Rollout that owns its Deployment: v2
    /// promoted, v3 (bad) rolled back, v4 promoted, under load.
    Release,
    /// Recreate: v1 stops, then v2 starts; the downtime between, measured.
    Recreate,
    /// Ramped: a rolling update that fails no request.
    Ramped,
    /// Blue/green: one Service's selector patched from v1 to v2.
    BlueGreen,
    /// Blue/green of two Services behind one Ingress.
    BlueGreenIngress,
    /// A canary by replica ratio behind one Service (1 of 10 pods).
    CanaryNative,
    /// A canary by ingress-nginx's canary annotations (10 %).
    CanaryNginx,
    /// A/B testing with Istio: weight, then header match.
    AbTesting,
    /// Shadow: Istio mirrors every request to v2; clients see v1 only.
    Shadow,
}

impl Scenario {
    /// The nine strategies `--all` runs, in the seed repository's order.
    pub const STRATEGIES: [Scenario; 9] = [
        Scenario::Recreate,
        Scenario::Ramped,
        Scenario::BlueGreen,
        Scenario::BlueGreenIngress,
        Scenario::CanaryNative,
        Scenario::CanaryNginx,
        Scenario::CanaryIstio,
        Scenario::AbTesting,
        Scenario::Shadow,
    ];

    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    /// The title, and the directory and files written for it.
    fn setup(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    ) {
        match self {
            Scenario::CanaryIstio => (
                "the Istio canary walkthrough on this machine",
                "canary-istio",
                &FILES,
            ),
            Scenario::Rollout => (
                "the canary as an automated Rollout: a good v2, then a bad one",
                "canary-istio",
                &FILES,
            ),
            Scenario::Release => (
                "release after release: a Rollout that owns my-app, v1 → v2 → v3 (bad) → v4",
                "canary-istio-release",
                &RELEASE_FILES,
            ),
            Scenario::Recreate => (
                "recreate: shut v1 down, then start v2",
                "recreate",
                strategy_files!("recreate": "app-v1.yaml", "app-v2.yaml"),
            ),
            Scenario::Ramped => (
                "ramped: a rolling update, one pod at a time",
                "ramped",
                strategy_files!("ramped": "app-v1.yaml", "app-v2.yaml"),
            ),
            Scenario::BlueGreen => (
                "blue/green: switch one Service's selector",
                "blue-green",
                strategy_files!("blue-green/single-service": "app-v1.yaml", "app-v2.yaml"),
            ),
            Scenario::BlueGreenIngress => (
                "blue/green of two services behind one Ingress",
                "blue-green-ingress",
                strategy_files!("blue-green/multiple-services": "app-a-v1.yaml", "app-a-v2.yaml", "app-b-v1.yaml", "app-b-v2.yaml", "ingress-v1.yaml", "ingress-v2.yaml"),
            ),
            Scenario::CanaryNative => (
                "a canary by replica ratio behind one Service",
                "canary-native",
                strategy_files!("canary/native": "app-v1.yaml", "app-v2.yaml"),
            ),
            Scenario::CanaryNginx => (
                "a canary by ingress-nginx's annotations",
                "canary-nginx",
                strategy_files!("canary/nginx-ingress": "app-v1.yaml", "app-v2.yaml", "ingress-v1.yaml", "ingress-v2-canary.yaml", "ingress-v2.yaml"),
            ),
            Scenario::AbTesting => (
                "A/B testing with Istio: by weight, then by header",
                "ab-testing",
                strategy_files!("ab-testing": "app-v1.yaml", "app-v2.yaml", "gateway.yaml", "virtualservice.yaml", "virtualservice-weight.yaml", "virtualservice-match.yaml"),
            ),
            Scenario::Shadow => (
                "shadow: mirror every request to v2",
                "shadow",
                strategy_files!("shadow": "app-v1.yaml", "app-v2.yaml", "gateway.yaml", "virtualservice.yaml", "virtualservice-mirror.yaml"),
            ),
        }
    }
}

/// `weir demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// What to show.
    #[arg(value_enum, default_value = "canary-istio", conflicts_with = "all")]
    pub scenario: Scenario,
    /// Run the nine strategies in turn, each in its own runtime, then a
    /// table of their verdicts.
    #[arg(long)]
    pub all: bool,
    /// How long v2 may take to scale up under load (canary-istio).
    #[arg(long, default_value = "90s", value_parser = weir_api::duration::parse)]
    pub scale_within: Duration,
}

struct Check {
    step: String,
    passed: bool,
    detail: String,
    seconds: f64,
}

/// The checks so far, printed as they pass or fail and as a table at the end.
pub struct Demo {
    checks: Vec<Check>,
    started: Instant,
}

impl Demo {
    fn step(&self, name: &str, command: &str) -> Instant {
        println!("\n▶ {name}\n  $ {command}");
        Instant::now()
    }

    fn record(
        &mut self,
        step: impl Into<String>,
        since: Instant,
        passed: bool,
        detail: String,
    ) -> bool {
        let seconds = since.elapsed().as_secs_f64();
        println!(
            "  {} {detail} ({seconds:.1}s)",
            if passed { "✓" } else { "✗" }
        );
        self.checks.push(Check {
            step: step.into(),
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

/// A running demo: its `weir up`, state dir, manifests and gateway URL.
pub struct Session {
    /// The scenario's manifests, written out.
    pub manifests: PathBuf,
    /// The state dir of its `weir up`.
    pub state_dir: PathBuf,
    /// The same, as commands take it.
    pub state: TargetArgs,
    /// The gateway's URL.
    pub url: String,
    /// Its runtime, driven as every command drives a backend.
    pub backend: LocalBackend,
    _up: Up,
    _dir: tempfile::TempDir,
}

/// `weir route my-app v1=V1 v2=V2`: returns once the gateway serves the
/// new weights.
pub async fn route_my_app(
    backend: &LocalBackend,
    v1: u32,
    v2: u32,
) -> Result<RouteChange, BackendError> {
    let my_app = ObjectRef {
        kind: Kind::VirtualService,
        namespace: "default".into(),
        name: "my-app".into(),
    };
    backend
        .set_route_weights(
            &my_app,
            &RuleSelector::Default,
            &[("v1".into(), v1), ("v2".into(), v2)],
        )
        .await
}

/// `weir apply -f PATH...`: loads the files (and the image map beside
/// them) and applies them; how many objects were applied.
pub async fn apply_paths<P: AsRef<std::path::Path>>(
    backend: &LocalBackend,
    paths: &[P],
) -> Result<usize, String> {
    let manifests = load_paths(paths).map_err(|e| e.to_string())?;
    backend
        .apply(&manifests)
        .await
        .map(|objects| objects.len())
        .map_err(|e| e.to_string())
}

/// The `istio_requests_total` answered by one version, from the gateway's
/// metrics text.
pub fn requests_of_version(metrics: &str, version: &str) -> f64 {
    requests_with(metrics, "destination_version", version)
}

/// The gateway's `istio_requests_total` summed over series whose `label`
/// is `value` (e.g. `destination_workload`, a Rollout revision's
/// Deployment).
pub fn requests_with(metrics: &str, label: &str, value: &str) -> f64 {
    let label = format!("{label}=\"{value}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Starts `weir up` with the scenario's manifests written beside its state
/// dir; `None` when it did not start (recorded).
async fn start(demo: &mut Demo, scenario: Scenario) -> Option<Session> {
    let (title, name, files) = scenario.setup();
    let Ok(dir) = tempfile::Builder::new().prefix("weir-demo-").tempdir() else {
        eprintln!("weir demo: cannot create a temporary state dir");
        return None;
    };
    let manifests = dir.path().join(name);
    if std::fs::create_dir_all(&manifests).is_err()
        || files
            .iter()
            .any(|(f, t)| std::fs::write(manifests.join(f), t).is_err())
    {
        eprintln!(
            "weir demo: cannot write the manifests to {}",
            manifests.display()
        );
        return None;
    }
    let state_dir = dir.path().join("state");
    let state = TargetArgs::local(state_dir.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()
        .and_then(|l| l.local_addr().ok())
        .map_or(18080, |a| a.port());
    let url = format!("http://127.0.0.1:{port}/");
    println!("weir demo: {title} (state dir {})", state_dir.display());
    println!(
        "  each version's request rate, live: weir top --state-dir {}",
        state_dir.display()
    );

    // 1. Deploy the mesh.
    let t = demo.step(
        "Deploy the mesh: control plane, gateway, autoscaler",
        &format!("weir up --port-map 80={port} --hpa-sync-period 5s --metrics-window 5s"),
    );
    let exe = std::env::current_exe().ok()?;
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
    let up = match child {
        Ok(c) => Up(c),
        Err(e) => {
            demo.record(
                "weir up starts",
                t,
                false,
                format!("cannot start weir up: {e}"),
            );
            return None;
        }
    };
    let backend = LocalBackend::new(&state_dir, Duration::from_secs(30));
    let mut answered = false;
    while t.elapsed() < Duration::from_secs(20) {
        if backend.answers().await {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !demo.record(
        "weir up starts",
        t,
        answered,
        if answered {
            "control plane and admin API up".into()
        } else {
            "no answer within 20s".into()
        },
    ) {
        return None;
    }
    Some(Session {
        manifests,
        state_dir,
        state,
        url,
        backend,
        _up: up,
        _dir: dir,
    })
}

/// The walkthrough's setup: apply its manifests, wait for both pods; false
/// when a step failed (recorded).
async fn deploy_walkthrough(demo: &mut Demo, session: &Session) -> bool {
    let (manifests, state) = (&session.manifests, &session.state);
    // 2. Deploy the two versions, the routing rule and the autoscalers.
    let t = demo.step(
        "Deploy two versions, the 90/10 route and the autoscalers",
        "weir apply -f canary-istio/",
    );
    let applied = apply_paths(&session.backend, &[manifests]).await;
    let ok = applied.is_ok();
    let detail = match applied {
        Ok(objects) => {
            format!("{objects} objects applied from the walkthrough's unmodified manifests")
        }
        Err(e) => e,
    };
    if !demo.record("apply the walkthrough's manifests", t, ok, detail) {
        return false;
    }

    // 3. Both pods ready.
    let t = demo.step("Wait for both application pods", "weir get pods -w");
    let v1 = wait_replicas(state, None, "my-app-v1", 1, Duration::from_secs(30)).await;
    let v2 = wait_replicas(state, None, "my-app-v2", 1, Duration::from_secs(30)).await;
    let ok = matches!((&v1, &v2), (Ok(Ok(_)), Ok(Ok(_))));
    demo.record(
        "both deployments have a ready pod",
        t,
        ok,
        if ok {
            "my-app-v1 1/1, my-app-v2 1/1".into()
        } else {
            "pods did not become ready within 30s".into()
        },
    )
}

/// Deletes what the demo applied and stops its `weir up`.
async fn clean_up(demo: &mut Demo, session: &Session, extra: Vec<ObjectRef>) {
    let t = demo.step("Clean up", "weir delete -f . && weir down");
    // File by file: a strategy's files hold two versions of one object.
    let mut objects: Vec<ObjectRef> = std::fs::read_dir(&session.manifests)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .filter_map(|e| weir_api::load::load_paths(&[e.path()]).ok())
        .flat_map(|m| m.resources().map(|r| r.object_ref()).collect::<Vec<_>>())
        .collect();
    objects.extend(extra);
    objects.sort();
    objects.dedup();
    let deleted = session.backend.delete(&objects).await.is_ok();
    let down = session.backend.shutdown().await.is_ok();
    demo.record(
        "clean up",
        t,
        deleted && down,
        "objects deleted, pods stopped, weir down".into(),
    );
}

/// Runs one scenario in a runtime of its own: its checks, summed up.
async fn run_one(scenario: Scenario, scale_within: Duration) -> Demo {
    let mut demo = Demo {
        checks: Vec::new(),
        started: Instant::now(),
    };
    let Some(session) = start(&mut demo, scenario).await else {
        return demo;
    };
    let mut extra = Vec::new();
    match scenario {
        Scenario::CanaryIstio | Scenario::Rollout => {
            if deploy_walkthrough(&mut demo, &session).await {
                if scenario == Scenario::Rollout {
                    extra = rollout::run(&mut demo, &session).await;
                } else {
                    walkthrough::run(&mut demo, &session, scale_within).await;
                }
            }
        }
        Scenario::Release => extra = release::run(&mut demo, &session).await,
        Scenario::Recreate => strategies::recreate(&mut demo, &session).await,
        Scenario::Ramped => strategies::ramped(&mut demo, &session).await,
        Scenario::BlueGreen => strategies::blue_green(&mut demo, &session).await,
        Scenario::BlueGreenIngress => strategies::blue_green_ingress(&mut demo, &session).await,
        Scenario::CanaryNative => strategies::canary_native(&mut demo, &session).await,
        Scenario::CanaryNginx => strategies::canary_nginx(&mut demo, &session).await,
        Scenario::AbTesting => strategies::ab_testing(&mut demo, &session).await,
        Scenario::Shadow => strategies::shadow(&mut demo, &session).await,
    }
    clean_up(&mut demo, &session, extra).await;
    demo
}

/// Runs the demo (or, with `--all`, the nine strategies).
pub async fn run(args: DemoArgs) -> u8 {
    if !args.all {
        return run_one(args.scenario, args.scale_within).await.summary();
    }
    let started = Instant::now();
    let mut verdicts = Vec::new();
    for scenario in Scenario::STRATEGIES {
        println!("\n════ weir demo {} ════", scenario.name());
        let demo = run_one(scenario, args.scale_within).await;
        let passed = demo.summary() == exit::OK;
        verdicts.push((
            scenario,
            passed,
            demo.started.elapsed().as_secs_f64(),
            demo.checks.len(),
        ));
    }
    println!("\n{:<20} {:<6} {:>7}  CHECKS", "STRATEGY", "RESULT", "TIME");
    for (scenario, passed, seconds, checks) in &verdicts {
        println!(
            "{:<20} {:<6} {:>6.0}s  {checks}",
            scenario.name(),
            if *passed { "pass" } else { "FAIL" },
            seconds
        );
    }
    let all = verdicts.iter().all(|v| v.1);
    println!(
        "\n{} in {:.0}s: {} of {} strategies passed",
        if all { "PASS" } else { "FAIL" },
        started.elapsed().as_secs_f64(),
        verdicts.iter().filter(|v| v.1).count(),
        verdicts.len()
    );
    if all { exit::OK } else { exit::FAILED }
}
