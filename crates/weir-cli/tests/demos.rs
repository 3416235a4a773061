//! `weir demo --all`: the nine strategies of the seed repository, each on
//! its unmodified manifests in a runtime of its own, with real pods and
//! real connections; every verdict must pass.

mod support;

use std::process::Command;

use support::weir_bin;

/// The verdicts each strategy's demo must print as passed.
const VERDICTS: [(&str, &[&str]); 9] = [
    (
        "recreate",
        &[
            "a window of errors between the versions",
            "never both versions at once",
        ],
    ),
    (
        "ramped",
        &[
            "no failed request during the update",
            "both versions answered during the update",
        ],
    ),
    (
        "blue-green",
        &[
            "green got nothing before the switch",
            "0 mixed responses after the switch",
        ],
    ),
    (
        "blue-green-ingress",
        &[
            "v2 got nothing before the switch",
            "both services switched: 0 mixed responses",
        ],
    ),
    (
        "canary-native",
        &[
            "v2's share follows the replica ratio (1 of 10)",
            "v2 serves everything once v1 is deleted",
        ],
    ),
    (
        "canary-nginx",
        &[
            "exactly 1 request in every 10 goes to v2",
            "v2 serves everything",
        ],
    ),
    (
        "canary-istio",
        &["traffic splits 90/10", "v2 scales up under load"],
    ),
    (
        "ab-testing",
        &[
            "1 request in 10 ends up in v2",
            "X-API-Version picks the version",
        ],
    ),
    (
        "shadow",
        &["clients see v1 only", "v2 receives a copy of each request"],
    ),
];

#[test]
fn every_strategy_demo_passes() {
    let out = Command::new(weir_bin())
        .args(["demo", "--all"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sections: Vec<&str> = stdout.split("════ weir demo ").skip(1).collect();
    assert_eq!(sections.len(), 9, "{stdout}");
    for ((strategy, checks), section) in VERDICTS.iter().zip(&sections) {
        assert!(section.starts_with(strategy), "{strategy}: {section}");
        for check in *checks {
            assert!(
                section
                    .lines()
                    .any(|l| l.starts_with(check) && l.contains(" pass ")),
                "{strategy}: {check}\n{section}"
            );
        }
    }
    let table = sections[8].split("\nSTRATEGY").nth(1).unwrap_or_default();
    for (strategy, _) in VERDICTS {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(strategy) && l.contains(" pass ")),
            "{strategy} in {table}"
        );
    }
    assert!(stdout.contains("9 of 9 strategies passed"), "{stdout}");
}

#[test]
fn a_scenario_and_all_are_a_usage_error() {
    let out = Command::new(weir_bin())
        .args(["demo", "recreate", "--all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
