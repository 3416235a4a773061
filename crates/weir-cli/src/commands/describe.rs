//! `weir describe KIND NAME`: one object in detail, as kubectl shows it:
//! identity, labels, conditions, spec and status.

use clap::Args;
use serde_json::Value;
use weir_api::backend::{Backend, LiveObject};
use weir_api::resource::{Kind, ObjectRef};

use crate::exit::{self, fail};
use crate::show::{text_at, yaml};
use crate::target::TargetArgs;

/// `weir describe` arguments.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The kind.
    pub kind: String,
    /// The name.
    pub name: String,
    /// Namespace (default: the backend's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs `weir describe`.
pub async fn run(args: DescribeArgs) -> u8 {
    let DescribeArgs {
        kind,
        name,
        namespace,
        target,
    } = args;
    let name = name.as_str();
    let kind: Kind = match kind.parse() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let backend = match target.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let namespace = backend.namespace(namespace.as_deref());
    let wanted = ObjectRef {
        kind,
        namespace: namespace.clone(),
        name: name.to_owned(),
    };
    let found = match backend.get(&wanted).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let Some(LiveObject { object, .. }) = found else {
        eprintln!(
            "Error from server (NotFound): {} \"{name}\" not found",
            kind.qualified()
        );
        return exit::BAD_INPUT;
    };
    println!("Name:         {name}");
    println!("Namespace:    {namespace}");
    println!("Kind:         {}", kind.name());
    if let Some(labels) = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
    {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        println!("Labels:       {}", labels.join(", "));
    }
    if let Some(conditions) = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
    {
        println!("Conditions:");
        println!("  {:<16} {:<7} {:<24} MESSAGE", "TYPE", "STATUS", "REASON");
        for c in conditions {
            println!(
                "  {:<16} {:<7} {:<24} {}",
                text_at(c, "/type"),
                text_at(c, "/status"),
                text_at(c, "/reason"),
                text_at(c, "/message")
            );
        }
    }
    if let Some(spec) = object.get("spec") {
        println!("Spec:");
        for line in yaml(spec).lines() {
            println!("  {line}");
        }
    }
    if let Some(status) = object.get("status") {
        println!("Status:");
        for line in yaml(status).lines() {
            println!("  {line}");
        }
    }
    exit::OK
}
