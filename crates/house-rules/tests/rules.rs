//! The house rules over the whole repository (the rules themselves, each
//! failing on a planted breach, are tested beside their code in `src/`,
//! and the import-circle check on a planted crate here). A failure lists
//! every breach, with where and why.

use std::path::Path;

use house_rules::{Breach, crate_graph, cycles, lengths, rust_files, workspace_root};

fn report(rule: &str, breaches: &[Breach]) {
    let lines: Vec<String> = breaches.iter().map(ToString::to_string).collect();
    assert!(
        breaches.is_empty(),
        "{rule}: {} breach(es):\n{}",
        breaches.len(),
        lines.join("\n")
    );
}

/// The Rust sources of the repository, with their paths from its root.
fn sources() -> Vec<(String, String)> {
    let root = workspace_root();
    ["crates", "fuzz", "bench"]
        .iter()
        .flat_map(|dir| rust_files(&root.join(dir)))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable source");
            let shown = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            (shown, text)
        })
        .collect()
}

#[test]
fn no_file_is_over_600_lines_without_saying_why() {
    let found: Vec<Breach> = sources()
        .iter()
        .filter_map(|(at, text)| lengths::long_file(at, text))
        .collect();
    report("files over 600 lines", &found);
}

#[test]
fn no_function_is_over_150_lines() {
    let found: Vec<Breach> = sources()
        .iter()
        .flat_map(|(at, text)| lengths::long_functions(at, text))
        .collect();
    report("functions over 150 lines", &found);
}

#[test]
fn each_crate_depends_only_on_what_the_architecture_draws() {
    let root = workspace_root();
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let graph = crate_graph::drawn(&doc).unwrap();
    let metadata = house_rules::cargo_metadata(&root);
    report("the crate graph", &crate_graph::breaches(&graph, &metadata));
}

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    let root = workspace_root();
    let targets = cycles::targets(&root);
    // cargo-modules takes seconds per target: one per core at a time.
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = targets.len().div_ceil(workers).max(1);
    let found: Vec<Breach> = std::thread::scope(|scope| {
        let running: Vec<_> = targets
            .chunks(chunk)
            .map(|some| {
                let root = &root;
                scope.spawn(move || {
                    some.iter()
                        .filter_map(|target| cycles::check(root, target).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        running
            .into_iter()
            .flat_map(|t| t.join().expect("a checker thread"))
            .collect()
    });
    report("import circles", &found);
}

#[test]
fn a_planted_import_circle_is_found_and_its_cure_passes() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "Cargo.toml",
        "[package]\nname = \"planted\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
    );
    write("src/lib.rs", "pub mod a;\npub mod b;\n");
    write(
        "src/a.rs",
        "use crate::b::B;\n\npub struct A;\n\npub fn make() -> B {\n    B\n}\n",
    );
    write(
        "src/b.rs",
        "use crate::a::A;\n\npub struct B;\n\npub fn make() -> A {\n    A\n}\n",
    );
    let target = cycles::Target {
        package: "planted".into(),
        kind: cycles::Kind::Lib,
    };
    let err = cycles::check(dir.path(), &target).expect_err("a circle");
    assert!(err.what.contains("import circle"), "{err}");
    // The cure: what both need moves to a module of its own.
    write("src/lib.rs", "pub mod a;\npub mod b;\npub mod shapes;\n");
    write("src/shapes.rs", "pub struct A;\npub struct B;\n");
    write(
        "src/a.rs",
        "use crate::shapes::B;\n\npub fn make() -> B {\n    B\n}\n",
    );
    write(
        "src/b.rs",
        "use crate::shapes::A;\n\npub fn make() -> A {\n    A\n}\n",
    );
    cycles::check(dir.path(), &target).expect("no circle");
    assert!(Path::new(dir.path()).join("src/shapes.rs").exists());
}
