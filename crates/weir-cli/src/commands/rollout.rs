//! `weir rollout`: a Rollout's progress and the controls Argo Rollouts
//! users know — `status [-w]`, `promote [--full]`, `pause`, `resume`,
//! `abort`, `retry` — and `plan -f FILE` before any of it. Rollouts run in
//! the embedded runtime; `status` exits 1
//! when the rollout was rolled back or aborted, so scripts can gate on it.
//! For `deployment/NAME`, kubectl's: `status`, `pause`, `resume`, `undo`.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;
use weir_api::backend::Backend;
use weir_api::patch::PatchType;
use weir_api::resource::{Kind, ObjectRef};
use weir_api::rollout::{CommandIntent, RolloutCommand as Command};

use crate::deployment_status::{RolloutState, deployment_name, rollout_state};
use crate::exit::{self, fail};
use crate::show::text_at;
use crate::target::{AnyBackend, TargetArgs};

/// `weir rollout` arguments.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
    /// Namespace (default: the backend's — on a cluster, the kubeconfig
    /// context's, as kubectl).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Which backend (the running `weir up` by default).
    #[command(flatten)]
    pub target: TargetArgs,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Steps (done, current, pending), weights, last verdicts, what it waits
    /// for; for `deployment/NAME`, kubectl's: waits until the Deployment
    /// is rolled out.
    Status {
        /// The Rollout, or `deployment/NAME`.
        name: String,
        /// Keep printing until the rollout ends.
        #[arg(short = 'w', long)]
        watch: bool,
        /// `deployment/NAME`: the longest wait (kubectl's `--timeout`;
        /// 0, the default, waits for ever); exit 1 when it passes.
        #[arg(long, default_value = "0s", value_parser = weir_api::duration::parse)]
        timeout: Duration,
    },
    /// Past the current pause or analysis gate (`--full`: straight to 100 %).
    Promote {
        /// The Rollout.
        name: String,
        /// Skip every remaining step.
        #[arg(long)]
        full: bool,
    },
    /// Stop where it is (the progress deadline stops too); for
    /// `deployment/NAME`, kubectl's: a new template does not roll out.
    Pause {
        /// The Rollout, or `deployment/NAME`.
        name: String,
    },
    /// Go on after a pause.
    Resume {
        /// The Rollout, or `deployment/NAME`.
        name: String,
    },
    /// All traffic to the stable now.
    Abort {
        /// The Rollout.
        name: String,
    },
    /// Start again from step 0 after a rollback or abort.
    Retry {
        /// The Rollout.
        name: String,
    },
    /// `deployment/NAME`: back to the pod template it had before (kubectl's;
    /// a Rollout is undone with `abort`).
    Undo {
        /// `deployment/NAME`.
        name: String,
    },
    /// Before applying: what each analysis gate will take (requests and
    /// time for a verdict, the error budget, what the deadline cannot meet).
    Plan(super::rollout_plan::PlanArgs),
}

/// The Rollout a verb is about, if it is about one (not `deployment/NAME`,
/// not `plan`).
fn rollout_named(verb: &Verb) -> Option<&str> {
    let name = match verb {
        Verb::Status { name, .. }
        | Verb::Promote { name, .. }
        | Verb::Pause { name }
        | Verb::Resume { name }
        | Verb::Abort { name }
        | Verb::Retry { name } => name,
        Verb::Undo { .. } | Verb::Plan(_) => return None,
    };
    deployment_name(name).is_none().then_some(name.as_str())
}

/// Runs `weir rollout`.
pub async fn run(args: RolloutArgs) -> u8 {
    if let Verb::Plan(plan) = &args.verb {
        return super::rollout_plan::run(plan, &args.target).await;
    }
    let backend = match args.target.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let namespace = backend.namespace(args.namespace.as_deref());
    let rollout = |name: &str| ObjectRef {
        kind: Kind::Rollout,
        namespace: namespace.clone(),
        name: name.to_owned(),
    };
    if let (AnyBackend::Kube(cluster), Some(name)) = (&backend, rollout_named(&args.verb)) {
        eprintln!(
            "error: {}: Rollouts run on the embedded runtime (`weir up`); the cluster at {} has no Rollout controller yet, so nothing was sent (`weir rollout status|pause|resume deployment/NAME` work on a cluster)",
            rollout(name),
            cluster.server()
        );
        return exit::FAILED;
    }
    let (name, command, done) = match &args.verb {
        Verb::Plan(_) => return exit::OK,
        Verb::Status { name, timeout, .. } if deployment_name(name).is_some() => {
            let deployment = deployment_name(name).unwrap_or_default();
            return deployment_status(&backend, &namespace, deployment, *timeout).await;
        }
        Verb::Status { name, watch, .. } => return status(&backend, &rollout(name), *watch).await,
        Verb::Pause { name } | Verb::Resume { name } | Verb::Undo { name }
            if deployment_name(name).is_some() =>
        {
            let deployment = ObjectRef {
                kind: Kind::Deployment,
                namespace: namespace.clone(),
                name: deployment_name(name).unwrap_or_default().to_owned(),
            };
            return match &args.verb {
                Verb::Pause { .. } => set_paused(&backend, &deployment, true).await,
                Verb::Resume { .. } => set_paused(&backend, &deployment, false).await,
                _ => undo(&backend, &deployment).await,
            };
        }
        Verb::Undo { name } => {
            eprintln!(
                "error: {name:?}: rollout undo takes deployment/NAME; a Rollout goes back to its stable version with `weir rollout abort`"
            );
            return exit::BAD_INPUT;
        }
        Verb::Promote { name, full: false } => (name, Command::Promote, "promoted"),
        Verb::Promote { name, full: true } => (name, Command::PromoteFull, "promoted to the end"),
        Verb::Pause { name } => (name, Command::Pause, "paused"),
        Verb::Resume { name } => (name, Command::Resume, "resumed"),
        Verb::Abort { name } => (name, Command::Abort, "aborted"),
        Verb::Retry { name } => (name, Command::Retry, "retried"),
    };
    let target = rollout(name);
    // A promote is meant for the step the user sees now: sent twice, or
    // after the rollout moved on, it does not skip another.
    let step = match command {
        Command::Promote => match backend.get(&target).await {
            Ok(Some(o)) => o.object["status"]["currentStep"]
                .as_u64()
                .and_then(|s| usize::try_from(s).ok()),
            Ok(None) => None,
            Err(e) => return fail(e),
        },
        _ => None,
    };
    let intent = CommandIntent {
        id: format!("{:016x}", fastrand::u64(..)),
        command,
        step,
    };
    match backend.rollout_command(&target, &intent).await {
        Ok(object) => {
            let status = object
                .map(|o| o.object["status"].clone())
                .unwrap_or_default();
            let phase = status["phase"].as_str().unwrap_or("Pending");
            let outcome = status["commands"]
                .as_array()
                .and_then(|acks| acks.iter().find(|a| a["id"] == intent.id.as_str()))
                .and_then(|a| a["outcome"].as_str())
                .unwrap_or("not acknowledged yet");
            if outcome == "applied" {
                println!("{target} {done} (phase {phase})");
                exit::OK
            } else {
                eprintln!("error: {target}: {outcome} (phase {phase})");
                exit::FAILED
            }
        }
        Err(e) => fail(e),
    }
}

/// `weir rollout pause|resume deployment/NAME`: kubectl's patch of
/// `spec.paused`.
async fn set_paused(backend: &AnyBackend, deployment: &ObjectRef, paused: bool) -> u8 {
    let object = match live(backend, deployment).await {
        Ok(object) => object,
        Err(code) => return code,
    };
    if object["spec"]["paused"].as_bool().unwrap_or(false) == paused {
        let state = if paused { "paused" } else { "not paused" };
        eprintln!("error: {deployment} is already {state}");
        return exit::BAD_INPUT;
    }
    let verb = if paused { "paused" } else { "resumed" };
    let patch = serde_json::json!({"spec": {"paused": paused}});
    change(backend, deployment, PatchType::Merge, &patch, verb).await
}

/// `weir rollout undo deployment/NAME`: the pod template before the current
/// one, applied again (the current one becomes the one before).
async fn undo(backend: &AnyBackend, deployment: &ObjectRef) -> u8 {
    if let Err(code) = live(backend, deployment).await {
        return code;
    }
    match backend.previous_template(deployment).await {
        Ok(Some(template)) => {
            let patch =
                serde_json::json!([{"op": "replace", "path": "/spec/template", "value": template}]);
            change(backend, deployment, PatchType::Json, &patch, "rolled back").await
        }
        Ok(None) => {
            eprintln!(
                "error: no rollout history found for deployment {:?}",
                deployment.name
            );
            exit::FAILED
        }
        Err(e) => fail(e),
    }
}

/// The Deployment as stored; else the exit code, the error said.
async fn live(backend: &AnyBackend, deployment: &ObjectRef) -> Result<Value, u8> {
    match backend.get(deployment).await {
        Ok(Some(found)) => Ok(found.object),
        Ok(None) => {
            eprintln!(
                "Error from server (NotFound): deployments.apps {:?} not found",
                deployment.name
            );
            Err(exit::BAD_INPUT)
        }
        Err(e) => Err(fail(e)),
    }
}

/// Patches a Deployment as `weir patch` does.
async fn change(
    backend: &AnyBackend,
    deployment: &ObjectRef,
    kind: PatchType,
    patch: &Value,
    verb: &str,
) -> u8 {
    match backend.patch(deployment, kind, patch).await {
        Ok(_) => {
            println!("{deployment} {verb}");
            exit::OK
        }
        Err(e) => fail(e),
    }
}

/// `weir rollout status deployment/NAME`: kubectl's lines, each once, until
/// the Deployment is rolled out (0), its progress deadline passed or the
/// timeout (1), or it does not exist (2).
async fn deployment_status(
    backend: &AnyBackend,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> u8 {
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let mut last = String::new();
    loop {
        let object = match backend.list(Kind::Deployment, namespace).await {
            Ok(list) => list
                .into_iter()
                .map(|o| o.object)
                .find(|o| text_at(o, "/metadata/name") == name),
            Err(e) => return fail(e),
        };
        let Some(object) = object else {
            eprintln!("Error from server (NotFound): deployments.apps \"{name}\" not found");
            return exit::BAD_INPUT;
        };
        match rollout_state(&object) {
            RolloutState::Done(line) => {
                println!("{line}");
                return exit::OK;
            }
            RolloutState::Failed(line) => {
                eprintln!("error: {line}");
                return exit::FAILED;
            }
            RolloutState::Waiting(line) => {
                if line != last {
                    println!("{line}");
                    last = line;
                }
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            eprintln!("error: timed out waiting for the condition");
            return exit::FAILED;
        }
        // The runtime's watch is a poll too (twice a second).
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn status(backend: &AnyBackend, rollout: &ObjectRef, watch: bool) -> u8 {
    let mut last = String::new();
    loop {
        let object = match backend.get(rollout).await {
            Ok(found) => found.map(|o| o.object),
            Err(e) => return fail(e),
        };
        let Some(object) = object else {
            eprintln!(
                "Error from server (NotFound): {} \"{}\" not found",
                Kind::Rollout.qualified(),
                rollout.name
            );
            return exit::BAD_INPUT;
        };
        let text = render(&object);
        if text != last {
            print!("{text}");
            last = text;
        }
        let phase = text_at(&object, "/status/phase");
        let ended = matches!(phase, "Succeeded" | "RolledBack" | "Aborted");
        if !watch || ended {
            return if matches!(phase, "RolledBack" | "Aborted") {
                exit::FAILED
            } else {
                exit::OK
            };
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The status as `weir rollout status` prints it.
pub fn render(o: &Value) -> String {
    let mut out = String::new();
    let phase = match text_at(o, "/status/phase") {
        "" => "Pending",
        p => p,
    };
    let current = o["status"]["currentStep"].as_u64().map(|s| s as usize);
    let weight = o["status"]["canaryWeight"].as_u64().unwrap_or(0);
    let (stable, canary) = (text_at(o, "/spec/stable"), text_at(o, "/spec/canary"));
    out.push_str(&format!("Name:      {}\n", text_at(o, "/metadata/name")));
    out.push_str(&format!("Phase:     {phase}\n"));
    out.push_str(&format!(
        "Weights:   {stable} {} %, {canary} {weight} %\n",
        100 - weight.min(100)
    ));
    out.push_str(&format!("Message:   {}\n", text_at(o, "/status/message")));
    out.push_str("Steps:\n");
    for (i, step) in o["spec"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mark = match current {
            Some(c) if i < c => "done   ",
            Some(c) if i == c && phase != "Succeeded" => "current",
            _ => "pending",
        };
        let what = if let Some(w) = step.get("setWeight") {
            format!("setWeight: {w}")
        } else if step.get("analysis").is_some() {
            "analysis".to_owned()
        } else {
            match step.pointer("/pause/duration").and_then(Value::as_str) {
                Some(d) => format!("pause: {d}"),
                None => "pause (until promote)".to_owned(),
            }
        };
        out.push_str(&format!("  {i:>2} {mark}  {what}\n"));
    }
    let verdicts = o["status"]["verdicts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !verdicts.is_empty() {
        out.push_str("Analysis (last):\n");
        for v in verdicts {
            let num = |p: &str| {
                v.pointer(p)
                    .and_then(Value::as_f64)
                    .map_or("-".to_owned(), |x| format!("{x:.3}"))
            };
            let needed = v["requestsNeeded"]
                .as_u64()
                .map_or(String::new(), |n| format!(", conclusive at ~{n} requests"));
            out.push_str(&format!(
                "  {:<22} {:<12} estimate {} in [{}, {}] over {} requests, threshold {}{needed}\n",
                text_at(&v, "/metric"),
                text_at(&v, "/verdict"),
                num("/estimate"),
                num("/interval/0"),
                num("/interval/1"),
                v["n"].as_u64().unwrap_or(0),
                num("/threshold"),
            ));
        }
    }
    let capacity = &o["status"]["capacity"];
    if capacity.is_object() {
        let needed = capacity["needed"]
            .as_i64()
            .map_or("not estimated".to_owned(), |n| {
                format!("needs {n} replicas")
            });
        let decision = match &capacity["decision"] {
            Value::String(d) => d.clone(),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| format!("{k} to {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "Capacity:  canary {} %: {needed}, {} ready, {decision}: {}\n",
            capacity["share"].as_u64().unwrap_or(0),
            capacity["ready"].as_i64().unwrap_or(0),
            text_at(capacity, "/reason"),
        ));
    }
    let revisions: Vec<String> = o["status"]["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let scale_down = match text_at(r, "/scaleDownAt") {
                "" => String::new(),
                at => format!(" (scales down at {at})"),
            };
            format!(
                "{} {} {}/{} ready{scale_down}",
                text_at(r, "/role").to_lowercase(),
                text_at(r, "/revision"),
                r["ready"].as_i64().unwrap_or(0),
                r["replicas"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    if !revisions.is_empty() {
        out.push_str(&format!("Revisions: {}\n", revisions.join(", ")));
    }
    let history = o["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !history.is_empty() {
        out.push_str("History:\n");
        for e in history {
            out.push_str(&format!(
                "  {}  {}\n",
                text_at(&e, "/time"),
                text_at(&e, "/message")
            ));
        }
    }
    out
}
