//! `weir demo release`: release after release with a Rollout that owns
//! its Deployment (`examples/canary-istio-release`), under load the whole
//! time, every release started by an edit of the Deployment alone (as
//! `weir set env` makes it): v2 (good) is promoted to stable, v3 (half its
//! answers 500) is rolled back while v2 keeps serving, v4 (good) is
//! promoted. No request fails outside the bad canary's share; each
//! verdict's numbers are shown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use weir_api::backend::Backend;
use weir_api::patch::PatchType;
use weir_api::resource::{Kind, ObjectRef};
use weir_load::generator::Progress;
use weir_runtime::backend::LocalBackend;

use super::{Demo, Session, apply_paths, requests_with};
use crate::commands::set::env_patch;
use crate::drive::{LoadSpec, options};

/// How long one release may take before the demo calls it failed.
const RELEASE_WITHIN: Duration = Duration::from_secs(180);

/// How long the demo's load runs at most.
const LOAD_FOR: Duration = Duration::from_secs(600);

fn rollout_ref() -> ObjectRef {
    ObjectRef {
        kind: Kind::Rollout,
        namespace: "default".into(),
        name: "my-app".into(),
    }
}

fn workload_ref() -> ObjectRef {
    ObjectRef {
        kind: Kind::Deployment,
        namespace: "default".into(),
        name: "my-app".into(),
    }
}

/// The Rollout as stored, when it is.
async fn rollout(backend: &LocalBackend) -> Option<Value> {
    backend
        .get(&rollout_ref())
        .await
        .ok()
        .flatten()
        .map(|live| live.object)
}

fn text<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The last verdicts with their numbers, in one line.
fn verdicts(o: &Value) -> String {
    let shown: Vec<String> = o["status"]["verdicts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let num = |k: &str| v[k].as_f64().map_or("-".to_owned(), |x| format!("{x:.2}"));
            let bound = |i: usize| {
                v["interval"][i]
                    .as_f64()
                    .map_or("-".to_owned(), |x| format!("{x:.2}"))
            };
            format!(
                "{} {} {} in [{}, {}] over {} requests (threshold {})",
                text(v, "/metric"),
                text(v, "/verdict"),
                num("estimate"),
                bound(0),
                bound(1),
                v["n"].as_u64().unwrap_or(0),
                num("threshold"),
            )
        })
        .collect();
    if shown.is_empty() {
        "no verdict".to_owned()
    } else {
        shown.join("; ")
    }
}

/// One line of the live view.
fn live_line(o: &Value) -> String {
    let status = &o["status"];
    let weight = status["canaryWeight"].as_u64().unwrap_or(0);
    let revisions: Vec<String> = status["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} {} {}/{}",
                text(r, "/role").to_lowercase(),
                text(r, "/revision"),
                r["ready"].as_i64().unwrap_or(0),
                r["replicas"].as_i64().unwrap_or(0)
            )
        })
        .collect();
    format!(
        "{:<11} step {}  stable {:>3} %  canary {:>3} %  [{}]  {}",
        text(status, "/phase"),
        status["currentStep"].as_u64().unwrap_or(0),
        100 - weight.min(100),
        weight,
        revisions.join(", "),
        text(status, "/message")
            .split(" (")
            .next()
            .unwrap_or_default()
    )
}

/// Shows the Rollout live until `done` holds (or `within` passes); its
/// last state.
async fn watch(
    backend: &LocalBackend,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let started = Instant::now();
    let mut last_line = String::new();
    let mut last = None;
    while started.elapsed() < within {
        if let Some(o) = rollout(backend).await {
            let line = live_line(&o);
            if line != last_line {
                println!("  {:>5.1}s  {line}", started.elapsed().as_secs_f64());
                last_line = line;
            }
            let finished = done(&o);
            last = Some(o);
            if finished {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    last
}

/// A new release: the workload's `env` set as `weir set env` sets it.
async fn release(backend: &LocalBackend, env: &[(&str, &str)]) -> Result<(), String> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let patch = env_patch(&["my-app".to_owned()], &env);
    backend
        .patch(&workload_ref(), PatchType::Strategic, &patch)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What the load counted so far: answered, failed (transport), answered
/// 5xx.
type Counts = (u64, u64, u64);

/// The scenario after `weir up` started; the objects it added, for the
/// clean-up.
pub async fn run(demo: &mut Demo, session: &Session) -> Vec<ObjectRef> {
    let backend = &session.backend;

    // 2. The release example: the Deployment, its HPA, the route, the
    // Rollout that owns it.
    let t = demo.step(
        "Deploy my-app, its autoscaler, the route and the Rollout that owns it",
        "weir apply -f canary-istio-release/",
    );
    let applied = apply_paths(backend, &[&session.manifests]).await;
    if !demo.record(
        "apply the release example",
        t,
        applied.is_ok(),
        applied.map_or_else(|e| e, |n| format!("{n} objects applied")),
    ) {
        return Vec::new();
    }
    let first = watch(backend, Duration::from_secs(60), |o| {
        o["status"]["revisions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["ready"].as_i64().unwrap_or(0) >= 1)
    })
    .await;
    let v1 = first
        .as_ref()
        .map(|o| text(o, "/status/stableRevision").to_owned())
        .unwrap_or_default();
    if !demo.record(
        "v1 is the stable revision, serving",
        t,
        !v1.is_empty(),
        format!("stable revision {v1}"),
    ) {
        return vec![rollout_ref()];
    }

    // 3. Traffic the whole time.
    let t = demo.step(
        "Send traffic through the gateway for the whole demo",
        "weir load -c 2 -z 600s &",
    );
    let progress = Arc::new(Progress::default());
    let spec = LoadSpec::closed_loop(Some(session.url.clone()), 2, Some(LOAD_FOR), None);
    let load = match options(&spec, &session.state).await {
        Ok(o) => {
            let p = progress.clone();
            tokio::spawn(async move { weir_load::generator::run(o, p).await })
        }
        Err(e) => {
            demo.record("load runs", t, false, e.to_string());
            return vec![rollout_ref()];
        }
    };
    let _stop_load = AbortOnDrop(load);
    let counts = || -> Counts {
        (
            progress.answered.load(Ordering::Relaxed),
            progress.failed.load(Ordering::Relaxed),
            progress.server_errors.load(Ordering::Relaxed),
        )
    };

    // 4. v2, good: promoted.
    let Some(v2) = good_release(demo, backend, &counts, "v2.0.0", &v1).await else {
        return vec![rollout_ref()];
    };

    // 5. v3, bad: rolled back; only its share failed.
    let t = demo.step(
        "Release v3, which answers half its requests 500",
        "weir set env deployment/my-app VERSION=v3.0.0 ERROR_PERCENT=50",
    );
    let before = counts();
    let metrics_before = backend.gateway_metrics().await.unwrap_or_default();
    if let Err(e) = release(backend, &[("VERSION", "v3.0.0"), ("ERROR_PERCENT", "50")]).await {
        demo.record("release v3", t, false, e);
        return vec![rollout_ref()];
    }
    let bad = watch(backend, RELEASE_WITHIN, |o| {
        text(o, "/status/phase") == "RolledBack"
    })
    .await;
    let rolled_back = bad.as_ref().is_some_and(|o| {
        text(o, "/status/phase") == "RolledBack" && text(o, "/status/stableRevision") == v2
    });
    demo.record(
        "v3 is rolled back on its own; v2 stays the stable",
        t,
        rolled_back,
        bad.as_ref().map_or("no status".to_owned(), |o| {
            format!(
                "{}: {}",
                text(o, "/status/message")
                    .split(" (")
                    .next()
                    .unwrap_or_default(),
                verdicts(o)
            )
        }),
    );
    let after = counts();
    // The bad revision's Deployment: what its requests are counted under.
    let v3 = format!(
        "my-app-{}",
        bad.as_ref()
            .map(|o| text(o, "/status/canaryRevision"))
            .unwrap_or_default()
    );
    let v3_requests = requests_with(
        &backend.gateway_metrics().await.unwrap_or_default(),
        "destination_workload",
        &v3,
    ) - requests_with(&metrics_before, "destination_workload", &v3);
    let (failed, errors) = (after.1 - before.1, after.2 - before.2);
    demo.record(
        "no failed request outside the bad canary's share",
        t,
        failed == 0 && (errors as f64) <= v3_requests && after.0 > before.0,
        format!(
            "{} answered, {failed} failed, {errors} answered 5xx, all within v3's {v3_requests:.0} requests",
            after.0 - before.0
        ),
    );
    if !rolled_back {
        return vec![rollout_ref()];
    }

    // 6. v4, good: promoted from where v3 left.
    if good_release(demo, backend, &counts, "v4.0.0", &v2)
        .await
        .is_none()
    {
        return vec![rollout_ref()];
    }
    vec![rollout_ref()]
}

/// Releases `version` (no errors) and waits for its promotion over
/// `stable`; the new stable revision, recorded with its numbers.
async fn good_release(
    demo: &mut Demo,
    backend: &LocalBackend,
    counts: &impl Fn() -> Counts,
    version: &str,
    stable: &str,
) -> Option<String> {
    let t = demo.step(
        &format!("Release {version}: canary beside the stable, judged, promoted"),
        &format!("weir set env deployment/my-app VERSION={version} ERROR_PERCENT=0"),
    );
    let before = counts();
    if let Err(e) = release(backend, &[("VERSION", version), ("ERROR_PERCENT", "0")]).await {
        demo.record(format!("release {version}"), t, false, e);
        return None;
    }
    let mut judged = String::new();
    let done = watch(backend, RELEASE_WITHIN, |o| {
        let stable_now = text(o, "/status/stableRevision");
        text(o, "/status/phase").ends_with("RolledBack")
            || (!stable_now.is_empty() && stable_now != stable)
    })
    .await;
    if let Some(o) = &done {
        judged = verdicts(o);
    }
    let promoted = done.as_ref().and_then(|o| {
        let now = text(o, "/status/stableRevision");
        (!now.is_empty() && now != stable && text(o, "/status/phase") == "Succeeded")
            .then(|| now.to_owned())
    });
    demo.record(
        format!("{version} is promoted to stable"),
        t,
        promoted.is_some(),
        format!(
            "{}: {judged}",
            done.as_ref()
                .map(|o| text(o, "/status/message").to_owned())
                .unwrap_or_default()
        ),
    );
    let after = counts();
    let (answered, failed, errors) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    demo.record(
        format!("no failed request during {version}'s release"),
        t,
        answered > 0 && failed == 0 && errors == 0,
        format!("{answered} answered, {failed} failed, {errors} answered 5xx"),
    );
    promoted
}

/// Stops the demo's load however the scenario ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
