//! The anytime-valid tests against an independent computation: the
//! committed script `sequential_reference.py` computes the mixture ratios
//! from their closed forms in scipy's binomial tails, the bounds with
//! scipy's root finder, each test's boundary (most errors that Pass, fewest
//! that Fail) by scanning, and the exact chances that a gate over 60 looks
//! ends in Pass or Fail; every value here must agree, and the exact error
//! rates at the bound must be within the levels.

use std::path::Path;
use std::process::Command;

use statrs::distribution::{Binomial, Discrete};
use weir_rollout::sequential::{
    ln_mix_above, ln_mix_below, lower_bound, shows_above, shows_below, upper_bound,
};

fn references() -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("../../target/validators/venv/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        "python3".into()
    };
    let out = Command::new(&python)
        .arg(root.join("tests/sequential_reference.py"))
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the reference script failed (run .ci/test-tools first): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap()
}
fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap()
}

/// The most errors of `n` that Pass and the fewest that Fail.
fn boundaries(n: u64, p0: f64, a_pass: f64, a_fail: f64) -> (i64, Option<u64>) {
    let e_pass = (0..=n)
        .take_while(|&e| shows_above(n, n - e, p0, a_pass))
        .last()
        .map_or(-1, |e| e as i64);
    let e_fail = (0..=n).find(|&e| shows_below(n, n - e, p0, a_fail));
    (e_pass, e_fail)
}

/// The exact chances a gate of `looks` looks of `r` requests each ends in
/// Pass or Fail, with this crate's boundaries.
fn gate(p_true: f64, p0: f64, r: u64, looks: u64, a_pass: f64, a_fail: f64) -> (f64, f64) {
    let step = Binomial::new(1.0 - p_true, r).unwrap();
    let step: Vec<f64> = (0..=r).map(|k| step.pmf(k)).collect();
    let mut dist = vec![1.0];
    let (mut pass, mut fail) = (0.0, 0.0);
    for look in 1..=looks {
        let mut next = vec![0.0; dist.len() + r as usize];
        for (e, m) in dist.iter().enumerate() {
            for (k, p) in step.iter().enumerate() {
                next[e + k] += m * p;
            }
        }
        dist = next;
        let (e_pass, e_fail) = boundaries(look * r, p0, a_pass, a_fail);
        for (e, m) in dist.iter_mut().enumerate() {
            if e as i64 <= e_pass {
                pass += *m;
                *m = 0.0;
            } else if e_fail.is_some_and(|b| e as u64 >= b) {
                fail += *m;
                *m = 0.0;
            }
        }
    }
    (pass, fail)
}

#[test]
fn every_test_and_bound_agrees_with_the_reference() {
    let r = references();
    for case in r["ratios"].as_array().unwrap() {
        let (n, k, p0) = (u(&case[0]), u(&case[1]), f(&case[2]));
        let (above, below) = (ln_mix_above(n, k, p0), ln_mix_below(n, k, p0));
        assert!(
            (above - f(&case[3])).abs() < 1e-7 && (below - f(&case[4])).abs() < 1e-7,
            "ratios({n}, {k}, {p0}) = ({above}, {below}), scipy ({}, {})",
            case[3],
            case[4]
        );
    }
    for case in r["bounds"].as_array().unwrap() {
        let (n, k, alpha) = (u(&case[0]), u(&case[1]), f(&case[2]));
        let (lo, hi) = (lower_bound(n, k, alpha), upper_bound(n, k, alpha));
        assert!(
            (lo - f(&case[3])).abs() < 1e-7 && (hi - f(&case[4])).abs() < 1e-7,
            "bounds({n}, {k}, {alpha}) = ({lo}, {hi}), scipy ({}, {})",
            case[3],
            case[4]
        );
    }
    for case in r["boundaries"].as_array().unwrap() {
        let (n, p0, ap, af) = (u(&case[0]), f(&case[1]), f(&case[2]), f(&case[3]));
        let expected = (case[4].as_i64().unwrap(), case[5].as_u64());
        assert_eq!(boundaries(n, p0, ap, af), expected, "boundaries at n = {n}");
    }
}

#[test]
fn a_gate_over_60_looks_errs_exactly_as_the_reference_computes_and_within_its_levels() {
    let r = references();
    for case in r["gates"].as_array().unwrap() {
        let (pt, p0, n, looks, ap, af) = (
            f(&case[0]),
            f(&case[1]),
            u(&case[2]),
            u(&case[3]),
            f(&case[4]),
            f(&case[5]),
        );
        let (pass, fail) = gate(pt, p0, n, looks, ap, af);
        assert!(
            (pass - f(&case[6])).abs() < 1e-9 && (fail - f(&case[7])).abs() < 1e-9,
            "gate({pt}, {p0}, {n}, {looks}) = ({pass}, {fail}), reference ({}, {})",
            case[6],
            case[7]
        );
        if pt == p0 {
            assert!(pass <= ap && fail <= af, "at the bound: {pass} {fail}");
        }
    }
}
