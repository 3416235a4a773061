//! Anytime-valid tests of a share: errors that hold however often the
//! data are looked at and whenever the looking stops.
//!
//! A rollout looks at a growing window every `interval` and acts at the
//! first conclusive look. A fixed-sample interval (Clopper–Pearson) checked
//! that way errs several times its nominal rate: a canary exactly at
//! `min: 99`, looked at 60 times, is passed ≈ 10 % and failed ≈ 12 % of the
//! time where one look allows 2.5 % each. Here each test is a mixture
//! likelihood ratio — a nonnegative supermartingale under its null — and
//! rejects when it reaches 1/α; by Ville's inequality a null share is ever
//! rejected with probability at most α, at any number of looks
//! (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform,
//! nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021).
//!
//! With `k` good outcomes of `n` and a threshold share `p0`:
//! - [`ln_mix_above`]: evidence that the share is above `p0`: the
//!   likelihood of a share drawn uniformly from [p0, 1] over that of `p0`.
//!   For a share at or below `p0` every factor of it has mean at most 1, so
//!   it tests the whole one-sided null `p ≤ p0`.
//! - [`ln_mix_below`]: evidence that it is below `p0`: an equal mixture of
//!   uniform shares on [2·p0 − 1, p0] (near the threshold, where a canary
//!   slightly worse than the bound lives) and on [0, p0].
//!
//! Both integrals are incomplete beta functions; statrs' `beta_reg` stops
//! after 140 continued-fraction terms and works in linear space, which
//! underflows and loses accuracy from ~10⁵ requests on, so the log-space
//! continued fraction is here ([`ln_beta_reg`]), checked against scipy
//! (`tests/sequential_reference.py`).
//!
//! [`lower_bound`] and [`upper_bound`] invert the tests into a confidence
//! sequence: the shares no look has excluded.

use statrs::function::gamma::ln_gamma;

/// Continued-fraction terms at most (enough past 10⁸ trials).
const MAX_TERMS: usize = 20_000;

/// `ln B(a, b)`.
fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// The incomplete beta's continued fraction (Lentz's method; Numerical
/// Recipes §6.4), converging for `x < (a + 1)/(a + b + 2)`.
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=MAX_TERMS {
        let m = m as f64;
        let m2 = 2.0 * m;
        let mut last = 1.0;
        for aa in [
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            last = d * c;
            h *= last;
        }
        if (last - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// `(ln I_x(a, b), ln(1 − I_x(a, b)))`: the regularized incomplete beta
/// function and its complement, each to full relative precision where it
/// is small.
pub fn ln_beta_reg(a: f64, b: f64, x: f64) -> (f64, f64) {
    if x <= 0.0 {
        return (f64::NEG_INFINITY, 0.0);
    }
    if x >= 1.0 {
        return (0.0, f64::NEG_INFINITY);
    }
    let ln_front = a * x.ln() + b * (-x).ln_1p() - ln_beta(a, b);
    if x < (a + 1.0) / (a + b + 2.0) {
        let ln_i = ln_front + beta_cf(a, b, x).ln() - a.ln();
        (ln_i, ln_1m_exp(ln_i))
    } else {
        let ln_c = ln_front + beta_cf(b, a, 1.0 - x).ln() - b.ln();
        (ln_1m_exp(ln_c), ln_c)
    }
}

/// `ln(1 − e^v)` for `v ≤ 0`, precise at both ends.
fn ln_1m_exp(v: f64) -> f64 {
    if v >= 0.0 {
        f64::NEG_INFINITY
    } else if v > -std::f64::consts::LN_2 {
        (-v.exp_m1()).ln()
    } else {
        (-v.exp()).ln_1p()
    }
}

/// `ln(e^a + e^b)`.
fn ln_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `ln` of the binomial likelihood of share `p` for `k` of `n`, without
/// the binomial coefficient (it cancels in every ratio here).
fn ln_likelihood(n: u64, k: u64, p: f64) -> f64 {
    let (k, f) = (k as f64, (n - k) as f64);
    let good = if k == 0.0 { 0.0 } else { k * p.ln() };
    let bad = if f == 0.0 { 0.0 } else { f * (-p).ln_1p() };
    good + bad
}

/// `ln ∫_lo^hi p^k (1 − p)^(n−k) dp / (hi − lo)`, less `ln L(p0)`: the
/// log mixture ratio of a uniform share on [lo, hi] against `p0`.
fn ln_uniform_mixture(n: u64, k: u64, lo: f64, hi: f64, p0: f64) -> f64 {
    let (a, b) = (k as f64 + 1.0, (n - k) as f64 + 1.0);
    let ln_mass = if lo <= 0.0 {
        ln_beta_reg(a, b, hi).0
    } else if hi >= 1.0 {
        ln_beta_reg(a, b, lo).1
    } else {
        let (ln_hi, _) = ln_beta_reg(a, b, hi);
        let (ln_lo, _) = ln_beta_reg(a, b, lo);
        // I(hi) − I(lo) = I(hi)·(1 − I(lo)/I(hi)).
        ln_hi + ln_1m_exp(ln_lo - ln_hi)
    };
    ln_beta(a, b) + ln_mass - (hi - lo).ln() - ln_likelihood(n, k, p0)
}

/// `ln` of the evidence that the share of good outcomes is above `p0`,
/// from `k` good of `n` (`0 < p0 < 1`; 0 when nothing was seen).
pub fn ln_mix_above(n: u64, k: u64, p0: f64) -> f64 {
    let k = k.min(n);
    if n == 0 {
        return 0.0;
    }
    ln_uniform_mixture(n, k, p0, 1.0, p0)
}

/// `ln` of the evidence that the share of good outcomes is below `p0`.
pub fn ln_mix_below(n: u64, k: u64, p0: f64) -> f64 {
    let k = k.min(n);
    if n == 0 {
        return 0.0;
    }
    let near = (2.0 * p0 - 1.0).max(0.0);
    let wide = ln_uniform_mixture(n, k, 0.0, p0, p0);
    if near <= 0.0 {
        return wide;
    }
    let close = ln_uniform_mixture(n, k, near, p0, p0);
    ln_add_exp(close, wide) - std::f64::consts::LN_2
}

/// Whether `k` good of `n` show, at level `alpha`, a share above `p0`.
pub fn shows_above(n: u64, k: u64, p0: f64, alpha: f64) -> bool {
    ln_mix_above(n, k, p0) >= -alpha.ln()
}

/// Whether `k` good of `n` show, at level `alpha`, a share below `p0`.
pub fn shows_below(n: u64, k: u64, p0: f64, alpha: f64) -> bool {
    ln_mix_below(n, k, p0) >= -alpha.ln()
}

/// The least share not yet excluded from below at level `alpha`: the
/// true share is below it at some look with probability at most `alpha`.
pub fn lower_bound(n: u64, k: u64, alpha: f64) -> f64 {
    let k = k.min(n);
    if n == 0 || k == 0 {
        return 0.0;
    }
    let level = -alpha.ln();
    let estimate = (k as f64 / n as f64).min(1.0 - 1e-12);
    // Excluded below the bound, not at the estimate (its ratio is ≤ 1).
    let excluded = |p: f64| ln_mix_above(n, k, p) - level;
    let (mut lo, mut hi) = (estimate, estimate);
    let mut stride = spread(n, estimate);
    while lo > 1e-12 && excluded(lo) <= 0.0 {
        hi = lo;
        lo = (lo - stride).max(1e-12);
        stride *= 2.0;
    }
    root(excluded, lo, hi)
}

/// The greatest share not yet excluded from above at level `alpha`.
pub fn upper_bound(n: u64, k: u64, alpha: f64) -> f64 {
    let k = k.min(n);
    if n == 0 || k == n {
        return 1.0;
    }
    let level = -alpha.ln();
    let estimate = (k as f64 / n as f64).max(1e-12);
    let kept = |p: f64| level - ln_mix_below(n, k, p);
    let (mut lo, mut hi) = (estimate, estimate);
    let mut stride = spread(n, estimate);
    while hi < 1.0 - 1e-12 && kept(hi) > 0.0 {
        lo = hi;
        hi = (hi + stride).min(1.0 - 1e-12);
        stride *= 2.0;
    }
    root(kept, lo, hi)
}

/// Two standard errors of a share estimated at `p` from `n` (at least
/// 2/n): the first stride when bracketing a bound.
fn spread(n: u64, p: f64) -> f64 {
    let n = n as f64;
    2.0 * (p * (1.0 - p) / n).sqrt().max(1.0 / n)
}

/// Where a function that is positive at `lo` and not at `hi` crosses zero,
/// to 10⁻⁷ of the bracket (a ten-millionth of a few standard errors; at least
/// 10⁻¹²) or to evidence within 10⁻⁹ of the level (Illinois' regula falsi,
/// bisecting when
/// a step would leave the bracket). Returns `lo` when the function is not
/// positive there and `hi` when it still is.
fn root(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    let (mut a, mut b) = (lo, hi);
    let (mut fa, mut fb) = (f(a), f(b));
    if fa.is_nan() || fa <= 0.0 {
        return lo;
    }
    if fb.is_nan() || fb > 0.0 {
        return hi;
    }
    let tolerance = 1e-12_f64.max((hi - lo) * 1e-7);
    let mut side = 0;
    for _ in 0..100 {
        if b - a <= tolerance {
            break;
        }
        let secant = b - fb * (b - a) / (fb - fa);
        let x = if secant.is_finite() && secant > a && secant < b {
            secant
        } else {
            0.5 * (a + b)
        };
        let fx = f(x);
        if fx.is_nan() {
            break;
        }
        // Evidence within 10⁻⁹ (in logs) of the level: this is the bound.
        if fx.abs() < 1e-9 {
            return x;
        }
        if fx > 0.0 {
            a = x;
            fa = fx;
            if side == -1 {
                fb /= 2.0;
            }
            side = -1;
        } else {
            b = x;
            fb = fx;
            if side == 1 {
                fa /= 2.0;
            }
            side = 1;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ∑ C(n, j) p^j (1 − p)^(n − j) for j ≤ k, directly (small n).
    fn binomial_cdf(n: u64, k: u64, p: f64) -> f64 {
        (0..=k)
            .map(|j| {
                let ln_c = ln_gamma(n as f64 + 1.0)
                    - ln_gamma(j as f64 + 1.0)
                    - ln_gamma((n - j) as f64 + 1.0);
                (ln_c + ln_likelihood(n, j, p)).exp()
            })
            .sum()
    }

    #[test]
    fn the_incomplete_beta_is_a_binomial_tail() {
        // I_p(k + 1, n − k) = P(Bin(n, p) ≥ k + 1).
        for (n, k, p) in [
            (10, 3, 0.2),
            (50, 0, 0.01),
            (200, 190, 0.97),
            (1000, 12, 0.01),
        ] {
            let (ln_i, ln_c) = ln_beta_reg(k as f64 + 1.0, (n - k) as f64, p);
            let tail = 1.0 - binomial_cdf(n, k, p);
            assert!((ln_i.exp() - tail).abs() < 1e-12, "{n} {k} {p}");
            assert!((ln_c.exp() - (1.0 - tail)).abs() < 1e-12, "{n} {k} {p}");
        }
    }

    #[test]
    fn the_pass_side_mixture_has_the_closed_form_of_the_binomial_tail() {
        // Uniform prior on p ∈ [p0, 1]: M = P(Bin(n+1, 1−p0) ≥ e+1) /
        // ((n+1)(1−p0) P_{1−p0}(E = e)) with e = n − k errors.
        for (n, e, p0) in [(100, 0, 0.99), (368, 0, 0.99), (500, 2, 0.99), (40, 3, 0.9)] {
            let q0: f64 = 1.0 - p0;
            let upper_tail = 1.0 - binomial_cdf(n + 1, e, q0);
            let below = if e == 0 {
                0.0
            } else {
                binomial_cdf(n, e - 1, q0)
            };
            let pmf = binomial_cdf(n, e, q0) - below;
            let closed = upper_tail / ((n + 1) as f64 * q0 * pmf);
            let here = ln_mix_above(n, n - e, p0).exp();
            assert!(
                (here / closed - 1.0).abs() < 1e-9,
                "{n} {e}: {here} vs {closed}"
            );
        }
    }

    #[test]
    fn nothing_seen_is_no_evidence_and_bounds_are_the_whole_range() {
        assert_eq!(ln_mix_above(0, 0, 0.99), 0.0);
        assert_eq!(ln_mix_below(0, 0, 0.99), 0.0);
        assert_eq!(
            (lower_bound(0, 0, 0.025), upper_bound(0, 0, 0.025)),
            (0.0, 1.0)
        );
        assert!(!shows_above(3, 3, 0.99, 0.025));
        assert!(!shows_below(3, 2, 0.99, 0.025), "one error in three");
    }

    #[test]
    fn bounds_agree_with_the_tests_they_invert() {
        for (n, k) in [
            (1000, 1000),
            (1000, 995),
            (5000, 4940),
            (40, 30),
            (1_000_000, 999_000),
        ] {
            let alpha = 0.025;
            let (lo, hi) = (lower_bound(n, k, alpha), upper_bound(n, k, alpha));
            let p = k as f64 / n as f64;
            assert!(lo <= p && p <= hi, "{n} {k}: {lo} {p} {hi}");
            assert!(
                lo < 1e-6 || shows_above(n, k, lo - 1e-6, alpha),
                "{n} {k} below {lo}"
            );
            assert!(!shows_above(n, k, lo + 1e-6, alpha), "{n} {k} above {lo}");
            if hi < 1.0 {
                assert!(shows_below(n, k, hi + 1e-6, alpha), "{n} {k} above {hi}");
                assert!(!shows_below(n, k, hi - 1e-6, alpha), "{n} {k} below {hi}");
            }
        }
    }

    #[test]
    fn evidence_is_monotone_in_the_threshold_and_the_count() {
        let (n, k) = (2000, 1985);
        let mut last = f64::INFINITY;
        for i in 1..200 {
            let p0 = 0.95 + i as f64 * 0.00025;
            let v = ln_mix_above(n, k, p0);
            assert!(v <= last + 1e-9, "above at {p0}");
            last = v;
        }
        let mut last = f64::INFINITY;
        for k in 1900..=2000 {
            let v = ln_mix_below(n, k, 0.99);
            assert!(v <= last + 1e-9, "below at {k}");
            last = v;
        }
    }
}
