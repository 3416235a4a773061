//! weir-load's statistics against scipy and statsmodels: the committed
//! script `stats_reference.py` computes the reference values with the real
//! libraries (installed by `.ci/test-tools` into target/validators/venv) and
//! every function must agree.

use std::path::Path;
use std::process::Command;

use weir_load::stats::{wilson_at, z_for};

fn references() -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("../../target/validators/venv/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        "python3".into()
    };
    let out = Command::new(&python)
        .arg(root.join("tests/stats_reference.py"))
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the reference script failed (run .ci/test-tools first): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn every_statistic_agrees_with_scipy_and_statsmodels() {
    let r = references();
    for case in r["wilson"].as_array().unwrap() {
        let (k, n, c) = (
            case[0].as_u64().unwrap(),
            case[1].as_u64().unwrap(),
            case[2].as_f64().unwrap(),
        );
        let (lo, hi) = wilson_at(k, n, c);
        let (rlo, rhi) = (case[3].as_f64().unwrap(), case[4].as_f64().unwrap());
        assert!(
            close(lo, rlo) && close(hi, rhi),
            "wilson({k}, {n}, {c}) = ({lo}, {hi}), statsmodels ({rlo}, {rhi})"
        );
    }
    for case in r["z"].as_array().unwrap() {
        let (c, z) = (case[0].as_f64().unwrap(), case[1].as_f64().unwrap());
        assert!(close(z_for(c), z), "z_for({c}) = {}, scipy {z}", z_for(c));
    }
}
