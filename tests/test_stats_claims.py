"""Paired tests, seed intervals and three-way verdicts of jaxlab.stats, against known values
(reference numbers from scipy.stats, computed once and written here)."""

import numpy as np
import pytest

from jaxlab import stats


def test_binomial_two_sided_p_known_values():
    assert stats.binomial_two_sided_p(2, 12) == pytest.approx(0.03857421875, rel=1e-12)  # 2 * 79 / 4096
    assert stats.binomial_two_sided_p(3, 20, 0.3) == pytest.approx(0.2204182673807091, rel=1e-9)
    assert stats.binomial_two_sided_p(6, 12) == pytest.approx(1.0)
    assert stats.binomial_two_sided_p(0, 0) == 1.0
    with pytest.raises(ValueError, match="0 <= k <= n"):
        stats.binomial_two_sided_p(5, 3)


def test_mcnemar_counts_discordant_pairs_only():
    a = np.array([1] * 50 + [1] * 10 + [0] * 2 + [0] * 38)
    b = np.array([1] * 50 + [0] * 10 + [1] * 2 + [0] * 38)
    r = stats.mcnemar_exact(a, b)
    assert (r["b"], r["c"], r["n"]) == (10, 2, 100)
    assert r["difference"] == pytest.approx(0.08)
    assert r["p_value"] == pytest.approx(0.03857421875)
    # Wald interval of a paired difference: 0.08 +- 1.96 sqrt((0.12 - 0.0064) / 100)
    half = 1.959963984540054 * np.sqrt((0.12 - 0.0064) / 100)
    assert (r["low"], r["high"]) == pytest.approx((0.08 - half, 0.08 + half))
    # concordant pairs do not move the p-value
    assert stats.mcnemar_exact(np.r_[a, np.ones(50)], np.r_[b, np.ones(50)])["p_value"] == r["p_value"]
    with pytest.raises(ValueError, match="one shape"):
        stats.mcnemar_exact([1, 0], [1])


def test_t_interval_known_values():
    # mean 2, sd 1, n 3: 2 +- 4.302653 / sqrt(3)
    low, high = stats.t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 4.302652729749462 / np.sqrt(3), 2 + 4.302652729749462 / np.sqrt(3)))
    assert stats._t_quantile(0.975, 10) == pytest.approx(2.228138851986274, rel=1e-9)
    with pytest.raises(ValueError, match="two finite"):
        stats.t_interval([1.0])


def test_paired_bootstrap_covers_seed_and_problem_variation():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 400)) < 0.6).astype(float)
    b = (rng.random((3, 400)) < 0.5).astype(float)
    r = stats.paired_bootstrap_interval(a, b)
    assert r["effect"] == pytest.approx(float((a - b).mean()))
    assert r["low"] < r["effect"] < r["high"] and (r["seeds"], r["problems"]) == (3, 400)
    assert r == stats.paired_bootstrap_interval(a, b)  # deterministic for a seed
    # a constant difference has a zero-width interval
    same = stats.paired_bootstrap_interval(np.ones((2, 5)), np.zeros((2, 5)))
    assert same["low"] == same["high"] == 1.0
    # seeds that disagree widen the interval beyond one seed's problem noise
    shifted = a + np.array([[0.0], [0.3], [-0.3]])
    assert (stats.paired_bootstrap_interval(shifted, b)["high"] - stats.paired_bootstrap_interval(shifted, b)["low"]
            > r["high"] - r["low"])
    with pytest.raises(ValueError, match="one shape"):
        stats.paired_bootstrap_interval(np.ones((2, 3)), np.ones((3, 2)))


def test_decide_is_three_way():
    assert stats.decide(0.1, 0.05, 0.15).outcome == "held"
    assert stats.decide(-0.1, -0.15, -0.05).outcome == "not held"
    v = stats.decide(0.02, -0.01, 0.05, test="paired bootstrap")
    assert v.outcome == "inconclusive" and "contains the threshold" in v.reason
    # a threshold and the other direction
    assert stats.decide(0.1, 0.05, 0.15, threshold=0.06).outcome == "inconclusive"
    assert stats.decide(-0.1, -0.15, -0.05, direction="less").outcome == "held"
    # a failed precondition makes even a clear effect inconclusive, with the reason
    v = stats.decide(0.1, 0.05, 0.15, preconditions=[("entropy falls", False, "GRPO entropy rose 0.02")])
    assert v.outcome == "inconclusive" and "entropy falls" in v.reason and "0.02" in v.reason
    d = v.to_dict()
    assert d["preconditions"] == [{"name": "entropy falls", "passed": False, "detail": "GRPO entropy rose 0.02"}]
    assert "[+0.05, +0.15]" in stats.decide(0.1, 0.05, 0.15).sentence()
    with pytest.raises(ValueError, match="low <= effect <= high"):
        stats.decide(0.3, 0.0, 0.1)


def test_all_parts_holds_only_when_every_part_holds():
    ok = ("learned", True, "fine")
    held = stats.decide(0.3, 0.1, 0.5, threshold=0.0, test="t1", preconditions=[ok])
    not_held = stats.decide(0.06, 0.055, 0.08, threshold=0.05, direction="less", test="t2")
    open_ = stats.decide(0.0, -0.1, 0.1, test="t3")
    v = stats.all_parts({"a": held, "b": held})
    assert v.outcome == "held" and (v.effect, v.low, v.high) == (0.3, 0.1, 0.5)
    assert v.test == "a by t1; b by t1" and v.preconditions == (ok,)  # one entry per name
    assert stats.all_parts({"a": held, "b": not_held}).outcome == "not held"
    assert stats.all_parts({"a": not_held, "b": open_}).outcome == "not held"
    assert stats.all_parts({"a": held, "b": open_}).outcome == "inconclusive"
    v = stats.all_parts({"a": held, "b": not_held})
    assert "a: held, +0.3 [+0.1, +0.5] (> 0)" in v.reason and "b: not held" in v.reason and "(< 0.05)" in v.reason
    # a failed precondition in any part makes the whole inconclusive, whatever the others say
    bad = stats.decide(0.06, 0.055, 0.08, threshold=0.05, direction="less",
                       preconditions=[("matched", False, "ratio 1.3")])
    v = stats.all_parts({"a": not_held, "b": bad})
    assert v.outcome == "inconclusive" and v.reason.startswith("precondition 'matched' failed: ratio 1.3")
    with pytest.raises(ValueError):
        stats.all_parts({})
