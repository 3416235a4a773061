//! Istio's own validation test tables, ported row by row as golden cases
//! (`tests/istio-conformance/*.yaml`, one file per Go test function, rows in
//! Istio's order, each with Istio's verdict) and run black-box through
//! `weir validate`'s loader. weir must agree with every row, except rows
//! marked `weir: not-implemented` (they set a field weir refuses by design:
//! weir must refuse them, saying "not implemented") and rows marked
//! `weir: not-expressible` (an input a manifest cannot carry, said why).
//!
//! `tests/istio-conformance/check-istio-tables.py` compares these files
//! with Istio's Go test files (names, order and verdicts), so that the next
//! Istio release can be diffed; see docs/ISTIO-SEMANTICS.md.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use weir_api::load::load_str;

#[derive(Deserialize)]
struct Table {
    source: String,
    commit: String,
    function: String,
    kind: String,
    wrap: Wrap,
    /// For a table whose every row sets a field weir refuses by design:
    /// how many rows Istio's table has (its rows here stand for them all).
    #[serde(default)]
    represents: Option<usize>,
    rows: Vec<Row>,
}

/// Where a row's input goes in the object the test builds.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Wrap {
    /// The input is the object's spec.
    Spec,
    /// A Gateway server.
    Server,
    /// One HTTP rule of a VirtualService bound to a gateway.
    Route,
    /// A DestinationRule's top-level traffic policy.
    TrafficPolicy,
    /// A DestinationRule's load balancer settings.
    LoadBalancer,
}

#[derive(Deserialize)]
struct Row {
    name: String,
    istio: Verdict,
    #[serde(default)]
    weir: Option<Expectation>,
    #[serde(default)]
    why: Option<String>,
    #[serde(rename = "in", default)]
    input: Value,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Verdict {
    Valid,
    Invalid,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Expectation {
    NotImplemented,
    NotExpressible,
}

fn tables() -> Vec<(PathBuf, Table)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/istio-conformance");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let table: Table =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, table)
        })
        .collect()
}

fn object(kind: &str, wrap: Wrap, input: &Value) -> Value {
    let spec = match wrap {
        Wrap::Spec => input.clone(),
        Wrap::Server => json!({ "servers": [input] }),
        Wrap::Route => json!({
            "hosts": ["foo.bar"],
            "gateways": ["test-gateway"],
            "http": [input],
        }),
        Wrap::TrafficPolicy => json!({ "host": "reviews", "trafficPolicy": input }),
        Wrap::LoadBalancer => {
            json!({ "host": "reviews", "trafficPolicy": { "loadBalancer": input } })
        }
    };
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": { "name": "foo", "namespace": "bar" },
        "spec": spec,
    })
}

/// What weir says about one row: `Ok` (loaded, maybe with warnings) or its
/// error messages.
fn weir_verdict(kind: &str, wrap: Wrap, input: &Value) -> Result<(), String> {
    let document = serde_json::to_string_pretty(&object(kind, wrap, input)).unwrap();
    load_str(Path::new("row.yaml"), &document)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn weir_agrees_with_every_row_of_istios_validation_tables() {
    let mut failures = Vec::new();
    let mut counts = [0usize; 3];
    for (path, table) in tables() {
        assert!(
            table.commit.len() == 40 && !table.source.is_empty() && !table.function.is_empty(),
            "{}: source, 40-hex commit and function are required",
            path.display()
        );
        assert!(!table.rows.is_empty(), "{}: no rows", path.display());
        if let Some(n) = table.represents {
            assert!(
                n >= table.rows.len()
                    && table
                        .rows
                        .iter()
                        .all(|r| r.weir == Some(Expectation::NotImplemented)),
                "{}: a represented table's rows are all refused by design",
                path.display()
            );
        }
        for row in &table.rows {
            let at = format!("{} {:?}", table.function, row.name);
            if row.weir == Some(Expectation::NotExpressible) {
                assert!(row.why.is_some(), "{at}: say why it cannot be expressed");
                counts[2] += 1;
                continue;
            }
            let got = weir_verdict(&table.kind, table.wrap, &row.input);
            let refused_by_design = row.weir == Some(Expectation::NotImplemented);
            let agrees = match (&got, row.istio) {
                (Err(e), _) if refused_by_design => e.contains("not implemented"),
                (_, _) if refused_by_design => false,
                (Ok(()), Verdict::Valid) | (Err(_), Verdict::Invalid) => true,
                _ => false,
            };
            if !agrees {
                failures.push(format!(
                    "{at}: Istio says {:?}{}, weir says {got:?}",
                    row.istio,
                    if refused_by_design {
                        " (weir must refuse: not implemented)"
                    } else {
                        ""
                    }
                ));
            } else if refused_by_design {
                counts[1] += 1;
            } else {
                counts[0] += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{} rows agree, {} refused by design, {} not expressible",
        counts[0], counts[1], counts[2]
    );
    assert!(counts[0] >= 150, "only {} agreeing rows", counts[0]);
}

#[test]
fn the_table_diff_script_reads_go_tables_and_every_golden_file() {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/istio-conformance/check-istio-tables.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("--self-test")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The discrepancies a review found beyond the rows of Istio's tables, each
/// with Istio's verdict (from its validation code and CRD), run the same way.
#[test]
fn the_reviewed_discrepancies_agree_with_istio() {
    let route = |extra: Value| {
        let mut r = json!({ "route": [{ "destination": { "host": "foo.baz" } }] });
        if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
            r.extend(extra.clone());
        }
        r
    };
    let gateway = |name: &str| {
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": { "name": name, "namespace": "bar" },
            "spec": { "servers": [{ "hosts": ["foo.bar.com"], "port": { "name": "http", "number": 80, "protocol": "HTTP" } }] },
        })
    };
    // (what, document, Istio's verdict, weir refuses by design)
    let cases: Vec<(&str, Value, Verdict, bool)> = vec![
        (
            "a Gateway named http.gateway",
            gateway("http.gateway"),
            Verdict::Invalid,
            false,
        ),
        (
            "a Gateway named http-gateway",
            gateway("http-gateway"),
            Verdict::Valid,
            false,
        ),
        (
            "withoutHeaders regex \"*\" (header present)",
            object(
                "VirtualService",
                Wrap::Route,
                &route(
                    json!({ "match": [{ "withoutHeaders": { "x-canary": { "regex": "*" } } }] }),
                ),
            ),
            Verdict::Valid,
            false,
        ),
        (
            "a JWT-claim header match on a gateway route",
            object(
                "VirtualService",
                Wrap::Route,
                &route(
                    json!({ "match": [{ "headers": { "@request.auth.claims.group": { "exact": "beta" } } }] }),
                ),
            ),
            Verdict::Valid,
            true,
        ),
        (
            "a consistent hash with only maglev.tableSize (prime)",
            object(
                "DestinationRule",
                Wrap::LoadBalancer,
                &json!({ "consistentHash": { "maglev": { "tableSize": 65537 } } }),
            ),
            Verdict::Valid,
            false,
        ),
        (
            "an empty subset trafficPolicy",
            object(
                "DestinationRule",
                Wrap::Spec,
                &json!({ "host": "reviews", "subsets": [{ "name": "v1", "labels": { "version": "v1" }, "trafficPolicy": {} }] }),
            ),
            Verdict::Invalid,
            false,
        ),
        (
            "an abort with httpStatus 600",
            object(
                "VirtualService",
                Wrap::Route,
                &route(
                    json!({ "fault": { "abort": { "httpStatus": 600, "percentage": { "value": 1 } } } }),
                ),
            ),
            Verdict::Valid,
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (what, document, istio, refused) in cases {
        let text = serde_json::to_string_pretty(&document).unwrap();
        let got = load_str(Path::new("case.yaml"), &text)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let agrees = match (&got, istio) {
            (Err(e), _) if refused => e.contains("not implemented"),
            (_, _) if refused => false,
            (Ok(()), Verdict::Valid) | (Err(_), Verdict::Invalid) => true,
            _ => false,
        };
        if !agrees {
            failures.push(format!("{what}: Istio says {istio:?}, weir says {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
