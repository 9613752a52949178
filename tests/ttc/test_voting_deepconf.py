"""Votes and DeepConf confidences against hand-computed values."""

import numpy as np
import pytest

from jaxlab import ttc


def test_weighted_vote_and_ties():
    v = ttc.weighted_vote(["7", "8", "7", None, "8", "8"])
    assert v["winners"] == ["8"] and v["tally"] == {"7": 2.0, "8": 3.0} and v["share"] == pytest.approx(0.6)
    v = ttc.weighted_vote(["7", "8", "7", "8"], [0.9, 0.1, 0.2, 0.3])
    assert v["winners"] == ["7"] and v["tally"]["7"] == pytest.approx(1.1)
    assert ttc.weighted_vote(["a", "b"])["winners"] == ["a", "b"]  # a tie keeps both
    assert ttc.weighted_vote([None, None]) == {"winners": [], "tally": {}, "share": 0.0}
    with pytest.raises(ValueError, match="weights"):
        ttc.weighted_vote(["a"], [1.0, 2.0])


def test_filtered_vote_keeps_the_most_confident():
    keys = ["wrong", "wrong", "wrong", "right", "right"]
    conf = [1.0, 1.1, 0.9, 5.0, 4.0]
    assert ttc.weighted_vote(keys)["winners"] == ["wrong"]  # majority is wrong
    assert ttc.filter_confident(conf, 0.4).tolist() == [3, 4]
    assert ttc.filtered_vote(keys, conf, keep=0.4)["winners"] == ["right"]
    assert ttc.filter_confident(conf, 0.01).tolist() == [3]  # at least one


def test_token_and_group_confidence():
    # a peaked step: top-2 log-probs (log 0.9, log 0.05); a flat one: (log 0.3, log 0.3)
    lp = np.log([[0.9, 0.05], [0.3, 0.3], [0.9, 0.05]])
    c = ttc.token_confidence(lp)
    assert c == pytest.approx([-(np.log(0.9) + np.log(0.05)) / 2, -np.log(0.3), -(np.log(0.9) + np.log(0.05)) / 2])
    assert c[0] > c[1]  # peaked is more confident
    g = ttc.group_confidence([1.0, 3.0, 5.0, 7.0], window=2)
    assert g.tolist() == [1.0, 2.0, 4.0, 6.0]
    assert ttc.trace_confidence([1.0, 3.0, 5.0, 7.0], kind="lowest", window=2) == 1.0
    assert ttc.trace_confidence([4.0, 3.0, 5.0, 7.0, 1.0], kind="bottom", window=1, fraction=0.4) == 2.0
    assert ttc.trace_confidence([4.0, 3.0, 5.0, 7.0], kind="tail", tail=2) == 6.0
    with pytest.raises(ValueError, match="kind"):
        ttc.trace_confidence([1.0], kind="max")


def test_threshold_and_early_stop():
    warmup = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert ttc.stop_threshold(warmup, keep=0.1) == pytest.approx(np.percentile(warmup, 90))
    assert ttc.stop_threshold(warmup, keep=0.9) == pytest.approx(1.4)
    conf = [5.0, 5.0, 5.0, 1.0, 1.0, 5.0]
    # windows of 2: group confidences 5, 5, 5, 3, 1, 3; below 2.5 first at step 4
    assert ttc.early_stop_step(conf, 2.5, window=2) == 4
    assert ttc.early_stop_step(conf, 3.5, window=2) == 3
    assert ttc.early_stop_step(conf, 0.5, window=2) is None
    assert ttc.early_stop_step([0.0, 9.0], 1.0, window=2) is None  # the first window is 4.5
