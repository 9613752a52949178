"""Scoring given completions (no model): verification, majority votes, summaries."""

import numpy as np
import pytest

from jaxlab import tasks
from jaxlab.evals import evaluation_problems, majority_vote, score_problem, summarize
from jaxlab.evals.scoring import answer_key, pass_ks


def test_answer_key_groups_equal_parses():
    cd = tasks.get("countdown")
    assert answer_key(cd, "3*5+7") == answer_key(cd, "scratch\n(3*5)+7 ") is not None
    assert answer_key(cd, "3*5+7") != answer_key(cd, "7+3*5")
    assert answer_key(cd, "__import__('os')") is None
    assert answer_key(cd, "") is None
    ar = tasks.get("arithmetic")
    assert answer_key(ar, "357") == answer_key(ar, "  357\n") != answer_key(ar, "358")


def test_majority_vote():
    assert majority_vote(["a", "a", "b"], [True, True, False]) == 1.0
    assert majority_vote(["a", "b", "b"], [True, False, False]) == 0.0
    assert majority_vote(["a", "b", None, None], [True, False, False, False]) == 0.5  # tie
    assert majority_vote([None, None], [False, False]) == 0.0
    assert majority_vote([None, None, "a"], [False, False, True]) == 1.0  # no vote from malformed
    with pytest.raises(ValueError, match="votes"):
        majority_vote(["a"], [True, False])


def test_pass_ks():
    assert pass_ks(8) == [1, 2, 4, 8]
    assert pass_ks(6) == [1, 2, 4, 6]
    assert pass_ks(1) == [1]


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_a_model_that_always_answers_correctly_scores_one(name):
    task = tasks.get(name)
    problems = evaluation_problems(task, 12, seed=1)
    # a scratchpad line before the answer, as a chat model might write
    records = [score_problem(task, ex, f"thinking...\n{ex.answer}", [ex.answer] * 4, split=s)
               for s, ex in problems]
    out = summarize(records)
    overall = out["overall"]
    assert overall["greedy"]["accuracy"] == 1.0 and overall["format_rate"] == 1.0
    assert overall["greedy"]["low"] < 1.0 == overall["greedy"]["high"]
    for key in ("pass@1", "pass@2", "pass@4", "maj@4"):
        assert overall[key]["value"] == 1.0, key
    assert sum(s["n"] for s in out["by_difficulty"].values()) == overall["n"] == 12
    assert {r["split"] for r in records} == {"test", "ood"}


def test_wrong_and_mixed_answers():
    task = tasks.get("arithmetic")
    problems = evaluation_problems(task, 20, split="test", seed=0)
    wrong = lambda ex: str(int(ex.answer) + 1)
    records = []
    for i, (split, ex) in enumerate(problems):
        # samples: 1 of 4 right for even problems, 3 of 4 for odd ones; greedy right for odd
        right = 1 if i % 2 == 0 else 3
        samples = [ex.answer] * right + [wrong(ex)] * (4 - right)
        records.append(score_problem(task, ex, ex.answer if i % 2 else wrong(ex), samples, split=split))
    overall = summarize(records)["overall"]
    assert overall["greedy"]["correct"] == 10 and overall["greedy"]["accuracy"] == 0.5
    assert overall["format_rate"] == 1.0
    assert overall["pass@1"]["value"] == pytest.approx(0.5)
    # pass@2 of 1-of-4 is 1 - C(3,2)/C(4,2) = 0.5; of 3-of-4 it is 1
    assert overall["pass@2"]["value"] == pytest.approx(0.75)
    assert overall["pass@4"]["value"] == 1.0
    assert overall["maj@4"]["value"] == 0.5  # the majority is right exactly on odd problems
    for key in ("pass@1", "pass@2", "maj@4"):
        assert overall[key]["low"] <= overall[key]["value"] <= overall[key]["high"]
    assert overall["greedy"]["low"] < 0.5 < overall["greedy"]["high"]


def test_hostile_responses_score_zero():
    task = tasks.get("countdown")
    (_, ex), = evaluation_problems(task, 1, split="test")
    hostile = ["__import__('os').system('true')", "9" * 10_000, "1" + "*1" * 5000, "\x00\ud7ff", ""]
    record = score_problem(task, ex, hostile[0], hostile)
    assert not record["greedy_correct"] and record["n_correct"] == 0 and record["majority"] == 0.0


def test_summary_needs_equal_sample_counts():
    task = tasks.get("arithmetic")
    (_, a), (_, b) = evaluation_problems(task, 2, split="test")
    records = [score_problem(task, a, a.answer, [a.answer] * 2), score_problem(task, b, b.answer, [b.answer])]
    with pytest.raises(ValueError, match="different numbers of samples"):
        summarize(records)
    assert np.isclose(summarize(records[:1])["overall"]["pass@2"]["value"], 1.0)
