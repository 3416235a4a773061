//! What the strategy demos conclude from a run of sampled requests: pure
//! functions over the samples (who answered, when), table-tested, so each
//! verdict is the README's "what to look for" made exact.

use std::time::Duration;

/// How one sampled request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Answered 200 by this version (`v1.0.0`).
    Version(String),
    /// Not answered: refused, reset, timed out, or a non-200 status.
    Failed(String),
}

/// One sampled request: when it was sent (since sampling began) and how it
/// ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When it was sent.
    pub at: Duration,
    /// How it ended.
    pub answer: Answer,
}

impl Sample {
    fn version(&self) -> Option<&str> {
        match &self.answer {
            Answer::Version(v) => Some(v),
            Answer::Failed(_) => None,
        }
    }
}

/// Requests that failed.
pub fn failures(samples: &[Sample]) -> usize {
    samples.iter().filter(|s| s.version().is_none()).count()
}

/// Requests `version` answered.
pub fn answered_by(samples: &[Sample], version: &str) -> usize {
    samples
        .iter()
        .filter(|s| s.version() == Some(version))
        .count()
}

/// The downtime between two versions: from the first failure after the
/// last answer of `old` to the first answer of `new` after it (the gap a
/// user saw); `None` when no request failed in between.
pub fn downtime(samples: &[Sample], old: &str, new: &str) -> Option<Duration> {
    let last_old = samples.iter().rposition(|s| s.version() == Some(old));
    let from = last_old.map_or(0, |i| i + 1);
    let first_failure = samples[from..]
        .iter()
        .position(|s| s.version().is_none())
        .map(|i| from + i)?;
    let back = samples[first_failure..]
        .iter()
        .find(|s| s.version() == Some(new))?;
    Some(back.at.saturating_sub(samples[first_failure].at))
}

/// Whether the versions overlapped: some answer of `new` came before some
/// answer of `old` (both served during the update).
pub fn overlapped(samples: &[Sample], old: &str, new: &str) -> bool {
    let first_new = samples.iter().position(|s| s.version() == Some(new));
    let last_old = samples.iter().rposition(|s| s.version() == Some(old));
    matches!((first_new, last_old), (Some(n), Some(o)) if n < o)
}

/// Answers after `switch` by a version other than `expected`: a blue/green
/// switch is clean when this is 0.
pub fn mixed_after(samples: &[Sample], switch: Duration, expected: &str) -> usize {
    samples
        .iter()
        .filter(|s| s.at >= switch)
        .filter(|s| s.version().is_some_and(|v| v != expected))
        .count()
}

/// The interval a share `p` of `n` independent requests falls in with
/// 99.9 % confidence (±3.29 standard errors), as a fraction.
pub fn share_interval(p: f64, n: usize) -> (f64, f64) {
    let se = (p * (1.0 - p) / n.max(1) as f64).sqrt();
    ((p - 3.29 * se).max(0.0), (p + 3.29 * se).min(1.0))
}

/// The share of `samples` answered by `version`, as a fraction of those
/// answered.
pub fn share(samples: &[Sample], version: &str) -> f64 {
    let answered = samples.len() - failures(samples);
    if answered == 0 {
        return 0.0;
    }
    answered_by(samples, version) as f64 / answered as f64
}

/// Whether every `window` consecutive answers hold exactly `k` of
/// `version`: the exact split weir's gateway promises (Envoy's random pick
/// only holds on average).
pub fn exact_per_window(samples: &[Sample], version: &str, window: usize, k: usize) -> bool {
    let answers: Vec<&str> = samples.iter().filter_map(Sample::version).collect();
    answers.len() >= window
        && answers
            .windows(window)
            .all(|w| w.iter().filter(|v| **v == version).count() == k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples 100 ms apart; `1` = v1, `2` = v2, `x` = failed.
    fn run(pattern: &str) -> Vec<Sample> {
        pattern
            .chars()
            .enumerate()
            .map(|(i, c)| Sample {
                at: Duration::from_millis(100 * i as u64),
                answer: match c {
                    '1' => Answer::Version("v1".into()),
                    '2' => Answer::Version("v2".into()),
                    _ => Answer::Failed("refused".into()),
                },
            })
            .collect()
    }

    #[test]
    fn downtime_is_the_gap_between_the_versions() {
        let rows: &[(&str, Option<u64>)] = &[
            ("111xxxx222", Some(400)),
            ("111x222", Some(100)),
            ("111222", None),
            ("1x1xx22", Some(200)),
            ("111xxx", None),
            ("xxx222", Some(300)),
            ("", None),
        ];
        for (pattern, want) in rows {
            assert_eq!(
                downtime(&run(pattern), "v1", "v2"),
                want.map(Duration::from_millis),
                "{pattern}"
            );
        }
    }

    #[test]
    fn overlap_means_both_versions_answered_during_the_update() {
        let rows: &[(&str, bool)] = &[
            ("1112122222", true),
            ("111222", false),
            ("111xx222", false),
            ("2221", true),
            ("111", false),
        ];
        for (pattern, want) in rows {
            assert_eq!(overlapped(&run(pattern), "v1", "v2"), *want, "{pattern}");
        }
    }

    #[test]
    fn mixed_answers_after_a_switch_are_counted() {
        let samples = run("1111122222");
        assert_eq!(mixed_after(&samples, Duration::from_millis(500), "v2"), 0);
        assert_eq!(mixed_after(&samples, Duration::from_millis(300), "v2"), 2);
        assert_eq!(
            mixed_after(&run("11112x2122"), Duration::from_millis(400), "v2"),
            1
        );
    }

    #[test]
    fn shares_and_their_interval() {
        let samples = run("1111111112x");
        assert_eq!(failures(&samples), 1);
        assert!((share(&samples, "v2") - 0.1).abs() < 1e-9);
        assert_eq!(share(&run("xx"), "v2"), 0.0);
        let (lo, hi) = share_interval(0.1, 400);
        assert!((lo - 0.05065).abs() < 1e-3 && (hi - 0.14935).abs() < 1e-3);
        assert_eq!(share_interval(0.0, 100), (0.0, 0.0));
        assert_eq!(share_interval(1.0, 100), (1.0, 1.0));
    }

    #[test]
    fn an_exact_split_holds_in_every_window() {
        assert!(exact_per_window(
            &run("1111111112111111111211"),
            "v2",
            10,
            1
        ));
        assert!(!exact_per_window(
            &run("1111111122111111111111"),
            "v2",
            10,
            1
        ));
        // Failures are not answers: they neither count nor break a window.
        assert!(exact_per_window(
            &run("111x1111112111111111x211"),
            "v2",
            10,
            1
        ));
        assert!(!exact_per_window(&run("1112"), "v2", 10, 1));
    }
}
