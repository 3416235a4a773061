//! `weir get` and `weir describe`: kubectl's columns, `-o
//! wide|yaml|json|name|jsonpath=`, `-l` selectors, `--no-headers`, `-w` to
//! keep printing rows as they change.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::Value;
use weir_api::backend::{Backend, LiveObject, WatchEvent};
use weir_api::resource::Kind;

use crate::columns::rows;
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
