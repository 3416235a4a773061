//! `weir describe KIND NAME`: one object in detail, as kubectl shows it:
//! identity, labels, conditions, spec and status.

use clap::Args;
use serde_json::Value;
use weir_api::backend::{Backend, LiveObject};
use weir_api::resource::{Kind, ObjectRef};

use crate::columns::age;
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
    match backend.events(&wanted).await {
        Ok(events) => print!("{}", events_section(&events)),
        Err(e) => println!("Events:       <unable to list: {e}>"),
    }
    exit::OK
}

/// kubectl's Events section: type, reason, age (`3m (x4 over 10m)` for a
/// repeated one), source and message, oldest first; `<none>` without any.
pub fn events_section(events: &[Value]) -> String {
    if events.is_empty() {
        return "Events:       <none>\n".to_owned();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let last = age(text_at(e, "/lastTimestamp"));
            let count = e["count"].as_u64().unwrap_or(1);
            let when = if count > 1 {
                format!(
                    "{last} (x{count} over {})",
                    age(text_at(e, "/firstTimestamp"))
                )
            } else {
                last
            };
            vec![
                text_at(e, "/type").to_owned(),
                text_at(e, "/reason").to_owned(),
                when,
                text_at(e, "/source/component").to_owned(),
                text_at(e, "/message").to_owned(),
            ]
        })
        .collect();
    let mut rows_with_rule = vec![
        ["----", "------", "----", "----", "-------"]
            .map(str::to_owned)
            .to_vec(),
    ];
    rows_with_rule.extend(rows);
    let table = crate::table::render(
        &["Type", "Reason", "Age", "From", "Message"],
        &rows_with_rule,
    );
    let mut out = "Events:\n".to_owned();
    for line in table.lines() {
        out.push_str("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_as_kubectl_prints_them() {
        assert_eq!(events_section(&[]), "Events:       <none>\n");
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let event = |reason: &str, count: u64| {
            serde_json::json!({
                "type": "Normal", "reason": reason, "count": count,
                "firstTimestamp": now, "lastTimestamp": now,
                "source": {"component": "kubelet"}, "message": "Started container my-app",
            })
        };
        let text = events_section(&[event("Started", 1), event("Pulled", 3)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Events:");
        let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            words(lines[1]),
            ["Type", "Reason", "Age", "From", "Message"],
            "{text}"
        );
        assert_eq!(
            words(lines[2]),
            ["----", "------", "----", "----", "-------"],
            "{text}"
        );
        assert_eq!(
            words(lines[3]),
            [
                "Normal",
                "Started",
                "0s",
                "kubelet",
                "Started",
                "container",
                "my-app"
            ],
            "{text}"
        );
        assert!(lines[4].contains("(x3 over "), "{text}");
    }
}
