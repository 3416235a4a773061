//! No import circle between the modules of a crate: `cargo-modules` (a
//! well-kept tool built on rust-analyzer) draws each target's module graph
//! from its `use` declarations (`dependencies` with types, functions,
//! traits and ownership filtered out, so each edge is one module importing
//! from another); the circles in it are its strongly connected components
//! of more than one module, found with petgraph. (cargo-modules' own
//! `--acyclic` checks the graph of items, not of modules: two modules that
//! import each other's types pass it.) `.ci/test-tools` installs the tool
//! (cached); this module finds it and runs it per library and binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;
use serde_json::Value;

use crate::Breach;

/// The version of cargo-modules the checks run (`.ci/test-tools` installs
/// this one: the newest that builds with the project's Rust).
pub const VERSION: &str = "0.27.0";

/// A library or a binary of a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The package's name.
    pub package: String,
    /// Which of its targets.
    pub kind: Kind,
}

/// The kind of a target, as cargo-modules selects it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The package's library.
    Lib,
    /// One of its binaries, by name.
    Bin(String),
}

/// Where cargo-modules is: `$WEIR_CARGO_MODULES`, else `target/tools/bin`
/// in this workspace (where `.ci/test-tools` links it), else on the `PATH`.
pub fn program() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_CARGO_MODULES") {
        return PathBuf::from(path);
    }
    let linked = crate::workspace_root().join("target/tools/bin/cargo-modules");
    if linked.is_file() {
        linked
    } else {
        PathBuf::from("cargo-modules")
    }
}

/// The libraries and binaries of the workspace at `root`.
pub fn targets(root: &Path) -> Vec<Target> {
    of_metadata(&crate::cargo_metadata(root))
}

/// The libraries and binaries `cargo metadata` describes.
pub fn of_metadata(metadata: &Value) -> Vec<Target> {
    let mut found = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        for target in package["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = target["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let kind = if kinds.contains(&"lib") {
                Kind::Lib
            } else if kinds.contains(&"bin") {
                Kind::Bin(target["name"].as_str().unwrap_or_default().to_owned())
            } else {
                continue;
            };
            found.push(Target {
                package: name.to_owned(),
                kind,
            });
        }
    }
    found
}

/// Runs cargo-modules on `target` of the workspace (or package) at
/// `root` and returns the import circles of its module graph, as a breach.
pub fn check(root: &Path, target: &Target) -> Result<(), Breach> {
    let program = program();
    let mut command = Command::new(&program);
    command
        .args(["dependencies", "--package", &target.package])
        .args([
            "--no-externs",
            "--no-sysroot",
            "--no-fns",
            "--no-traits",
            "--no-types",
        ])
        .args(["--no-owns", "--layout", "dot"])
        .current_dir(root);
    let shown = match &target.kind {
        Kind::Lib => {
            command.arg("--lib");
            format!("{} (lib)", target.package)
        }
        Kind::Bin(name) => {
            command.args(["--bin", name]);
            format!("{} (bin {name})", target.package)
        }
    };
    let out = command.output().unwrap_or_else(|e| {
        panic!(
            "{} (cargo-modules {VERSION}) did not run: {e}; `bash .ci/test-tools` installs it",
            program.display()
        )
    });
    if !out.status.success() {
        return Err(Breach {
            at: shown,
            what: format!(
                "cargo-modules failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let circles = circles(&uses(&String::from_utf8_lossy(&out.stdout)));
    if circles.is_empty() {
        return Ok(());
    }
    let shown_circles: Vec<String> = circles.iter().map(|c| c.join(" ↔ ")).collect();
    Err(Breach {
        at: shown,
        what: format!(
            "an import circle between its modules: {}",
            shown_circles.join("; ")
        ),
    })
}

/// The `uses` edges of a cargo-modules DOT drawing, as (from, to) module
/// paths.
pub fn uses(dot: &str) -> Vec<(String, String)> {
    dot.lines()
        .filter(|line| line.contains("label=\"uses\""))
        .filter_map(|line| {
            let (from, rest) = line.trim().split_once(" -> ")?;
            let to = rest.split_once(' ')?.0;
            Some((
                from.trim_matches('"').to_owned(),
                to.trim_matches('"').to_owned(),
            ))
        })
        .collect()
}

/// The circles among `edges`: each strongly connected component of more
/// than one module (its modules sorted), and each module that imports
/// itself.
pub fn circles(edges: &[(String, String)]) -> Vec<Vec<String>> {
    let mut graph: DiGraphMap<&str, (), std::hash::RandomState> = DiGraphMap::new();
    for (from, to) in edges {
        graph.add_edge(from.as_str(), to.as_str(), ());
    }
    let mut found: Vec<Vec<String>> = tarjan_scc(&graph)
        .into_iter()
        .filter(|c| c.len() > 1 || graph.contains_edge(c[0], c[0]))
        .map(|c| {
            let mut names: Vec<String> = c.into_iter().map(str::to_owned).collect();
            names.sort();
            names
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn circles_are_the_components_of_more_than_one_module() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a [&'a str]]);
        let cases: [Case<'_>; 4] = [
            (&[("c::a", "c::b"), ("c::b", "c::c")], &[]),
            (&[("c::a", "c::b"), ("c::b", "c::a")], &[&["c::a", "c::b"]]),
            // Through five modules, with a tail that is not part of it.
            (
                &[
                    ("c::x", "c::a"),
                    ("c::a", "c::b"),
                    ("c::b", "c::c"),
                    ("c::c", "c::d"),
                    ("c::d", "c::e"),
                    ("c::e", "c::a"),
                ],
                &[&["c::a", "c::b", "c::c", "c::d", "c::e"]],
            ),
            (&[("c::a", "c::a")], &[&["c::a"]]),
        ];
        for (pairs, wanted) in cases {
            let wanted: Vec<Vec<String>> = wanted
                .iter()
                .map(|c| c.iter().map(|m| (*m).to_owned()).collect())
                .collect();
            assert_eq!(circles(&edges(pairs)), wanted, "{pairs:?}");
        }
    }

    #[test]
    fn the_drawings_uses_edges_are_read() {
        let dot = r##"digraph {
    "p" [label="crate|p"]; // "crate" node
    "p::a" -> "p::b" [label="uses", color="#7f7f7f", style="dashed"] [constraint=false]; // "uses" edge
    "p" -> "p::a" [label="owns", color="black", style="solid"] [constraint=true]; // "owns" edge
}"##;
        assert_eq!(uses(dot), edges(&[("p::a", "p::b")]));
    }
}
