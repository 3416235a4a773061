//! The allowed crate graph: which workspace crate may depend on which, as
//! `docs/ARCHITECTURE.md` draws it in the block after the line
//! [`MARKER`], checked against `cargo metadata`. Each line of the block is
//! `CRATE → DEP DEP …` (nothing after the arrow: no workspace crate); the
//! line `tests → …` names the test-support crates any crate's tests may
//! use. Every workspace crate must be drawn, and every crate drawn must
//! exist, so the drawing cannot go stale.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::Breach;

/// The line in `docs/ARCHITECTURE.md` the graph's block follows.
pub const MARKER: &str = "<!-- crate graph: checked by crates/house-rules -->";

/// The graph as drawn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Graph {
    /// Each crate's allowed dependencies (normal and build).
    pub allowed: BTreeMap<String, BTreeSet<String>>,
    /// Crates any crate's tests may also use (dev-dependencies).
    pub test_support: BTreeSet<String>,
}

/// Reads the graph from the architecture document's text.
pub fn drawn(doc: &str) -> Result<Graph, String> {
    let after = doc
        .split_once(MARKER)
        .ok_or_else(|| format!("docs/ARCHITECTURE.md has no line {MARKER}"))?
        .1;
    let block = after
        .split_once("```")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .and_then(|(_, rest)| rest.split_once("```"))
        .ok_or_else(|| format!("no fenced block after {MARKER}"))?
        .0;
    let mut graph = Graph::default();
    for (i, line) in block
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (name, deps) = line
            .split_once('→')
            .ok_or_else(|| format!("crate graph, line {}: no → in {line:?}", i + 1))?;
        let deps: BTreeSet<String> = deps.split_whitespace().map(str::to_owned).collect();
        match name.trim() {
            "tests" => graph.test_support = deps,
            name => {
                graph.allowed.insert(name.to_owned(), deps);
            }
        }
    }
    Ok(graph)
}

/// Where the workspace's crates, as `cargo metadata --no-deps` describes
/// them, depart from `graph`.
pub fn breaches(graph: &Graph, metadata: &Value) -> Vec<Breach> {
    let packages: Vec<&Value> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let members: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut found = Vec::new();
    for drawn in graph.allowed.keys() {
        if !members.contains(drawn.as_str()) {
            found.push(breach(
                drawn,
                "is drawn in the crate graph but is not a workspace crate",
            ));
        }
    }
    for package in packages {
        let Some(name) = package["name"].as_str() else {
            continue;
        };
        let Some(allowed) = graph.allowed.get(name) else {
            found.push(breach(
                name,
                "is not drawn in docs/ARCHITECTURE.md's crate graph",
            ));
            continue;
        };
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let Some(dep_name) = dep["name"].as_str().filter(|d| members.contains(d)) else {
                continue;
            };
            let dev = dep["kind"] == "dev";
            let fine = allowed.contains(dep_name) || (dev && graph.test_support.contains(dep_name));
            if !fine {
                let kind = if dev { "dev-dependency" } else { "dependency" };
                found.push(breach(
                    name,
                    &format!("has a {kind} on {dep_name}, which the crate graph does not allow"),
                ));
            }
        }
    }
    found
}

fn breach(at: &str, what: &str) -> Breach {
    Breach {
        at: at.to_owned(),
        what: what.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DOC: &str = "# A\n\n<!-- crate graph: checked by crates/house-rules -->\n```text\ncore  →\napp   → core\nharness →\ntests → harness\n```\n";

    fn metadata(packages: &[(&str, &[(&str, &str)])]) -> Value {
        let packages: Vec<Value> = packages
            .iter()
            .map(|(name, deps)| {
                let deps: Vec<Value> = deps
                    .iter()
                    .map(|(d, kind)| json!({"name": d, "kind": if *kind == "normal" { Value::Null } else { json!(kind) }}))
                    .collect();
                json!({"name": name, "dependencies": deps})
            })
            .collect();
        json!({ "packages": packages })
    }

    #[test]
    fn the_drawing_is_read_from_its_block() {
        let graph = drawn(DOC).unwrap();
        assert_eq!(graph.allowed["app"], BTreeSet::from(["core".to_owned()]));
        assert!(graph.allowed["core"].is_empty());
        assert_eq!(graph.test_support, BTreeSet::from(["harness".to_owned()]));
        assert!(drawn("# no marker").is_err());
        assert!(drawn(&DOC.replace("app   → core", "app core")).is_err());
    }

    #[test]
    fn each_departure_from_the_drawing_is_a_breach() {
        let graph = drawn(DOC).unwrap();
        let ok = metadata(&[
            ("core", &[("serde", "normal")]),
            ("app", &[("core", "normal"), ("harness", "dev")]),
            ("harness", &[]),
        ]);
        assert_eq!(breaches(&graph, &ok), []);
        let cases: [(Value, &str); 4] = [
            (
                metadata(&[
                    ("core", &[("app", "normal")]),
                    ("app", &[]),
                    ("harness", &[]),
                ]),
                "core: has a dependency on app, which the crate graph does not allow",
            ),
            (
                metadata(&[
                    ("core", &[("harness", "normal")]),
                    ("app", &[]),
                    ("harness", &[]),
                ]),
                "core: has a dependency on harness, which the crate graph does not allow",
            ),
            (
                metadata(&[("core", &[]), ("app", &[]), ("harness", &[]), ("new", &[])]),
                "new: is not drawn in docs/ARCHITECTURE.md's crate graph",
            ),
            (
                metadata(&[("core", &[]), ("harness", &[])]),
                "app: is drawn in the crate graph but is not a workspace crate",
            ),
        ];
        for (metadata, wanted) in cases {
            let found: Vec<String> = breaches(&graph, &metadata)
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(found, [wanted]);
        }
    }
}
