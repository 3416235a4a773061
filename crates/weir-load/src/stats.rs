//! Split statistics: shares with Wilson intervals, Pearson's chi-square
//! goodness of fit, the sample size that detects a 5-point deviation, the
//! verdict in words. Each is checked against scipy and statsmodels
//! (`tests/stats_reference.rs`). Rollout verdicts, which look again and
//! again, use the anytime-valid tests of `weir-rollout` instead.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// The normal quantile for a two-sided interval at `confidence` (1.96 at 0.95).
pub fn z_for(confidence: f64) -> f64 {
    Normal::standard().inverse_cdf(0.5 + confidence / 2.0)
}

/// The Wilson score interval of `k` successes in `n` trials (95%).
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    wilson_at(k, n, 0.95)
}

/// The Wilson score interval of `k` successes in `n` trials at
/// `confidence` (Wilson 1927; statsmodels' `proportion_confint(method="wilson")`).
/// With no trials it is the whole of 0–1: nothing is known.
pub fn wilson_at(k: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = z_for(confidence);
    let (k, n) = (k.min(n) as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let center = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Pearson's chi-square statistic and its p-value for observed counts
/// against expected shares (which sum to 1). Categories expected at 0 are
/// left out of the statistic; any count there makes p = 0.
pub fn chi_square(observed: &[u64], expected_shares: &[f64]) -> (f64, f64) {
    let n: u64 = observed.iter().sum();
    if n == 0 {
        return (0.0, 1.0);
    }
    let mut statistic = 0.0;
    let mut categories = 0;
    for (&o, &share) in observed.iter().zip(expected_shares) {
        let e = share * n as f64;
        if e == 0.0 {
            if o > 0 {
                return (f64::INFINITY, 0.0);
            }
            continue;
        }
        statistic += (o as f64 - e).powi(2) / e;
        categories += 1;
    }
    if categories < 2 {
        return (statistic, 1.0);
    }
    let p = ChiSquared::new((categories - 1) as f64)
        .map(|d| d.sf(statistic))
        .unwrap_or(0.0);
    (statistic, p)
}

/// Requests needed so a true share `delta` away from each expected share is
/// detected with power 0.95 by a two-sided test at α = 0.001 (normal
/// approximation for one proportion; the largest over the shares, at least 200).
pub fn sample_size(expected_shares: &[f64], delta: f64) -> u64 {
    let (z_alpha, z_beta) = (3.290_526_731_491_9, 1.644_853_626_951_5);
    expected_shares
        .iter()
        .map(|&p0| {
            let p1 = if p0 + delta <= 1.0 {
                p0 + delta
            } else {
                p0 - delta
            };
            let a = z_alpha * (p0 * (1.0 - p0)).sqrt() + z_beta * (p1 * (1.0 - p1)).sqrt();
            ((a / delta).powi(2)).ceil() as u64
        })
        .max()
        .unwrap_or(0)
        .max(200)
}

/// One destination's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Share {
    /// The expected name (`v1`).
    pub name: String,
    /// Expected share, 0–1.
    pub expected: f64,
    /// Answers counted.
    pub count: u64,
    /// Observed share.
    pub observed: f64,
    /// 95% Wilson interval of the observed share.
    pub interval: (f64, f64),
}

/// The verdict of a split check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// Per destination.
    pub shares: Vec<Share>,
    /// Answers that matched no expected name (or failed).
    pub other: u64,
    /// Chi-square statistic.
    pub chi_square: f64,
    /// Its p-value.
    pub p_value: f64,
    /// Whether the split matches.
    pub passed: bool,
    /// Why, in one sentence.
    pub reason: String,
}

/// Significance below which the observed split is called different.
pub const ALPHA: f64 = 0.001;
/// Deviations smaller than this (in share, 0–1) never fail a check: huge
/// samples make trivial skews significant.
pub const TOLERANCE: f64 = 0.01;

/// Compares counts with expected shares (names and percentages).
pub fn verdict(expected: &[(String, f64)], counts: &[u64], other: u64) -> Verdict {
    let total_pct: f64 = expected.iter().map(|(_, p)| p).sum();
    let shares_expected: Vec<f64> = expected
        .iter()
        .map(|(_, p)| p / total_pct.max(f64::MIN_POSITIVE))
        .collect();
    let n: u64 = counts.iter().sum::<u64>() + other;
    let shares: Vec<Share> = expected
        .iter()
        .zip(counts)
        .zip(&shares_expected)
        .map(|(((name, _), &count), &share)| Share {
            name: name.clone(),
            expected: share,
            count,
            observed: if n == 0 { 0.0 } else { count as f64 / n as f64 },
            interval: wilson(count, n),
        })
        .collect();
    let mut observed = counts.to_vec();
    let mut expected_for_test = shares_expected.clone();
    if other > 0 {
        observed.push(other);
        expected_for_test.push(0.0);
    }
    let (chi, p) = chi_square(&observed, &expected_for_test);
    let worst = shares.iter().max_by(|a, b| {
        (a.observed - a.expected)
            .abs()
            .total_cmp(&(b.observed - b.expected).abs())
    });
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let (passed, reason) = if n == 0 {
        (
            false,
            "no answer was counted, so nothing can be concluded".to_owned(),
        )
    } else if other > 0 {
        (
            false,
            format!(
                "{other} of {n} answers came from no expected version (or failed), which the expected split does not allow"
            ),
        )
    } else if let Some(z) = shares.iter().find(|s| s.expected == 0.0 && s.count > 0) {
        (
            false,
            format!(
                "{} answered {} of {n} requests where it should get none (weight 0)",
                z.name, z.count
            ),
        )
    } else if let Some(w) =
        worst.filter(|w| p < ALPHA && (w.observed - w.expected).abs() > TOLERANCE)
    {
        (
            false,
            format!(
                "{} got {} of {n} requests ({}, 95% CI {}–{}) where {} was expected: a deviation this large has probability p = {p:.2e} under the expected split",
                w.name,
                w.count,
                pct(w.observed),
                pct(w.interval.0),
                pct(w.interval.1),
                pct(w.expected)
            ),
        )
    } else {
        let within = shares
            .iter()
            .all(|s| s.interval.0 <= s.expected && s.expected <= s.interval.1);
        (
            true,
            format!(
                "over {n} requests every version's share is within {} of its expected share{} (chi-square p = {p:.3})",
                pct(worst
                    .map_or(0.0, |w| (w.observed - w.expected).abs())
                    .max(0.0)),
                if within {
                    " and inside its 95% interval"
                } else {
                    ""
                }
            ),
        )
    };
    Verdict {
        shares,
        other,
        chi_square: chi,
        p_value: p,
        passed,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[(&str, f64)]) -> Vec<(String, f64)> {
        v.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    #[test]
    fn wilson_matches_a_known_value() {
        // 10 of 100: 95% Wilson interval 5.52%–17.44%.
        let (lo, hi) = wilson(10, 100);
        assert!(
            (lo - 0.0552).abs() < 5e-4 && (hi - 0.1744).abs() < 5e-4,
            "{lo} {hi}"
        );
    }

    #[test]
    fn chi_square_matches_the_style_guides_figure() {
        // 10 000 requests at 90/10 with 1 050 to the canary: χ² = 2.778, p = 0.0956.
        let (chi, p) = chi_square(&[8950, 1050], &[0.9, 0.1]);
        assert!(
            (chi - 2.778).abs() < 1e-3 && (p - 0.0956).abs() < 1e-3,
            "{chi} {p}"
        );
    }

    #[test]
    fn exact_90_10_passes_and_50_50_fails_with_a_reason() {
        let v = verdict(&names(&[("v1", 90.0), ("v2", 10.0)]), &[900, 100], 0);
        assert!(v.passed, "{}", v.reason);
        let v = verdict(&names(&[("v1", 50.0), ("v2", 50.0)]), &[900, 100], 0);
        assert!(!v.passed);
        assert!(
            v.reason.contains("of 1000 requests") && v.reason.contains("where 50.0% was expected"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn a_zero_share_with_answers_fails() {
        let v = verdict(&names(&[("v1", 0.0), ("v2", 100.0)]), &[3, 997], 0);
        assert!(!v.passed, "{}", v.reason);
    }

    #[test]
    fn default_sample_size_detects_five_points() {
        let n = sample_size(&[0.9, 0.1], 0.05);
        assert!((300..2000).contains(&n), "{n}");
        assert!(sample_size(&[0.5, 0.5], 0.05) > n);
    }
}
