"""analysis/stats.py against the libraries: Kendall's tau-b against scipy.stats.kendalltau on random data with
ties, the percentile interval against numpy's quantiles of the same draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from octo.analysis.stats import kendall_tau, kendall_tau_rows, mean_ci, percentile_ci


@pytest.mark.parametrize("n", [2, 3, 7, 12])
def test_kendall_tau_rows_is_scipys_tau_b_on_random_data_with_ties(n):
    rng = np.random.default_rng(n)
    x = rng.integers(0, 4, size=(300, n)).astype(float)       # few values: many ties in every row
    y = rng.integers(0, 3, size=(300, n)) + 0.5 * x           # correlated with x, ties too
    got = kendall_tau_rows(x, y)
    for b in range(300):
        want = scipy.stats.kendalltau(x[b], y[b], variant="b").statistic
        if math.isnan(want):
            assert math.isnan(got[b])
        else:
            assert got[b] == pytest.approx(want, abs=1e-12)
    assert np.isnan(got).sum() < 300   # the comparison covered defined values


def test_kendall_tau_is_undefined_for_a_constant_sequence():
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0


def test_percentile_ci_and_mean_ci():
    draws = np.random.default_rng(0).normal(size=5000)
    assert percentile_ci(draws, 0.9) == pytest.approx(list(np.quantile(draws, [0.05, 0.95])))
    values = [0, 1, 1, 0, 1, 1, 1, 0]
    lo, hi = mean_ci(values, n_boot=4000, seed=1)
    assert lo < np.mean(values) < hi and 0 <= lo and hi <= 1
    assert mean_ci(values, n_boot=4000, seed=1) == [lo, hi]   # seeded
    assert all(math.isnan(v) for v in mean_ci([]))
