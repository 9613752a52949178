"""The floor of an accuracy: what a model scores without solving anything, and whether a
measured accuracy stands clear of it (a precondition of claims that compare accuracies).

    constant_guess_floor(answers_P)          the best accuracy of one fixed answer
    clear_of_floor(correct, floor, z=2.0)    (passed, detail): accuracy - z SE > floor
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


def constant_guess_floor(answers_P: Sequence[str]) -> float:
    """The accuracy of the best constant guess on these problems: the share of the most
    common reference answer, max_v #{p : answer_p = v} / P. A model that ignores its input
    cannot beat it (on exact-answer tasks with one right answer per problem).
    ["3", "5", "3", "7"] -> 0.5. Raises ValueError on no answers."""
    if len(answers_P) == 0:
        raise ValueError("constant_guess_floor needs at least one answer")
    return max(Counter(answers_P).values()) / len(answers_P)


def clear_of_floor(correct, floor: float, *, z: float = 2.0) -> tuple[bool, str]:
    """Whether the accuracy of ``correct`` (0/1 values of any shape, e.g. [seeds, problems],
    pooled) is above ``floor`` by ``z`` standard errors:

        p = mean(correct),  SE = sqrt(p (1 - p) / n),  passed = p - z SE > floor

    (at p = 0 or 1, SE = 0). Returns (passed, detail), the detail naming p, SE and the floor."""
    x = np.asarray(correct, dtype=np.float64).reshape(-1)
    if x.size == 0 or not np.all((x == 0) | (x == 1)):
        raise ValueError("clear_of_floor needs a non-empty array of 0/1 values")
    p = float(x.mean())
    se = math.sqrt(p * (1.0 - p) / x.size)
    passed = p - z * se > floor
    return passed, f"accuracy {p:.3f} (SE {se:.3f}, n {x.size}) vs floor {floor:.3f} + {z:g} SE"
