//! Judging a split from what a load run saw, one way for every command
//! (`weir verify`, the demo, the cluster's route confirmation): how many
//! answers each named version got (a name covers its versions: `v1` ⊇
//! `v1.0.0`), how many no name claims (errors, other versions), and
//! whether a sample shows given weights.

use std::collections::BTreeMap;

use crate::classify::belongs;
use crate::report::Report;

/// Answers per named version, and those no name claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitCounts {
    /// Answers of each name's versions, in the names' order.
    pub counts: Vec<u64>,
    /// Answers (and failures) that no name claims.
    pub other: u64,
}

impl SplitCounts {
    /// Counts `versions` (answers by version) for `names`, out of `sent`
    /// requests (answered or failed).
    pub fn count(names: &[&str], versions: &BTreeMap<String, u64>, sent: u64) -> Self {
        let counts = names
            .iter()
            .map(|name| {
                versions
                    .iter()
                    .filter(|(v, _)| belongs(v, name))
                    .map(|(_, c)| c)
                    .sum()
            })
            .collect();
        let claimed: u64 = versions
            .iter()
            .filter(|(v, _)| names.iter().any(|name| belongs(v, name)))
            .map(|(_, c)| c)
            .sum();
        Self {
            counts,
            other: sent.saturating_sub(claimed),
        }
    }

    /// The counts of a load report.
    pub fn of_report(names: &[&str], report: &Report) -> Self {
        Self::count(names, &report.versions, report.requests + report.errors)
    }
}

/// Whether a sample shows `weights` (in the counts' order): a destination
/// at 0 % or 100 % must get exactly none or all of the requests; any other
/// share must be within [`tolerance`] of its weight. Requests that no
/// destination claims (errors, other versions) fail the sample, and so
/// does an empty one.
pub fn sample_matches(weights: &[u32], sample: &SplitCounts) -> bool {
    let total: u32 = weights.iter().sum();
    let n: u64 = sample.counts.iter().sum::<u64>() + sample.other;
    if n == 0 || sample.other > 0 || total == 0 {
        return false;
    }
    weights.iter().zip(&sample.counts).all(|(&w, &c)| {
        let want = f64::from(w) / f64::from(total);
        let got = c as f64 / n as f64;
        if w == 0 || w == total {
            got == want
        } else {
            (got - want).abs() <= tolerance(want, n)
        }
    })
}

/// The allowed deviation of an observed share from its target: 3.29
/// standard errors (a two-sided 99.9 % band) but at least 5 points.
pub fn tolerance(share: f64, n: u64) -> f64 {
    (3.29 * (share * (1.0 - share) / n as f64).sqrt()).max(0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample of `versions` (answers by version) plus `failed` requests,
    /// counted for destinations `v1` and `v2`.
    fn sample(versions: &[(&str, u64)], failed: u64) -> SplitCounts {
        let versions: BTreeMap<String, u64> = versions
            .iter()
            .map(|(v, c)| ((*v).to_owned(), *c))
            .collect();
        let sent = versions.values().sum::<u64>() + failed;
        SplitCounts::count(&["v1", "v2"], &versions, sent)
    }

    #[test]
    fn names_cover_their_versions_and_the_rest_is_other() {
        let counts = sample(&[("v1.0.0", 5), ("v2.1", 3), ("v3", 2)], 1);
        assert_eq!(counts.counts, [5, 3]);
        assert_eq!(counts.other, 3);
    }

    #[test]
    fn zero_and_hundred_are_exact() {
        let after = [0, 100];
        assert!(sample_matches(&after, &sample(&[("v2.0.0", 200)], 0)));
        assert!(!sample_matches(
            &after,
            &sample(&[("v1.0.0", 1), ("v2.0.0", 199)], 0)
        ));
        assert!(
            !sample_matches(&after, &sample(&[("v2.0.0", 199)], 1)),
            "errors fail the sample"
        );
        assert!(
            !sample_matches(&after, &sample(&[], 0)),
            "no answers prove nothing"
        );
    }

    #[test]
    fn other_shares_within_the_stated_tolerance() {
        let after = [50, 50];
        assert!(sample_matches(
            &after,
            &sample(&[("v1.0.0", 110), ("v2.0.0", 90)], 0)
        ));
        assert!(!sample_matches(
            &after,
            &sample(&[("v1.0.0", 180), ("v2.0.0", 20)], 0)
        ));
        assert!((tolerance(0.5, 200) - 0.1163).abs() < 1e-3);
        assert_eq!(tolerance(0.1, 100_000), 0.05);
    }
}
