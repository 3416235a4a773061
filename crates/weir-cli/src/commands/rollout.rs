//! `weir rollout`: a Rollout's progress and the controls Argo Rollouts
//! users know — `status [-w]`, `promote [--full]`, `pause`, `resume`,
//! `abort`, `retry` — and `plan -f FILE` before any of it. Rollouts run in
//! the embedded runtime; `status` exits 1
//! when the rollout was rolled back or aborted, so scripts can gate on it.
//! For `deployment/NAME`, kubectl's: `status`, `pause`, `resume`, `undo`.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;
use weir_api::resource::{Kind, ObjectRef};
use weir_rollout::engine::Command;
use weir_runtime::admin::{AdminClient, RolloutRequest};

use crate::deployment_status::{RolloutState, deployment_name, rollout_state};
use crate::exit::{self, report};
use crate::show::text_at;
use crate::state_dir::{self, StateArgs};
use crate::target::TargetArgs;

/// `weir rollout` arguments.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
    /// Namespace (default: default).
    #[arg(short = 'n', long, global = true, default_value = "default")]
    pub namespace: String,
    /// State dir of the running `weir up`.
    #[command(flatten)]
    pub state: StateArgs,
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

/// Runs `weir rollout`.
pub async fn run(args: RolloutArgs) -> u8 {
    let state = state_dir::resolve(args.state.state_dir.clone());
    let client = AdminClient::new(&state);
    let rollout = |name: &str| ObjectRef {
        kind: Kind::Rollout,
        namespace: args.namespace.clone(),
        name: name.to_owned(),
    };
    let (name, command, done) = match &args.verb {
        Verb::Plan(plan) => {
            let target = TargetArgs::local(state);
            return super::rollout_plan::run(plan, &target).await;
        }
        Verb::Status { name, timeout, .. } if deployment_name(name).is_some() => {
            let deployment = deployment_name(name).unwrap_or_default();
            return deployment_status(&client, &args.namespace, deployment, *timeout).await;
        }
        Verb::Status { name, watch, .. } => return status(&client, &rollout(name), *watch).await,
        Verb::Pause { name } | Verb::Resume { name } | Verb::Undo { name }
            if deployment_name(name).is_some() =>
        {
            let deployment = ObjectRef {
                kind: Kind::Deployment,
                namespace: args.namespace.clone(),
                name: deployment_name(name).unwrap_or_default().to_owned(),
            };
            return match &args.verb {
                Verb::Pause { .. } => set_paused(&client, &deployment, true).await,
                Verb::Resume { .. } => set_paused(&client, &deployment, false).await,
                _ => undo(&client, &deployment).await,
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
    match client
        .rollout(RolloutRequest {
            rollout: target.clone(),
            command,
        })
        .await
    {
        Ok(status) => {
            let phase = status
                .as_ref()
                .map_or("Pending", |s| s["phase"].as_str().unwrap_or("Pending"));
            println!("{target} {done} (phase {phase})");
            exit::OK
        }
        Err(e) => report(e),
    }
}

/// `weir rollout pause|resume deployment/NAME`: kubectl's patch of
/// `spec.paused`.
async fn set_paused(client: &AdminClient, deployment: &ObjectRef, paused: bool) -> u8 {
    let mut object = match live(client, deployment).await {
        Ok(object) => object,
        Err(code) => return code,
    };
    if object["spec"]["paused"].as_bool().unwrap_or(false) == paused {
        let state = if paused { "paused" } else { "not paused" };
        eprintln!("error: {deployment} is already {state}");
        return exit::BAD_INPUT;
    }
    object["spec"]["paused"] = paused.into();
    let verb = if paused { "paused" } else { "resumed" };
    reapply(client, deployment, object, verb).await
}

/// `weir rollout undo deployment/NAME`: the pod template before the current
/// one, applied again (the current one becomes the one before).
async fn undo(client: &AdminClient, deployment: &ObjectRef) -> u8 {
    let mut object = match live(client, deployment).await {
        Ok(object) => object,
        Err(code) => return code,
    };
    match client.previous_template(deployment).await {
        Ok(Some(template)) => {
            object["spec"]["template"] = template;
            reapply(client, deployment, object, "rolled back").await
        }
        Ok(None) => {
            eprintln!(
                "error: no rollout history found for deployment {:?}",
                deployment.name
            );
            exit::FAILED
        }
        Err(e) => report(e),
    }
}

/// The Deployment as stored, without what the server sets; else the exit
/// code, the error said.
async fn live(client: &AdminClient, deployment: &ObjectRef) -> Result<Value, u8> {
    let list = client
        .list(Kind::Deployment, &deployment.namespace)
        .await
        .map_err(report)?;
    match list
        .into_iter()
        .find(|o| text_at(o, "/metadata/name") == deployment.name)
    {
        Some(found) => Ok(weir_api::patch::without_server_fields(found)),
        None => {
            eprintln!(
                "Error from server (NotFound): deployments.apps {:?} not found",
                deployment.name
            );
            Err(exit::BAD_INPUT)
        }
    }
}

/// Applies a changed Deployment through the path `weir apply` takes.
async fn reapply(client: &AdminClient, deployment: &ObjectRef, object: Value, verb: &str) -> u8 {
    let text = serde_json::to_string_pretty(&object).unwrap_or_default();
    let source = (
        std::path::PathBuf::from(format!("rollout {verb} of {deployment}")),
        text,
    );
    match client.apply(vec![source]).await {
        Ok(_) => {
            println!("{deployment} {verb}");
            exit::OK
        }
        Err(e) => report(e),
    }
}

/// `weir rollout status deployment/NAME`: kubectl's lines, each once, until
/// the Deployment is rolled out (0), its progress deadline passed or the
/// timeout (1), or it does not exist (2).
async fn deployment_status(
    client: &AdminClient,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> u8 {
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let mut last = String::new();
    loop {
        let object = match client.list(Kind::Deployment, namespace).await {
            Ok(list) => list
                .into_iter()
                .find(|o| text_at(o, "/metadata/name") == name),
            Err(e) => return report(e),
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

async fn status(client: &AdminClient, rollout: &ObjectRef, watch: bool) -> u8 {
    let mut last = String::new();
    loop {
        let object = match client.list(Kind::Rollout, &rollout.namespace).await {
            Ok(list) => list
                .into_iter()
                .find(|o| text_at(o, "/metadata/name") == rollout.name),
            Err(e) => return report(e),
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
