"""Score-quantile subsets (jaxlab.analysis.ches_subsets) and the two-sample nested bootstrap
(jaxlab.stats), against values worked out by hand."""

import numpy as np
import pytest

from jaxlab import stats
from jaxlab.analysis import ches_subsets as cs


def test_quantile_subsets_known_indices_and_ties():
    scores = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 0.0])
    arms = cs.quantile_subsets(scores, 1 / 3, seed=0)  # m = 2
    np.testing.assert_array_equal(arms["top"], [0, 2])      # scores 5, 4
    np.testing.assert_array_equal(arms["bottom"], [1, 5])   # scores 1, 0
    assert arms["random"].shape == (2,) and len(set(arms["random"])) == 2
    np.testing.assert_array_equal(arms["random"], cs.quantile_subsets(scores, 1 / 3, seed=0)["random"])
    # ties: of equal scores the earlier index ranks higher in top and lower in bottom
    tied = cs.quantile_subsets([1.0, 1.0, 1.0, 1.0], 0.25, seed=0)
    assert tied["top"].tolist() == [0] and tied["bottom"].tolist() == [0]
    # top and bottom may split the items in halves, never share one
    half = cs.quantile_subsets(np.arange(6.0), 0.5, seed=3)
    assert half["bottom"].tolist() == [0, 1, 2] and half["top"].tolist() == [3, 4, 5]
    with pytest.raises(ValueError, match="overlap"):
        cs.quantile_subsets(np.arange(7.0), 0.5, seed=3)  # m = round(3.5) = 4 > 7 / 2
    with pytest.raises(ValueError, match="fraction"):
        cs.quantile_subsets(scores, 0.6, seed=0)
    with pytest.raises(ValueError, match="no item"):
        cs.quantile_subsets(scores, 0.05, seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        cs.quantile_subsets([1.0, np.nan], 0.5, seed=0)


def test_bootstrap_effect_is_the_mean_over_seeds_of_the_arms_difference():
    # seed 0: mean [1, 2, 3] - mean [0] = 2; seed 1: mean [10] - mean [4, 6] = 5
    r = stats.two_sample_nested_bootstrap([[1, 2, 3], [10]], [[0], [4, 6]])
    assert r["effect"] == pytest.approx(3.5)
    assert r["low"] <= 3.5 <= r["high"]
    assert (r["seeds"], r["sizes_a"], r["sizes_b"]) == (2, [3, 1], [1, 2])
    # constant arms: every replicate is the effect
    c = stats.two_sample_nested_bootstrap([np.full(5, 3.0)], [np.full(7, 1.0)])
    assert (c["effect"], c["low"], c["high"]) == (2.0, 2.0, 2.0)


def test_bootstrap_resamples_seeds():
    # within-seed differences are constant (+1 in seed 0, -1 in seed 1); a replicate's mean is
    # -1, 0 or +1 with probabilities 1/4, 1/2, 1/4, so the 95% interval is [-1, +1]
    r = stats.two_sample_nested_bootstrap([np.ones(4), np.zeros(3)], [np.zeros(2), np.ones(6)])
    assert (r["effect"], r["low"], r["high"]) == (0.0, -1.0, 1.0)


def test_bootstrap_one_seed_matches_the_normal_interval():
    # one seed: the interval of a difference of two independent means, diff +- 1.96 sqrt(
    # var_a / n_a + var_b / n_b) (population variances, as the bootstrap resamples them)
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 2.0, 400), rng.normal(0.0, 1.0, 300)
    r = stats.two_sample_nested_bootstrap([a], [b], n_boot=4000, seed=1)
    half = 1.959963984540054 * np.sqrt(a.var() / a.size + b.var() / b.size)
    assert r["effect"] == pytest.approx(a.mean() - b.mean())
    assert (r["high"] - r["low"]) / 2 == pytest.approx(half, rel=0.05)
    assert (r["low"] + r["high"]) / 2 == pytest.approx(r["effect"], abs=0.05 * half)
    assert stats.two_sample_nested_bootstrap([a], [b], n_boot=4000, seed=1) == r  # deterministic


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="same number"):
        stats.two_sample_nested_bootstrap([[1.0]], [[1.0], [2.0]])
    with pytest.raises(ValueError, match="at least one value"):
        stats.two_sample_nested_bootstrap([[1.0], []], [[1.0], [2.0]])
    with pytest.raises(ValueError, match="non-finite"):
        stats.two_sample_nested_bootstrap([[np.inf]], [[1.0]])
    with pytest.raises(ValueError, match="confidence"):
        stats.two_sample_nested_bootstrap([[1.0]], [[1.0]], confidence=1.5)
