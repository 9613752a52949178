"""Known values of the evaluation statistics (jaxlab.stats)."""

import math

import numpy as np
import pytest

from jaxlab import stats


def test_normal_quantile():
    assert stats.normal_quantile(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert stats.normal_quantile(0.99) == pytest.approx(2.575829, abs=1e-6)


@pytest.mark.parametrize("successes,n,low,high", [
    (8, 10, 0.4901624, 0.9433178),   # the textbook example
    (0, 10, 0.0, 0.2775328),
    (10, 10, 0.7224672, 1.0),
    (50, 100, 0.4038315, 0.5961685),
])
def test_wilson_known_values(successes, n, low, high):
    got = stats.wilson_interval(successes, n, 0.95)
    assert got == pytest.approx((low, high), abs=1e-6)


@pytest.mark.parametrize("n", [1, 3, 7, 10, 49, 100, 101, 1000])
def test_wilson_contains_the_proportion_exactly(n):
    for successes in range(0, n + 1, max(1, n // 10)):
        low, high = stats.wilson_interval(successes, n)
        assert 0.0 <= low <= successes / n <= high <= 1.0
    assert stats.wilson_interval(0, n)[0] == 0.0 and stats.wilson_interval(n, n)[1] == 1.0


def test_wilson_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for successes, n, conf in [(3, 7, 0.9), (41, 50, 0.95), (1, 1000, 0.99)]:
        ci = scipy_stats.binomtest(successes, n).proportion_ci(conf, method="wilson")
        assert stats.wilson_interval(successes, n, conf) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_wilson_rejects_bad_counts():
    with pytest.raises(ValueError, match="successes"):
        stats.wilson_interval(11, 10)
    with pytest.raises(ValueError, match="n >= 1"):
        stats.wilson_interval(0, 0)
    with pytest.raises(ValueError, match="confidence"):
        stats.wilson_interval(1, 2, confidence=95)


def test_pass_at_k_known_values():
    # 1 - C(7, 5) / C(10, 5) = 1 - 21 / 252
    assert stats.pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert stats.pass_at_k(10, 3, 1) == pytest.approx(0.3)   # pass@1 = c / n
    assert stats.pass_at_k(10, 0, 5) == 0.0
    assert stats.pass_at_k(10, 6, 5) == 1.0                   # n - c < k: every draw hits
    assert stats.pass_at_k(8, 8, 8) == 1.0


def test_pass_at_k_equals_binomial_formula():
    n_P = np.array([20, 20, 20, 15, 9])
    c_P = np.array([0, 1, 7, 14, 2])
    for k in (1, 2, 5, 9):
        want = [1 - math.comb(n - c, k) / math.comb(n, k) for n, c in zip(n_P, c_P)]
        np.testing.assert_allclose(stats.pass_at_k(n_P, c_P, k), want, rtol=1e-12, atol=1e-15)


def test_pass_at_k_rejects_bad_input():
    with pytest.raises(ValueError, match="n >= k"):
        stats.pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c <= n"):
        stats.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="k must be"):
        stats.pass_at_k(4, 1, 0)


def test_bootstrap_constant_and_deterministic():
    assert stats.bootstrap_mean_interval([0.25] * 30) == pytest.approx((0.25, 0.25))
    x = np.random.default_rng(1).random(40)
    a = stats.bootstrap_mean_interval(x, seed=3)
    assert a == stats.bootstrap_mean_interval(x, seed=3)
    assert a[0] < x.mean() < a[1]


def test_bootstrap_width_matches_normal_theory():
    # Bernoulli(0.3) outcomes of 400 problems: the 95% interval of the mean has half-width
    # about 1.96 * sqrt(p (1 - p) / P) = 0.0449.
    x = np.zeros(400)
    x[:120] = 1.0
    low, high = stats.bootstrap_mean_interval(x, n_boot=4000, seed=0)
    assert (high - low) / 2 == pytest.approx(1.96 * math.sqrt(0.3 * 0.7 / 400), rel=0.1)
    assert low < 0.3 < high


def test_bootstrap_rejects_empty():
    with pytest.raises(ValueError, match="at least one"):
        stats.bootstrap_mean_interval([])


def test_pass_at_k_interval():
    c_P = np.array([0, 0, 8, 8, 4, 2])
    out = stats.pass_at_k_interval(8, c_P, 1)
    assert out["k"] == 1
    assert out["value"] == pytest.approx(c_P.mean() / 8)
    assert out["low"] <= out["value"] <= out["high"]
    assert stats.pass_at_k_interval(8, c_P, 8)["value"] == pytest.approx(4 / 6)
