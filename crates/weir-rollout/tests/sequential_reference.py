"""Reference values for weir-rollout's anytime-valid tests, from scipy.

Run by tests/sequential_reference.rs (with the Python that .ci/test-tools
sets up); prints one JSON object. Computed independently of the Rust code:
the mixture ratios by their closed forms in binomial tails (scipy.stats.binom,
not an incomplete beta), the confidence-sequence bounds by scipy's brentq, and
the exact error rates of a gate over 60 looks by carrying the distribution of
the error count look by look (no simulation).
"""
import json
import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import logsumexp
from scipy.stats import binom


def ln_uniform(n, e, qa, qb, q0):
    """ln of the mixture ratio of a uniform error share on [qa, qb] against q0,
    for e errors in n: ∫ q^e (1-q)^(n-e) dq over [qa, qb] is
    [P(Bin(n+1, qb) >= e+1) - P(Bin(n+1, qa) >= e+1)] / ((n+1) C(n, e))."""
    if qb >= 1:
        mass = binom.logcdf(e, n + 1, qa)
    elif qa <= 0:
        mass = binom.logsf(e, n + 1, qb)
    else:
        hi, lo = binom.logsf(e, n + 1, qb), binom.logsf(e, n + 1, qa)
        mass = hi + math.log1p(-math.exp(min(lo - hi, 0.0))) if lo < hi else -math.inf
    return mass - math.log(n + 1) - math.log(qb - qa) - binom.logpmf(e, n, q0)


def ln_mix_above(n, k, p0):
    """Evidence that the good share is above p0: error share uniform on [0, q0]."""
    if n == 0:
        return 0.0
    q0 = 1 - p0
    return ln_uniform(n, n - k, 0.0, q0, q0)


def ln_mix_below(n, k, p0):
    """Evidence that it is below p0: half uniform on [q0, 2 q0], half on [q0, 1]."""
    if n == 0:
        return 0.0
    q0 = 1 - p0
    wide = ln_uniform(n, n - k, q0, 1.0, q0)
    if 2 * q0 >= 1:
        return wide
    near = ln_uniform(n, n - k, q0, 2 * q0, q0)
    return logsumexp([near, wide]) - math.log(2)


def lower_bound(n, k, alpha):
    if n == 0 or k == 0:
        return 0.0
    f = lambda p: ln_mix_above(n, k, p) + math.log(alpha)
    hi = min(k / n, 1 - 1e-12)
    return 1e-12 if f(1e-12) <= 0 else brentq(f, 1e-12, hi, xtol=1e-13)


def upper_bound(n, k, alpha):
    if n == 0 or k == n:
        return 1.0
    f = lambda p: -math.log(alpha) - ln_mix_below(n, k, p)
    lo = max(k / n, 1e-12)
    return 1 - 1e-12 if f(1 - 1e-12) > 0 else brentq(f, lo, 1 - 1e-12, xtol=1e-13)


def boundaries(n, p0, a_pass, a_fail):
    """Most errors that still Pass and fewest that Fail, for n requests."""
    e_pass, e_fail = -1, None
    for e in range(0, n + 1):
        if ln_mix_above(n, n - e, p0) >= -math.log(a_pass):
            e_pass = e
        else:
            break
    for e in range(0, n + 1):
        if ln_mix_below(n, n - e, p0) >= -math.log(a_fail):
            e_fail = e
            break
    return e_pass, e_fail


def gate(p_true, p0, r, looks, a_pass, a_fail):
    """Exact chances that a gate over `looks` looks of `r` requests each
    ends in Pass or in Fail: the error count's distribution carried over
    the looks, the mass crossing a boundary absorbed."""
    q = 1 - p_true
    step = binom.pmf(np.arange(r + 1), r, q)
    dist = np.array([1.0])
    p_pass = p_fail = 0.0
    n = 0
    for _ in range(looks):
        n += r
        dist = np.convolve(dist, step)
        e_pass, e_fail = boundaries_cache(n, p0, a_pass, a_fail)
        if e_pass >= 0:
            p_pass += dist[: e_pass + 1].sum()
            dist[: e_pass + 1] = 0.0
        if e_fail is not None and e_fail < len(dist):
            p_fail += dist[e_fail:].sum()
            dist[e_fail:] = 0.0
    return p_pass, p_fail


_cache = {}


def boundaries_cache(n, p0, a_pass, a_fail):
    key = (n, p0, a_pass, a_fail)
    if key not in _cache:
        _cache[key] = boundaries(n, p0, a_pass, a_fail)
    return _cache[key]


RATIOS = [(100, 100, 0.99), (368, 368, 0.99), (535, 535, 0.99), (1000, 995, 0.99), (2000, 1985, 0.99),
          (3000, 2960, 0.99), (40, 30, 0.9), (50_000, 49_400, 0.99), (1_000_000, 999_000, 0.999),
          (1_000_000, 989_000, 0.99), (10, 5, 0.5), (5000, 4990, 0.999)]
BOUNDS = [(1000, 1000, 0.025), (1000, 995, 0.025), (5000, 4940, 0.00625), (40, 30, 0.025),
          (1_000_000, 999_000, 0.0125), (200, 150, 0.05)]
BOUNDARIES = [(n, 0.99, 0.025, 0.025 / 3) for n in (50, 500, 1000, 3000)]
GATES = [(0.99, 0.99, 50, 60, 0.025, 0.025 / 3), (0.99, 0.99, 200, 60, 0.025, 0.025 / 3),
         (0.995, 0.99, 50, 60, 0.025, 0.025 / 3)]

print(json.dumps({
    "ratios": [[n, k, p0, ln_mix_above(n, k, p0), ln_mix_below(n, k, p0)] for n, k, p0 in RATIOS],
    "bounds": [[n, k, a, lower_bound(n, k, a), upper_bound(n, k, a)] for n, k, a in BOUNDS],
    "boundaries": [[n, p0, ap, af, *boundaries(n, p0, ap, af)] for n, p0, ap, af in BOUNDARIES],
    "gates": [[pt, p0, r, looks, ap, af, *gate(pt, p0, r, looks, ap, af)] for pt, p0, r, looks, ap, af in GATES],
}))
