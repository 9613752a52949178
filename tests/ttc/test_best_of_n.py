"""Best-of-N selection against hand-computed values (jaxlab.ttc.best_of_n)."""

import numpy as np
import pytest

from jaxlab import ttc


def test_best_of_n_picks_the_top_score_and_averages_ties():
    scores = [[0.1, 0.9, 0.3],    # top: candidate 1 (wrong)
              [0.5, 0.2, 0.5],    # tie of candidates 0 and 2: one right, one wrong -> 0.5
              [-1.0, -2.0, 3.0],  # top: candidate 2 (right)
              [0.0, 0.0, 0.0]]    # all tied: 2 of 3 right
    correct = [[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 1, 0]]
    np.testing.assert_allclose(ttc.best_of_n(scores, correct), [0.0, 0.5, 1.0, 2 / 3])


def test_best_of_k_uses_the_first_k_candidates():
    scores = np.array([[0.9, 0.1, 0.95, 0.2], [0.3, 0.8, 0.1, 0.9]])
    correct = np.array([[1, 0, 0, 1], [0, 1, 1, 0]])
    # k=1: first candidates 1, 0 -> 0.5; k=2: argmax 0 (right), 1 (right) -> 1.0;
    # k=4: argmax 2 (wrong), 3 (wrong) -> 0.0
    assert ttc.best_of_k_curve(scores, correct, [1, 2, 4]) == {1: 0.5, 2: 1.0, 4: 0.0}


def test_best_of_n_rejects_bad_shapes_and_scores():
    with pytest.raises(ValueError, match="shape"):
        ttc.best_of_n([[0.1, 0.2]], [[1, 0, 1]])
    with pytest.raises(ValueError, match="finite"):
        ttc.best_of_n([[np.nan, 0.2]], [[1, 0]])
    with pytest.raises(ValueError, match="k=3"):
        ttc.best_of_k_curve([[0.1, 0.2]], [[1, 0]], [3])
