//! `weir get` and `weir describe`: kubectl's columns, `-o wide|yaml|json`,
//! `-w` to keep printing rows as they change.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use clap::Args;
use serde_json::Value;
use weir_api::resource::Kind;
use weir_runtime::admin::AdminClient;

use crate::commands::report;
use crate::{StateArgs, exit, state_dir, table};

/// `weir get` arguments.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The kind (kubectl's names and short names: po, deploy, svc, hpa, gw, vs, dr).
    pub kind: String,
    /// Only this object.
    pub name: Option<String>,
    /// Output: wide, yaml or json.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Watch: print changed rows until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// State dir.
    #[command(flatten)]
    pub state: StateArgs,
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn n(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// kubectl's AGE.
pub fn age(created: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339(created) else {
        return "<unknown>".into();
    };
    let secs = SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    match secs {
        0..120 => format!("{secs}s"),
        120..600 => format!("{}m{}s", secs / 60, secs % 60),
        600..10800 => format!("{}m", secs / 60),
        10800..172800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// Headers and one row per object, kubectl's columns for the kind.
pub fn rows(kind: Kind, objects: &[Value], wide: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let name = |o: &Value| s(o, "/metadata/name").to_owned();
    let created = |o: &Value| age(s(o, "/metadata/creationTimestamp"));
    match kind {
        Kind::Pod => {
            let mut headers = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
            if wide {
                headers.extend(["IP", "NODE"]);
            }
            let rows = objects
                .iter()
                .map(|o| {
                    let ready = o
                        .pointer("/status/containerStatuses/0/ready")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let status = if o.pointer("/metadata/deletionTimestamp").is_some() {
                        "Terminating".to_owned()
                    } else if let Some(reason) = o
                        .pointer("/status/containerStatuses/0/state/waiting/reason")
                        .and_then(Value::as_str)
                    {
                        reason.to_owned()
                    } else if o
                        .pointer("/status/containerStatuses/0/state/terminated")
                        .is_some()
                    {
                        "Error".to_owned()
                    } else {
                        s(o, "/status/phase").to_owned()
                    };
                    let mut row = vec![
                        name(o),
                        format!("{}/1", u8::from(ready)),
                        status,
                        n(o, "/status/containerStatuses/0/restartCount").to_string(),
                        created(o),
                    ];
                    if wide {
                        row.extend([s(o, "/status/podIP").to_owned(), "weir".to_owned()]);
                    }
                    row
                })
                .collect();
            (headers, rows)
        }
        Kind::Deployment => (
            vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            objects
                .iter()
                .map(|o| {
                    vec![
                        name(o),
                        format!(
                            "{}/{}",
                            n(o, "/status/readyReplicas"),
                            o.pointer("/spec/replicas")
                                .and_then(Value::as_i64)
                                .unwrap_or(1)
                        ),
                        n(o, "/status/updatedReplicas").to_string(),
                        n(o, "/status/availableReplicas").to_string(),
                        created(o),
                    ]
                })
                .collect(),
        ),
        Kind::Service => (
            vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            objects
                .iter()
                .map(|o| {
                    let ports: Vec<String> = o
                        .pointer("/spec/ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|p| {
                            format!(
                                "{}/{}",
                                n(p, "/port"),
                                s(p, "/protocol")
                                    .chars()
                                    .next()
                                    .map_or("TCP", |_| s(p, "/protocol"))
                            )
                        })
                        .collect();
                    vec![
                        name(o),
                        s(o, "/spec/type")
                            .chars()
                            .next()
                            .map_or("ClusterIP".into(), |_| s(o, "/spec/type").to_owned()),
                        "<none>".into(),
                        "<none>".into(),
                        ports.join(","),
                        created(o),
                    ]
                })
                .collect(),
        ),
        Kind::HorizontalPodAutoscaler => (
            vec![
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS",
                "AGE",
            ],
            objects
                .iter()
                .map(|o| {
                    let target = o
                        .pointer("/spec/targetCPUUtilizationPercentage")
                        .and_then(Value::as_i64)
                        .or_else(|| {
                            o.pointer("/spec/metrics/0/resource/target/averageUtilization")
                                .and_then(Value::as_i64)
                        })
                        .unwrap_or(80);
                    let current = o
                        .pointer("/status/currentCPUUtilizationPercentage")
                        .and_then(Value::as_i64)
                        .map_or("<unknown>".to_owned(), |c| format!("{c}%"));
                    vec![
                        name(o),
                        format!(
                            "{}/{}",
                            s(o, "/spec/scaleTargetRef/kind"),
                            s(o, "/spec/scaleTargetRef/name")
                        ),
                        format!("cpu: {current}/{target}%"),
                        o.pointer("/spec/minReplicas")
                            .and_then(Value::as_i64)
                            .unwrap_or(1)
                            .to_string(),
                        n(o, "/spec/maxReplicas").to_string(),
                        n(o, "/status/currentReplicas").to_string(),
                        created(o),
                    ]
                })
                .collect(),
        ),
        Kind::VirtualService => (
            vec!["NAME", "GATEWAYS", "HOSTS", "AGE"],
            objects
                .iter()
                .map(|o| {
                    let list = |p: &str| {
                        let items: Vec<String> = o
                            .pointer(p)
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(|x| format!("\"{x}\""))
                            .collect();
                        format!("[{}]", items.join(","))
                    };
                    vec![
                        name(o),
                        list("/spec/gateways"),
                        list("/spec/hosts"),
                        created(o),
                    ]
                })
                .collect(),
        ),
        Kind::DestinationRule => (
            vec!["NAME", "HOST", "AGE"],
            objects
                .iter()
                .map(|o| vec![name(o), s(o, "/spec/host").to_owned(), created(o)])
                .collect(),
        ),
        Kind::Gateway | Kind::WorkloadEntry => (
            vec!["NAME", "AGE"],
            objects.iter().map(|o| vec![name(o), created(o)]).collect(),
        ),
    }
}

fn yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

/// Runs `weir get`.
pub async fn run(args: GetArgs) -> u8 {
    let kind: Kind = match args.kind.parse() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let client = AdminClient::new(&state_dir::resolve(args.state.state_dir));
    let wide = args.output.as_deref() == Some("wide");
    if let Some(o) = args.output.as_deref()
        && !["wide", "yaml", "json"].contains(&o)
    {
        eprintln!(
            "error: unable to match a printer suitable for the output format {o:?}, allowed formats are: json, wide, yaml"
        );
        return exit::BAD_INPUT;
    }
    let mut printed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut first = true;
    loop {
        let mut objects = match client.list(kind, &args.namespace).await {
            Ok(o) => o,
            Err(e) => return report(e),
        };
        if let Some(name) = &args.name {
            objects.retain(|o| s(o, "/metadata/name") == name);
            if objects.is_empty() && first {
                eprintln!(
                    "Error from server (NotFound): {} \"{name}\" not found",
                    kind.qualified()
                );
                return exit::BAD_INPUT;
            }
        }
        match args.output.as_deref() {
            Some("json") => {
                let value = match (&args.name, objects.as_slice()) {
                    (Some(_), [one]) => one.clone(),
                    _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
                };
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            }
            Some("yaml") => {
                let value = match (&args.name, objects.as_slice()) {
                    (Some(_), [one]) => one.clone(),
                    _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
                };
                print!("{}", yaml(&value));
            }
            _ => {
                let (headers, rows) = rows(kind, &objects, wide);
                if first && rows.is_empty() && !args.watch {
                    eprintln!("No resources found in {} namespace.", args.namespace);
                    return exit::OK;
                }
                let text = table::render(&headers, &rows);
                let mut lines = text.lines();
                let header = lines.next().unwrap_or_default();
                if first {
                    println!("{header}");
                }
                for (row, line) in rows.iter().zip(lines) {
                    // With -w, print a row again only when it changed (ignoring AGE).
                    let key = row[0].clone();
                    let signature: Vec<String> = row
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| headers[*i] != "AGE")
                        .map(|(_, c)| c.clone())
                        .collect();
                    if printed.get(&key) != Some(&signature) {
                        println!("{line}");
                        printed.insert(key, signature);
                    }
                }
            }
        }
        if !args.watch {
            return exit::OK;
        }
        first = false;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `weir describe`.
pub async fn describe(kind: &str, name: &str, namespace: &str, state: StateArgs) -> u8 {
    let kind: Kind = match kind.parse() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let client = AdminClient::new(&state_dir::resolve(state.state_dir));
    let objects = match client.list(kind, namespace).await {
        Ok(o) => o,
        Err(e) => return report(e),
    };
    let Some(object) = objects.iter().find(|o| s(o, "/metadata/name") == name) else {
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
                s(c, "/type"),
                s(c, "/status"),
                s(c, "/reason"),
                s(c, "/message")
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
