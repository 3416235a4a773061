//! `weir demo rollout`: the walkthrough's canary as an automated Rollout,
//! under load the whole time. A good v2 goes 10 % → 50 % → 100 % through
//! analysis gates and succeeds without a failed request; then a bad v2
//! (`ERROR_PERCENT=10`, my-app's bad-canary knob) starts over from v1 and
//! is rolled back by its first conclusive Fail, after which it gets no
//! routed request. The Rollout's progress is shown live, a line per change.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use weir_api::backend::Backend;
use weir_api::resource::{Kind, ObjectRef};
use weir_load::generator::Progress;
use weir_runtime::backend::LocalBackend;

use super::{Demo, Session, apply_paths, requests_of_version, route_my_app};
use crate::drive::{LoadSpec, options};

/// The Rollout the demo applies, verbatim from the examples.
const ROLLOUT: &str = include_str!("../../../../../examples/canary-istio-rollout/rollout.yaml");

/// The env line of v2's container the bad build adds its knob after.
const V2_ENV: &str = "        - name: VERSION\n          value: v2.0.0\n";

/// How long each rollout may take before the demo calls it failed.
const ROLLOUT_WITHIN: Duration = Duration::from_secs(120);

fn rollout_ref() -> ObjectRef {
    ObjectRef {
        kind: Kind::Rollout,
        namespace: "default".into(),
        name: "my-app".into(),
    }
}

/// Writes one manifest text beside the others and applies it.
async fn apply_text(
    backend: &LocalBackend,
    dir: &std::path::Path,
    name: &str,
    text: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    apply_paths(backend, &[&path]).await.map(|_| ())
}

/// One line of the live view: phase, step, weights and the last verdicts.
fn live_line(o: &Value) -> String {
    let status = &o["status"];
    let steps = o["spec"]["steps"].as_array().map_or(0, Vec::len);
    let weight = status["canaryWeight"].as_u64().unwrap_or(0);
    let verdicts: Vec<String> = status["verdicts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let estimate = v["estimate"]
                .as_f64()
                .map_or("-".to_owned(), |e| format!("{e:.2}"));
            format!(
                "{} {} ({estimate}, n {})",
                v["metric"].as_str().unwrap_or_default(),
                v["verdict"].as_str().unwrap_or_default(),
                v["n"].as_u64().unwrap_or(0)
            )
        })
        .collect();
    format!(
        "{:<11} step {}/{steps}  v1 {:>3} %  v2 {:>3} %  {}  | {}",
        status["phase"].as_str().unwrap_or("Pending"),
        status["currentStep"].as_u64().unwrap_or(0),
        100 - weight.min(100),
        weight,
        if verdicts.is_empty() {
            "no verdict yet".to_owned()
        } else {
            verdicts.join(", ")
        },
        // The verdicts are shown already; the message without them.
        status["message"]
            .as_str()
            .unwrap_or_default()
            .split(" (")
            .next()
            .unwrap_or_default()
    )
}

/// Shows the Rollout live until its phase is final (or `within` passes);
/// its last state.
async fn watch(backend: &LocalBackend, within: Duration) -> Option<Value> {
    let started = Instant::now();
    let mut last_line = String::new();
    let mut last = None;
    while started.elapsed() < within {
        let object = backend
            .get(&rollout_ref())
            .await
            .ok()
            .flatten()
            .map(|live| live.object);
        if let Some(o) = object {
            let line = live_line(&o);
            if line != last_line {
                println!("  {:>5.1}s  {line}", started.elapsed().as_secs_f64());
                last_line = line;
            }
            let phase = o["status"]["phase"].as_str().unwrap_or_default().to_owned();
            last = Some(o);
            if matches!(phase.as_str(), "Succeeded" | "RolledBack" | "Aborted") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    last
}

fn phase_of(o: &Option<Value>) -> &str {
    o.as_ref()
        .and_then(|o| o["status"]["phase"].as_str())
        .unwrap_or("no status")
}

/// The Rollout's last message, with its phase when it did not end.
fn outcome_of(o: &Option<Value>) -> String {
    let message = o
        .as_ref()
        .and_then(|o| o["status"]["message"].as_str())
        .unwrap_or_default();
    match phase_of(o) {
        "Succeeded" | "RolledBack" | "Aborted" => message.to_owned(),
        phase => format!(
            "still {phase} after {}s: {message}",
            ROLLOUT_WITHIN.as_secs()
        ),
    }
}

/// Waits until every pod of `deployment` runs its current template, ready.
async fn updated(backend: &LocalBackend, deployment: &str, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        let d = backend
            .get(&ObjectRef {
                kind: Kind::Deployment,
                namespace: "default".into(),
                name: deployment.into(),
            })
            .await
            .ok()
            .flatten();
        if let Some(d) = d {
            let s = &d.object["status"];
            let n = |k: &str| s[k].as_u64().unwrap_or(0);
            if n("updatedReplicas") >= 1
                && n("updatedReplicas") == n("replicas")
                && n("readyReplicas") == n("replicas")
            {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// The scenario after both pods are ready; the objects it added, for the
/// clean-up.
pub async fn run(demo: &mut Demo, session: &Session) -> Vec<ObjectRef> {
    let backend = &session.backend;
    let work = session
        .manifests
        .parent()
        .unwrap_or(&session.manifests)
        .join("canary-istio-rollout");

    // 4. Traffic the whole time.
    let t = demo.step(
        "Send traffic through the gateway for the whole demo",
        "weir load -c 2 -z 170s &",
    );
    let progress = Arc::new(Progress::default());
    let spec = LoadSpec::closed_loop(
        Some(session.url.clone()),
        2,
        Some(Duration::from_secs(170)),
        None,
    );
    let load = match options(&spec, &session.state).await {
        Ok(o) => {
            let p = progress.clone();
            Some(tokio::spawn(async move {
                weir_load::generator::run(o, p).await
            }))
        }
        Err(e) => {
            demo.record("load runs", t, false, e.to_string());
            return Vec::new();
        }
    };
    let _stop_load = AbortOnDrop(load);
    let counts = || {
        (
            progress.answered.load(Ordering::Relaxed),
            progress.failed.load(Ordering::Relaxed),
            progress.server_errors.load(Ordering::Relaxed),
        )
    };

    // 5. A good canary, automated.
    let t = demo.step(
        "Roll v2 out automatically: 10 % → analysis → 50 % → analysis → pause 10s → 100 %",
        "weir apply -f canary-istio-rollout/ && weir rollout status my-app -w",
    );
    let before = counts();
    if let Err(e) = apply_text(backend, &work, "rollout.yaml", ROLLOUT).await {
        demo.record("apply the Rollout", t, false, e);
        return vec![rollout_ref()];
    }
    let good = watch(backend, ROLLOUT_WITHIN).await;
    let succeeded = phase_of(&good) == "Succeeded";
    demo.record(
        "the good canary rolls out to 100 %",
        t,
        succeeded,
        outcome_of(&good),
    );
    let after = counts();
    let (answered, failed, errors) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    demo.record(
        "no failed request during the good rollout",
        t,
        answered > 0 && failed == 0 && errors == 0,
        format!("{answered} answered, {failed} failed, {errors} answered 5xx"),
    );
    if !succeeded {
        return vec![rollout_ref()];
    }

    // 6. A bad canary: back to v1, a v2 answering 10 % errors.
    let t = demo.step(
        "Ship a bad v2 (10 % of answers 500) and start over from v1",
        "weir delete rollout my-app; weir route my-app v1=100 v2=0; weir apply -f app-v2-bad.yaml",
    );
    let reset = ship_bad_v2(backend, &work).await;
    let ok = reset.is_ok();
    if !demo.record(
        "v1 serves everything, the bad v2 is ready",
        t,
        ok,
        reset.err().unwrap_or_else(|| {
            "route v1=100 v2=0 served, my-app-v2 runs ERROR_PERCENT=10".to_owned()
        }),
    ) {
        return Vec::new();
    }

    // 7. The same Rollout judges it and rolls it back.
    let t = demo.step(
        "Roll the bad v2 out the same way",
        "weir apply -f canary-istio-rollout/ && weir rollout status my-app -w",
    );
    if let Err(e) = apply_text(backend, &work, "rollout.yaml", ROLLOUT).await {
        demo.record("apply the Rollout", t, false, e);
        return vec![rollout_ref()];
    }
    let bad = watch(backend, ROLLOUT_WITHIN).await;
    let rolled_back = phase_of(&bad) == "RolledBack";
    demo.record(
        "the bad canary is rolled back on its own",
        t,
        rolled_back,
        outcome_of(&bad),
    );
    if !rolled_back {
        return vec![rollout_ref()];
    }

    // 8. Once the rollback is served, v2 gets none of the traffic.
    let t = demo.step(
        "Check that v2 gets no routed request after the rollback",
        "weir top --once",
    );
    let v2_before = requests_of_version(
        &backend.gateway_metrics().await.unwrap_or_default(),
        "v2.0.0",
    );
    let answered_before = counts().0;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v2_after = requests_of_version(
        &backend.gateway_metrics().await.unwrap_or_default(),
        "v2.0.0",
    );
    let answered = counts().0 - answered_before;
    demo.record(
        "the rolled-back v2 receives none of the traffic",
        t,
        v2_after == v2_before && answered > 0,
        format!(
            "v2 answered {} of {answered} requests in 3s after the rollback",
            v2_after - v2_before
        ),
    );
    vec![rollout_ref()]
}

/// Back to v1 (the Rollout deleted, every request to v1), and a v2 that
/// answers 10 % of requests with 500, ready.
async fn ship_bad_v2(backend: &LocalBackend, work: &std::path::Path) -> Result<(), String> {
    backend
        .delete(&[rollout_ref()])
        .await
        .map_err(|e| e.to_string())?;
    route_my_app(backend, 100, 0)
        .await
        .map_err(|e| e.to_string())?;
    let v2 = super::FILES
        .iter()
        .find(|(f, _)| *f == "app-v2.yaml")
        .map(|(_, t)| *t)
        .unwrap_or_default();
    if !v2.contains(V2_ENV) {
        return Err("app-v2.yaml has no VERSION env to add the knob after".to_owned());
    }
    let bad = v2.replace(
        V2_ENV,
        &format!("{V2_ENV}        - name: ERROR_PERCENT\n          value: \"10\"\n"),
    );
    apply_text(backend, work, "app-v2-bad.yaml", &bad).await?;
    if updated(backend, "my-app-v2", Duration::from_secs(60)).await {
        Ok(())
    } else {
        Err("the bad v2 was not ready within 60s".to_owned())
    }
}

/// Stops the demo's load however the scenario ends.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}
