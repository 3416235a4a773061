"""Reference values for weir-load's statistics, from scipy and statsmodels.

Run by tests/stats_reference.rs (with the Python that .ci/test-tools sets
up); prints one JSON object with the inputs and what the references give.
"""
import json

from scipy.stats import binom, norm
from statsmodels.stats.proportion import proportion_confint

WILSON = [(0, 1, 0.95), (1, 3, 0.95), (2, 3, 0.95), (0, 10, 0.95), (10, 10, 0.95), (95, 100, 0.95),
          (990, 1000, 0.99), (5, 200, 0.9), (199, 200, 0.999), (1, 1_000_000, 0.95), (50_000, 100_000, 0.95),
          (1, 10_000_000, 0.95), (9_999_999, 10_000_000, 0.95), (10_000_000, 10_000_000, 0.975)]
QUANTILES = [(10, 0.5, 0.95), (100, 0.99, 0.95), (1000, 0.99, 0.95), (1000, 0.5, 0.99), (20, 0.9, 0.9),
             (50, 0.99, 0.95), (10_000, 0.999, 0.95), (3, 0.5, 0.95), (5000, 0.95, 0.999)]
DIFFERENCES = [(1000, 1000, 2, 3, 0.95), (990, 1000, 95, 100, 0.95), (0, 0, 5, 10, 0.95), (9000, 9000, 950, 1000, 0.99),
               (4990, 5000, 998, 1000, 0.9), (10, 10, 0, 0, 0.95)]
Z = [0.5, 0.8, 0.9, 0.95, 0.99, 0.999]


def difference(k1, n1, k2, n2, c):
    """Bonferroni: each share's exact interval at 1 - (1 - c) / 2."""
    each_alpha = (1 - c) / 2
    lo1, hi1 = proportion_confint(k1, n1, alpha=each_alpha, method="beta") if n1 else (0.0, 1.0)
    lo2, hi2 = proportion_confint(k2, n2, alpha=each_alpha, method="beta") if n2 else (0.0, 1.0)
    return [lo1 - hi2, hi1 - lo2]


def ranks(n, q, c):
    alpha = 1 - c
    lo = int(binom.ppf(alpha / 2, n, q))
    hi = int(binom.ppf(1 - alpha / 2, n, q)) + 1
    return [lo if lo >= 1 else None, hi if hi <= n else None]


print(json.dumps({
    "wilson": [[k, n, c, *proportion_confint(k, n, alpha=1 - c, method="wilson")] for k, n, c in WILSON],
    "clopper_pearson": [[k, n, c, *proportion_confint(k, n, alpha=1 - c, method="beta")] for k, n, c in WILSON],
    "difference": [[k1, n1, k2, n2, c, *difference(k1, n1, k2, n2, c)] for k1, n1, k2, n2, c in DIFFERENCES],
    "quantile_ranks": [[n, q, c, *ranks(n, q, c)] for n, q, c in QUANTILES],
    "z": [[c, norm.ppf(0.5 + c / 2)] for c in Z],
}))
