//! Split statistics: shares with Wilson intervals, Pearson's chi-square
//! goodness of fit, the sample size that detects a 5-point deviation, the
//! verdict in words; and what rollout analysis judges a canary by: exact
//! intervals of a share and of two shares' difference, and the
//! order-statistic interval of a percentile. Each is checked against scipy and
//! statsmodels (`tests/stats_reference.rs`).

use serde::Serialize;
use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF, Normal};

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

/// The Clopper–Pearson ("exact") interval of `k` successes in `n` trials
/// at `confidence` (statsmodels' `proportion_confint(method="beta")`): the
/// beta quantiles B(α/2; k, n−k+1) and B(1−α/2; k+1, n−k). Conservative at
/// small `n`, where Wilson's can exclude a threshold near 1 from a handful
/// of requests (2 successes of 3 against 99 %); rollout verdicts use it.
pub fn clopper_pearson(k: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let k = k.min(n);
    let alpha = 1.0 - confidence;
    let (kf, nf) = (k as f64, n as f64);
    // At the ends the beta quantile has a closed form.
    let lower = if k == 0 {
        0.0
    } else if k == n {
        (alpha / 2.0).powf(1.0 / nf)
    } else {
        beta_quantile(kf, nf - kf + 1.0, alpha / 2.0)
    };
    let upper = if k == n {
        1.0
    } else if k == 0 {
        1.0 - (alpha / 2.0).powf(1.0 / nf)
    } else {
        beta_quantile(kf + 1.0, nf - kf, 1.0 - alpha / 2.0)
    };
    (lower, upper)
}

/// The `p` quantile of Beta(a, b): Newton's method on the regularized
/// incomplete beta function from the normal approximation, kept inside a
/// shrinking bracket (a bisection
/// step whenever Newton would leave it), at most 200 steps. statrs'
/// `inv_beta_reg` has no step limit and does not finish for shares within
/// 10⁻⁴ of 0 or 1 (1 error in 10⁷ requests), so it is not used.
fn beta_quantile(a: f64, b: f64, p: f64) -> f64 {
    let ln_beta = statrs::function::beta::ln_beta(a, b);
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    // Start from the normal approximation of the quantile (within a few
    // Newton steps of it at any n), or the mean where that falls outside 0–1.
    let mean = a / (a + b);
    let sd = (a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt();
    let guess = mean + Normal::standard().inverse_cdf(p) * sd;
    let mut x = if guess > 0.0 && guess < 1.0 {
        guess
    } else {
        mean
    };
    for _ in 0..200 {
        let f = statrs::function::beta::beta_reg(a, b, x) - p;
        if f == 0.0 {
            return x;
        }
        if f < 0.0 {
            lo = x;
        } else {
            hi = x;
        }
        let density = ((a - 1.0) * x.ln() + (b - 1.0) * (-x).ln_1p() - ln_beta).exp();
        let newton = x - f / density;
        let next = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - x).abs() <= 1e-15 * x.max(1e-300) || hi - lo <= 1e-15 * hi {
            return next;
        }
        x = next;
    }
    x
}

/// An interval for the difference of two success shares, `k1/n1 − k2/n2`,
/// jointly at least at `confidence`: each share's Clopper–Pearson interval
/// at 1 − (1 − confidence)/2 (Bonferroni), the difference's ends
/// [low₁ − high₂, high₁ − low₂]. Rollouts compare the canary's success rate
/// with the stable's by it. Chosen over Newcombe's hybrid score interval
/// (statsmodels' `confint_proportions_2indep(method="newcomb")`), whose
/// Wilson parts call a canary's 1 error in 3 worse than a clean stable's.
/// With no trials on either side it is the whole of −1–1.
pub fn difference_interval(k1: u64, n1: u64, k2: u64, n2: u64, confidence: f64) -> (f64, f64) {
    let each = 1.0 - (1.0 - confidence) / 2.0;
    let (lo1, hi1) = clopper_pearson(k1, n1, each);
    let (lo2, hi2) = clopper_pearson(k2, n2, each);
    (lo1 - hi2, hi1 - lo2)
}

/// The distribution-free interval of the `q` quantile (0 < q < 1) of `n`
/// samples at `confidence`, as 1-based ranks `(l, u)` of the sorted
/// samples: l = B⁻¹(α/2), u = B⁻¹(1 − α/2) + 1 for B = Binomial(n, q)
/// (scipy's `binom.ppf`; e.g. Conover, *Practical Nonparametric
/// Statistics*, §3.2). `None` when `n` is too small for one of the ends:
/// below rank 1 or above rank n, the interval is unbounded on that side.
pub fn quantile_ranks(n: u64, q: f64, confidence: f64) -> (Option<u64>, Option<u64>) {
    if n == 0 || !(q > 0.0 && q < 1.0) {
        return (None, None);
    }
    let Ok(b) = Binomial::new(q, n) else {
        return (None, None);
    };
    let alpha = 1.0 - confidence;
    let l = binomial_ppf(&b, n, q, alpha / 2.0);
    let u = binomial_ppf(&b, n, q, 1.0 - alpha / 2.0) + 1;
    ((l >= 1).then_some(l), (u <= n).then_some(u))
}

/// The least k with P(B ≤ k) ≥ p (scipy's `binom.ppf`), found by stepping
/// from the normal approximation's guess: a few CDF evaluations where a
/// bisection over 0..n takes dozens.
fn binomial_ppf(b: &Binomial, n: u64, q: f64, p: f64) -> u64 {
    let nf = n as f64;
    let z = Normal::standard().inverse_cdf(p.clamp(1e-12, 1.0 - 1e-12));
    let guess = (nf * q + z * (nf * q * (1.0 - q)).sqrt()).round();
    let mut k = guess.clamp(0.0, nf) as u64;
    while k > 0 && b.cdf(k - 1) >= p {
        k -= 1;
    }
    while k < n && b.cdf(k) < p {
        k += 1;
    }
    k
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
