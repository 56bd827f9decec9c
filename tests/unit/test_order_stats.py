"""agents._order_stats against NumPy, bit for bit."""

import math

import numpy as np
import pytest

from agents._order_stats import median, percentile


def _same(a: float, b: float) -> bool:
    return np.float64(a).view(np.int64) == np.float64(b).view(np.int64) or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("seed", range(3))
def test_median_and_percentile_are_numpys(seed):
    rng = np.random.default_rng(seed)
    for _ in range(3000):
        n = int(rng.integers(1, 40))
        kind = rng.integers(0, 4)
        if kind == 0:
            x = rng.lognormal(0.0, 2.0, n)
        elif kind == 1:
            x = rng.normal(0.0, 1e3, n)
        elif kind == 2:  # ties (zeros of one sign: see the module's notes)
            x = rng.choice([0.0, 1.0, 2.5, -3.0], n)
        else:
            x = np.round(rng.uniform(0, 30, n), 1)
        if rng.random() < 0.05:
            x[int(rng.integers(0, n))] = np.nan
        lst = x.tolist()
        assert _same(median(lst), float(np.median(x))), x
        for q in (75.0, 50.0, 25.0, 10.0, 90.0, 0.0, 100.0, 33.3, float(rng.uniform(0, 100))):
            assert _same(percentile(lst, q), float(np.percentile(x, q))), (x, q)
