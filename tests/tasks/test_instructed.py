"""The instructed tasks: the lenient last-integer parser, instructed arithmetic and the
card-sum task with its rule variant."""

import numpy as np
import pytest

from jaxlab import tasks
from jaxlab.rl import score_responses
from jaxlab.tasks.base import TaskError
from jaxlab.tasks.instructed import (CardSum, InstructedArithmetic, card_value, hands_with_a_face,
                                     last_integer, rule_text)


@pytest.mark.parametrize("text,value", [
    ("46", 46), ("12 + 34 = 46.", 46), ("The answer is 46", 46), ("The answer is -3.", -3),
    ("1,234", 1234), ("12,34", 34), ("x 007", 7), ("no number", None), ("", None),
    ("٣٥٧", None), ("46.0", 0), ("1" * 70, None),
])
def test_last_integer(text, value):
    assert last_integer(text) == value


def test_instructed_arithmetic_accepts_a_sentence_ending_in_the_value():
    task = InstructedArithmetic(ops="+", train_difficulty=(2, 2))
    ex = task.generate(np.random.default_rng(0), 2)
    a, b = ex.meta["a"], ex.meta["b"]
    assert ex.prompt == f"What is {a}+{b}? Answer with the number only." and ex.answer == str(a + b)
    assert task.verify(ex, f"{a} + {b} = {a + b}.") == 1.0
    assert task.verify(ex, f"The answer is {a + b}") == 1.0
    assert task.verify(ex, f"{a} + {b} = {a + b + 1}") == 0.0
    assert task.verify(ex, f"{a + b} is the sum of {a} and {b}") == 0.0  # ends with an operand
    assert task.verify(ex, "I do not know") == 0.0
    # commuted sums are one problem, as in arithmetic
    splits = task.splits(0, 50, 20, 0)
    keys = [task.equivalence_key(e) for s in splits.values() for e in s]
    assert len(keys) == len(set(keys)) == 70


def test_card_values_and_rules():
    assert [card_value(r, (10, 10, 10)) for r in ("2", "10", "J", "Q", "K")] == [2, 10, 10, 10, 10]
    assert [card_value(r, (11, 12, 13)) for r in ("J", "Q", "K")] == [11, 12, 13]
    assert rule_text((10, 10, 10)) == "J, Q and K count as 10."
    assert rule_text((11, 12, 13)) == "J, Q and K count as 11, 12 and 13."
    # C(12+n-1, n) - C(9+n-1, n), checked by enumeration for n = 2, 3
    import itertools
    for n in (2, 3):
        hands = {h for h in itertools.combinations_with_replacement(range(12), n) if max(h) >= 9}
        assert hands_with_a_face(n) == len(hands)
    assert (hands_with_a_face(2), hands_with_a_face(3), hands_with_a_face(4)) == (33, 199, 870)


def test_card_sum_ood_is_the_test_hands_under_the_other_rule():
    task = CardSum()
    s = task.splits(0, 200, 40, 30)
    assert [len(s[k]) for k in ("train", "test", "ood")] == [200, 40, 30]
    for test, ood in zip(s["test"], s["ood"]):
        assert ood.meta["hand"] == test.meta["hand"] and ood.meta["face_values"] == [11, 12, 13]
        assert "J, Q and K count as 11, 12 and 13." in ood.prompt and "count as 10." in test.prompt
        faces = sum(r in ("J", "Q", "K") for r in test.meta["hand"])
        assert faces >= 1
        # the rule changes the answer: J, Q, K add 1, 2, 3 more under the OOD rule
        extra = sum({"J": 1, "Q": 2, "K": 3}.get(r, 0) for r in test.meta["hand"])
        assert int(ood.answer) == int(test.answer) + extra
        assert task.verify(ood, ood.answer) == 1.0 and task.verify(ood, test.answer) == 0.0
    ex = s["test"][0]
    assert ex.prompt.startswith(f"Cards: {', '.join(ex.meta['hand'])}. J, Q and K count as 10.")
    assert task.verify(ex, f"The sum is {ex.answer}.") == 1.0
    keys = [task.equivalence_key(e) for k in ("train", "test") for e in s[k]]
    assert len(set(keys)) == len(keys)  # no hand twice (in any order) across train and test
    with pytest.raises(TaskError, match="n_ood"):
        task.splits(0, 10, 5, 6)
    with pytest.raises(TaskError, match="differ"):
        CardSum(ood_face_values=(10, 10, 10))


def test_instructed_tasks_are_registered_for_the_rl_scorer():
    ex = CardSum().splits(1, 0, 2, 2)["ood"][0]
    assert tasks.get("card_sum").name == "card_sum"
    rewards, correct = score_responses([ex, ex], [ex.answer, "0"])
    np.testing.assert_array_equal(correct, [1.0, 0.0])
