//! `weir get` and `weir describe`: kubectl's columns, `-o
//! wide|yaml|json|name|jsonpath=`, `-l` selectors, `--no-headers`, `-w` to
//! keep printing rows as they change.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use clap::Args;
use serde_json::Value;
use weir_api::backend::{Backend, LiveObject, WatchEvent};
use weir_api::resource::Kind;

use crate::exit::fail;
use crate::output::{OutputFormat, output_arg};
use crate::selector::LabelSelector;
use crate::show::{text_at, yaml};
use crate::target::TargetArgs;
use crate::{exit, table};

/// `weir get` arguments.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The kind (kubectl's names and short names: po, deploy, svc, hpa, gw, vs, dr).
    pub kind: String,
    /// Only this object.
    pub name: Option<String>,
    /// Output: wide, yaml, json, name or jsonpath=TEMPLATE.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Only objects whose labels match, e.g. `app=my-app,version!=v1.0.0`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Print rows without the header line.
    #[arg(long)]
    pub no_headers: bool,
    /// Watch: print changed rows until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Namespace (default: the backend's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
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
    let name = |o: &Value| text_at(o, "/metadata/name").to_owned();
    let created = |o: &Value| age(text_at(o, "/metadata/creationTimestamp"));
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
                        text_at(o, "/status/phase").to_owned()
                    };
                    let mut row = vec![
                        name(o),
                        format!("{}/1", u8::from(ready)),
                        status,
                        n(o, "/status/containerStatuses/0/restartCount").to_string(),
                        created(o),
                    ];
                    if wide {
                        row.extend([text_at(o, "/status/podIP").to_owned(), "weir".to_owned()]);
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
                            let protocol = text_at(p, "/protocol")
                                .chars()
                                .next()
                                .map_or("TCP", |_| text_at(p, "/protocol"));
                            match p.pointer("/nodePort").and_then(Value::as_u64) {
                                Some(node) => format!("{}:{node}/{protocol}", n(p, "/port")),
                                None => format!("{}/{protocol}", n(p, "/port")),
                            }
                        })
                        .collect();
                    let kind = text_at(o, "/spec/type");
                    let external = match o
                        .pointer("/status/loadBalancer/ingress/0")
                        .and_then(|i| i.get("ip").or_else(|| i.get("hostname")))
                        .and_then(Value::as_str)
                    {
                        Some(address) => address.to_owned(),
                        None if kind == "LoadBalancer" => "<pending>".to_owned(),
                        None => "<none>".to_owned(),
                    };
                    let cluster_ip = o
                        .pointer("/spec/clusterIP")
                        .and_then(Value::as_str)
                        .unwrap_or("<none>")
                        .to_owned();
                    vec![
                        name(o),
                        kind.chars()
                            .next()
                            .map_or("ClusterIP".into(), |_| kind.to_owned()),
                        cluster_ip,
                        external,
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
                            text_at(o, "/spec/scaleTargetRef/kind"),
                            text_at(o, "/spec/scaleTargetRef/name")
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
                .map(|o| vec![name(o), text_at(o, "/spec/host").to_owned(), created(o)])
                .collect(),
        ),
        Kind::Ingress => (
            vec!["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
            objects
                .iter()
                .map(|o| {
                    let hosts: Vec<&str> = o
                        .pointer("/spec/rules")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|r| r.get("host").and_then(Value::as_str).unwrap_or("*"))
                        .collect();
                    let lb = o
                        .pointer("/status/loadBalancer/ingress")
                        .and_then(Value::as_array);
                    let addresses: Vec<&str> = lb
                        .into_iter()
                        .flatten()
                        .filter_map(|i| i.get("ip").or(i.get("hostname")).and_then(Value::as_str))
                        .collect();
                    // The ports the controller serves on: the status's
                    // (weir's, not 80 here), else kubectl's 80.
                    let ports: Vec<String> = lb
                        .into_iter()
                        .flatten()
                        .flat_map(|i| {
                            i.get("ports")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                        })
                        .filter_map(|p| p.get("port").and_then(Value::as_u64))
                        .map(|p| p.to_string())
                        .collect();
                    let class = match text_at(o, "/spec/ingressClassName") {
                        "" => "<none>",
                        class => class,
                    };
                    vec![
                        name(o),
                        class.to_owned(),
                        if hosts.is_empty() {
                            "*".to_owned()
                        } else {
                            hosts.join(",")
                        },
                        addresses.join(","),
                        if ports.is_empty() {
                            "80".to_owned()
                        } else {
                            ports.join(", ")
                        },
                        created(o),
                    ]
                })
                .collect(),
        ),
        Kind::Gateway | Kind::WorkloadEntry => (
            vec!["NAME", "AGE"],
            objects.iter().map(|o| vec![name(o), created(o)]).collect(),
        ),
        Kind::Rollout => {
            let mut headers = vec!["NAME", "STATUS", "STEP", "WEIGHT", "AGE"];
            if wide {
                headers.extend(["VIRTUALSERVICE", "STABLE", "CANARY", "MESSAGE"]);
            }
            let rows = objects
                .iter()
                .map(|o| {
                    let steps = o
                        .pointer("/spec/steps")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    let step = o
                        .pointer("/status/currentStep")
                        .and_then(Value::as_u64)
                        .map_or_else(
                            || "-".to_owned(),
                            |s| format!("{}/{steps}", (s as usize).min(steps)),
                        );
                    let phase = match text_at(o, "/status/phase") {
                        "" => "Pending",
                        phase => phase,
                    };
                    let weight = o
                        .pointer("/status/canaryWeight")
                        .and_then(Value::as_u64)
                        .map_or_else(|| "-".to_owned(), |w| w.to_string());
                    let mut row = vec![name(o), phase.to_owned(), step, weight, created(o)];
                    if wide {
                        row.extend([
                            text_at(o, "/spec/virtualService").to_owned(),
                            text_at(o, "/spec/stable").to_owned(),
                            text_at(o, "/spec/canary").to_owned(),
                            text_at(o, "/status/message").to_owned(),
                        ]);
                    }
                    row
                })
                .collect();
            (headers, rows)
        }
    }
}

fn print_rows(kind: Kind, objects: &[Value], wide: bool, header: bool) {
    let (headers, rows) = rows(kind, objects, wide);
    let text = table::render(&headers, &rows);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    if header {
        println!("{first}");
    }
    for line in lines {
        println!("{line}");
    }
}

/// The kinds `weir get all` and `weir delete all` cover: kubectl's
/// `all` category as far as weir has its kinds (no ReplicaSets).
pub const ALL_KINDS: [Kind; 4] = [
    Kind::Pod,
    Kind::Service,
    Kind::Deployment,
    Kind::HorizontalPodAutoscaler,
];

/// `weir get all [-l SELECTOR]`: a table per kind, rows named KIND/NAME,
/// separated by a blank line, as kubectl prints them.
async fn all(args: GetArgs) -> u8 {
    if args.name.is_some() || args.watch {
        eprintln!("error: `get all` takes neither a name nor -w");
        return exit::BAD_INPUT;
    }
    let output = match output_arg(
        args.output.as_deref(),
        &[OutputFormat::Wide, OutputFormat::Name],
    ) {
        Ok(format) => format,
        Err(code) => return code,
    };
    let selector = match LabelSelector::from_arg(args.selector.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let backend = match args.target.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let namespace = backend.namespace(args.namespace.as_deref());
    let mut sections = Vec::new();
    for kind in ALL_KINDS {
        let objects: Vec<Value> = match backend.list(kind, &namespace).await {
            Ok(list) => list
                .into_iter()
                .filter(|o| selector.matches(&labels_of(&o.object)))
                .map(|o| o.object)
                .collect(),
            Err(e) => return fail(e),
        };
        if objects.is_empty() {
            continue;
        }
        if output == Some(OutputFormat::Name) {
            for o in &objects {
                println!("{}/{}", kind.qualified(), text_at(o, "/metadata/name"));
            }
            continue;
        }
        let (headers, mut rows) = rows(kind, &objects, output == Some(OutputFormat::Wide));
        for row in &mut rows {
            row[0] = format!("{}/{}", kind.qualified(), row[0]);
        }
        let text = table::render(&headers, &rows);
        let lines: Vec<&str> = text.lines().skip(usize::from(args.no_headers)).collect();
        sections.push(lines.join("\n"));
    }
    if sections.is_empty() && output != Some(OutputFormat::Name) {
        eprintln!("No resources found in {namespace} namespace.");
    }
    if !sections.is_empty() {
        println!("{}", sections.join("\n\n"));
    }
    exit::OK
}

/// An object's `metadata.labels`.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

fn document(name: &Option<String>, objects: Vec<Value>) -> Value {
    match (name, objects.as_slice()) {
        (Some(_), [one]) => one.clone(),
        _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
    }
}

/// Runs `weir get`.
pub async fn run(args: GetArgs) -> u8 {
    if args.kind == "all" {
        return all(args).await;
    }
    let kind: Kind = match args.kind.parse() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let template = args
        .output
        .as_deref()
        .and_then(|o| o.strip_prefix("jsonpath="));
    let output = match template {
        Some(_) => None,
        None => match output_arg(
            args.output.as_deref(),
            &[
                OutputFormat::Wide,
                OutputFormat::Yaml,
                OutputFormat::Json,
                OutputFormat::Name,
            ],
        ) {
            Ok(format) => format,
            Err(code) => return code,
        },
    };
    let selector = match LabelSelector::from_arg(args.selector.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let wide = output == Some(OutputFormat::Wide);
    let backend = match args.target.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let namespace = backend.namespace(args.namespace.as_deref());
    let keep = |o: &LiveObject| {
        args.name.as_deref().is_none_or(|n| o.name() == n)
            && selector.matches(&labels_of(&o.object))
    };
    let objects: Vec<Value> = match backend.list(kind, &namespace).await {
        Ok(list) => list
            .into_iter()
            .filter(|o| keep(o))
            .map(|o| o.object)
            .collect(),
        Err(e) => return fail(e),
    };
    if let Some(name) = &args.name
        && objects.is_empty()
        && !args.watch
    {
        eprintln!(
            "Error from server (NotFound): {} \"{name}\" not found",
            kind.qualified()
        );
        return exit::BAD_INPUT;
    }
    if let Some(template) = template {
        return match crate::jsonpath::render(template, &document(&args.name, objects)) {
            Ok(text) => {
                print!("{text}");
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::BAD_INPUT
            }
        };
    }
    match output {
        Some(OutputFormat::Name) => {
            for o in &objects {
                println!("{}/{}", kind.qualified(), text_at(o, "/metadata/name"));
            }
        }
        Some(OutputFormat::Json) => println!(
            "{}",
            serde_json::to_string_pretty(&document(&args.name, objects)).unwrap_or_default()
        ),
        Some(OutputFormat::Yaml) => print!("{}", yaml(&document(&args.name, objects))),
        _ if objects.is_empty() && !args.watch => {
            eprintln!("No resources found in {namespace} namespace.")
        }
        _ if !args.watch => print_rows(kind, &objects, wide, !args.no_headers),
        _ => {}
    }
    if !args.watch {
        return exit::OK;
    }
    // kubectl get -w: the current rows, then a row for every change (AGE ignored).
    let mut stream = match backend.watch(kind, &namespace).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut header = !args.no_headers;
    let mut printed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Some(event) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        let object = match event {
            Ok(WatchEvent::Applied(o)) if keep(&o) => o.object,
            Ok(_) => continue,
            Err(e) => return fail(e),
        };
        let (headers, row) = rows(kind, std::slice::from_ref(&object), wide);
        let signature: Vec<String> = row[0]
            .iter()
            .enumerate()
            .filter(|(i, _)| headers[*i] != "AGE")
            .map(|(_, c)| c.clone())
            .collect();
        if printed.get(&row[0][0]) == Some(&signature) {
            continue;
        }
        printed.insert(row[0][0].clone(), signature);
        print_rows(kind, &[object], wide, header);
        header = false;
    }
    exit::OK
}
