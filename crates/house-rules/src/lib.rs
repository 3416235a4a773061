//! The house rules of the repository, as checks a test runs in CI
//! (`tests/rules.rs`), so the structure `docs/ARCHITECTURE.md` describes
//! is kept by a machine rather than by a reviewer now and then:
//!
//! - no Rust file over [`MAX_FILE_LINES`] lines unless its opening comment
//!   says why (it names "600 lines" and gives the reason);
//! - no function over [`MAX_FUNCTION_LINES`] lines;
//! - no import circle between the modules of a crate (checked by
//!   `cargo-modules`' `--acyclic`, see [`cycles`]);
//! - each crate depends only on the crates the graph in
//!   `docs/ARCHITECTURE.md` allows it (checked from `cargo metadata`).
//!
//! Each check is a function over files or text and returns the breaches it
//! finds, so each is tested on a planted breach.

pub mod crate_graph;
pub mod cycles;
pub mod lengths;

use std::fmt;
use std::path::{Path, PathBuf};

/// Longest a Rust file may be without saying why.
pub const MAX_FILE_LINES: usize = 600;

/// Longest a function may be, signature to closing brace.
pub const MAX_FUNCTION_LINES: usize = 150;

/// One rule broken, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breach {
    /// The file (or crate) that breaks it.
    pub at: String,
    /// What is wrong, in a sentence.
    pub what: String,
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

/// The workspace's root (this crate is `crates/house-rules`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `cargo metadata --no-deps` of the workspace (or package) at `root`: its
/// crates, their targets and their dependencies.
pub fn cargo_metadata(root: &Path) -> serde_json::Value {
    let out =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(root)
            .output()
            .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON")
}

/// Every `.rs` file under `dir`, sorted, skipping `target` directories.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
