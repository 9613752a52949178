"""Accuracy floors: the constant-guess floor and the 2-SE precondition, against hand values."""

import math

import numpy as np
import pytest

from jaxlab.evals.floor import clear_of_floor, constant_guess_floor


def test_constant_guess_floor():
    assert constant_guess_floor(["3", "5", "3", "7"]) == 0.5
    assert constant_guess_floor(["1"]) == 1.0
    with pytest.raises(ValueError):
        constant_guess_floor([])


def test_clear_of_floor_is_two_standard_errors_above():
    # p = 0.3, n = 100: SE = sqrt(0.21 / 100) = 0.045826; p - 2 SE = 0.208348
    correct = np.array([1] * 30 + [0] * 70).reshape(2, 50)
    se = math.sqrt(0.3 * 0.7 / 100)
    assert clear_of_floor(correct, 0.2)[0] and not clear_of_floor(correct, 0.21)[0]
    assert 0.3 - 2 * se == pytest.approx(0.208348, abs=1e-6)
    passed, detail = clear_of_floor(correct, 0.2)
    assert "accuracy 0.300" in detail and "floor 0.200" in detail
    # all wrong: SE 0, and 0 is never above a floor of 0
    assert not clear_of_floor(np.zeros(10), 0.0)[0]
    with pytest.raises(ValueError):
        clear_of_floor([0.5, 1.0], 0.0)
