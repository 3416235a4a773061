"""Reference values for weir-load's statistics, from scipy and statsmodels.

Run by tests/stats_reference.rs (with the Python that .ci/test-tools sets
up); prints one JSON object with the inputs and what the references give.
"""
import json

from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

WILSON = [(0, 1, 0.95), (1, 3, 0.95), (2, 3, 0.95), (0, 10, 0.95), (10, 10, 0.95), (95, 100, 0.95),
          (990, 1000, 0.99), (5, 200, 0.9), (199, 200, 0.999), (1, 1_000_000, 0.95), (50_000, 100_000, 0.95),
          (1, 10_000_000, 0.95), (9_999_999, 10_000_000, 0.95), (10_000_000, 10_000_000, 0.975)]
Z = [0.5, 0.8, 0.9, 0.95, 0.99, 0.999]


print(json.dumps({
    "wilson": [[k, n, c, *proportion_confint(k, n, alpha=1 - c, method="wilson")] for k, n, c in WILSON],
    "z": [[c, norm.ppf(0.5 + c / 2)] for c in Z],
}))
