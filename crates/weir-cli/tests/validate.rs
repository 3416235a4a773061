//! `weir validate` as a user runs it: the real binary, real files.

use std::path::Path;
use std::process::{Command, Output};

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("run weir")
}

#[test]
fn the_walkthrough_validates_one_line_per_resource() {
    let out = weir(&["validate", "-f", "examples/canary-istio/"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{stdout}");
    assert!(
        lines[1].starts_with("deployment.apps/my-app-v1 "),
        "{stdout}"
    );
    assert!(
        lines[1].ends_with("examples/canary-istio/app-v1.yaml:15)"),
        "{stdout}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.matches("warning:").count(), 4, "{stderr}");
    assert!(stderr.contains(
        "examples/canary-istio/app-v1.yaml:23:3: warning: deployment.apps/my-app-v1: spec.replicas:"
    ));
    assert!(stderr.contains("examples/canary-istio/hpa.yaml:9:5: warning:"));
}

#[test]
fn a_bad_manifest_exits_2_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("istio.yaml");
    let upstream = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/canary-istio/istio.yaml"),
    )
    .unwrap();
    std::fs::write(&file, upstream.replace("weight: 10", "weight: -10")).unwrap();
    let out = weir(&["validate", "-f", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let expected = format!(
        "{}:38:7: error: virtualservice.networking.istio.io/my-app: spec.http[0].route[1].weight: weight -10 < 0",
        file.display()
    );
    assert!(stderr.lines().any(|l| l == expected), "{stderr}");
    assert!(
        stderr.ends_with("1 error: nothing would be applied\n"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(weir(&["validate"]).status.code(), Some(2));
    assert_eq!(weir(&["no-such-command"]).status.code(), Some(2));
}
