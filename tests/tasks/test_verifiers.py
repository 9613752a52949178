"""Each verifier: reference answers pass, other correct answers pass, wrong ones fail, and
hostile answers score 0 quickly without raising."""

import time

import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxlab import tasks

EXAMPLES = {
    "arithmetic": {"task": "arithmetic", "difficulty": 3, "a": 12, "op": "+", "b": 345},  # 357
    "countdown": {"task": "countdown", "difficulty": 3, "numbers": [3, 5, 7], "target": 22},
    "hanoi": {"task": "hanoi", "difficulty": 2, "position": "AA", "goal": "C"},
    "count": {"task": "count", "difficulty": 6, "letters": "bacaad", "letter": "a"},  # 3
    "most_frequent": {"task": "most_frequent", "difficulty": 6, "letters": "bacaad"},  # a
    "last_letters": {"task": "last_letters", "difficulty": 3, "words": ["vobu", "ke", "tamin"]},  # uen
    "word_sort": {"task": "word_sort", "difficulty": 3, "words": ["vobu", "ke", "tamin"]},
}

CORRECT = {
    "arithmetic": ["357", " 357 ", "0357", "12+345=\n357", "scratch\n357\n"],
    "countdown": ["3*5+7", "7+5*3", "(3*5)+7", "((3*5)+7)", "7 + 3 * 5", "5*3+7"],
    "hanoi": ["AB AC BC", "AB  AC BC", "AB BA AB AC BC"],  # the last is legal but not optimal
    "count": ["3", "03"],
    "most_frequent": ["a"],
    "last_letters": ["uen"],
    "word_sort": ["ke tamin vobu", "ke  tamin vobu"],
}

WRONG = {
    "arithmetic": ["358", "-357", "357.0", "3 5 7", "+357", "357 357", "٣٥٧", "３５７", "1_357"],
    "countdown": ["22", "3*5+7+0", "3*5+7*1", "3*5+7-3+3", "5*3+7+7-7", "3*(5+7)", "-3*-5+7",
                  "+3*5+7", "3*5+7=22", "3**2+13"],
    "hanoi": ["AC AB CB", "AB AC", "AC AC", "AB BC", "ab ac bc", "AB,AC,BC", "AB AC BC AB"],
    "count": ["2", "4", "-3", "3.0", "three", "٣"],
    "most_frequent": ["b", "A", "aa", "a a"],
    "last_letters": ["uenx", "neu", "UEN", "u e n"],
    "word_sort": ["vobu tamin ke", "ke tamin", "ke tamin vobu vobu", "ke,tamin,vobu", "KE TAMIN VOBU"],
}

# Hostile answers: every one must score 0 on every task, in well under 0.5 s, without raising.
HOSTILE = [
    "", " ", "\n\n", "\x00", "\ud800", "\u2028", "\u202e357",
    "2**10", "9**9**9**9**9", "10**10**10", "2**-1", "(-1)**0.5",
    "9" * 4000, "9" * 5000, "1" + "0" * 300 + "*3+5+7", "1e308", "1e999*0", "inf", "nan", "NaN", "-0",
    "1/0", "3/(5-5)*7", "7/(3-3)+5", "0/0", "5//1",
    "٣*٥+٧", "３*５+７", "3*5+７", "²", "①",
    "(" * 100 + "3*5+7" + ")" * 100, "(" * 10_000 + "1" + ")" * 10_000, "-" * 100_000 + "1",
    "+" * 5000 + "3", "[" * 5000, "((((((((((" * 100,
    "3*5+7\n" * 200_000, "a" * 1_000_000, "1" * 1_000_000, "AC " * 1_000_000, "x" * 4096,
    "AB " * 1365, "AC BA " * 700,
    "__import__('os').system('echo pwned')", "lambda: 1", "exec('1')", "open('/etc/passwd').read()",
    "True", "None", "[3, 5, 7]", "{3: 5}", "3 if 1 else 5", "(3).__class__", "f'{3}'", "b'3'",
    "3*5+7;", "3*5+7 # comment", "\\x33", "0x16", "0b10110", "0o26", "26j", "2.2e1",
]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_reference_and_other_correct_answers_pass(name):
    task = tasks.get(name)
    meta = EXAMPLES[name]
    for response in CORRECT[name]:
        assert task.verify(meta, response) == 1.0, response
        assert task.format_reward(response) == 1.0, response
    for response in WRONG[name]:
        assert task.verify(meta, response) == 0.0, response


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_hostile_answers_score_zero_quickly(name):
    task = tasks.get(name)
    for response in HOSTILE:
        start = time.perf_counter()
        score = task.verify(EXAMPLES[name], response)
        fmt = task.format_reward(response)
        elapsed = time.perf_counter() - start
        assert score == 0.0, (name, response[:40])
        assert fmt in (0.0, 1.0)
        assert elapsed < 0.5, (name, response[:40], elapsed)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@given(response=st.text(max_size=300))
def test_random_text_never_raises(name, response):
    assert tasks.get(name).verify(EXAMPLES[name], response) in (0.0, 1.0)


@given(response=st.text(alphabet="0123456789+-*/() ", max_size=80))
def test_countdown_random_expressions_never_raise(response):
    meta = {"task": "countdown", "difficulty": 3, "numbers": [3, 5, 7], "target": 22}
    assert tasks.get("countdown").verify(meta, response) in (0.0, 1.0)


def test_countdown_uses_exact_fractions():
    # 8 / (3 - 8/3) = 8 / (1/3) = 24 exactly; a float evaluation could miss it by rounding
    meta = {"task": "countdown", "difficulty": 4, "numbers": [8, 3, 8, 3], "target": 24}
    countdown = tasks.get("countdown")
    assert countdown.verify(meta, "8/(3-8/3)") == 1.0
    assert countdown.verify(meta, "8/(3-8/3)+0") == 0.0  # 0 is not a given number
    assert countdown.verify(meta, "8*3*(8/8)") == 0.0    # 8 used three times, 3 once
    # repeated numbers must be used exactly as often as given
    meta = {"task": "countdown", "difficulty": 3, "numbers": [3, 3, 5], "target": 15}
    assert countdown.verify(meta, "3*5*(3/3)") == 0.0
    assert countdown.verify(meta, "(3+3-3)*5") == 0.0
    assert countdown.verify(meta, "5*3") == 0.0
    meta = {"task": "countdown", "difficulty": 3, "numbers": [3, 3, 5], "target": 6}
    assert countdown.verify(meta, "(5-3)*3") == 1.0
    assert countdown.verify(meta, "5/(3-3)") == 0.0  # division by zero scores 0


def test_hanoi_move_cap():
    hanoi = tasks.get("hanoi")
    meta = {"task": "hanoi", "difficulty": 1, "position": "A", "goal": "C"}
    assert hanoi.verify(meta, "AC") == 1.0
    assert hanoi.verify(meta, "AB BC") == 1.0
    assert hanoi.verify(meta, "AB BA AC") == 1.0  # 3 moves <= 2^2
    assert hanoi.verify(meta, "AB BA AB BA AC") == 0.0  # 5 legal moves > 2^(1+1)
    assert hanoi.verify(meta, "AC CA") == 0.0  # passes through the goal but does not end there


def test_most_frequent_and_count_zero():
    assert tasks.get("count").verify({"task": "count", "difficulty": 3, "letters": "abb", "letter": "e"},
                                     "0") == 1.0
    meta = {"task": "most_frequent", "difficulty": 3, "letters": "abb"}
    assert tasks.get("most_frequent").verify(meta, "b") == 1.0


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_wrong_reference_of_another_instance_fails(name):
    # an answer is verified against its own instance: the reference of a different instance
    # (other prompt, same difficulty) scores 0 unless it happens to solve this one too
    task = tasks.get(name)
    rng = np.random.default_rng(0)
    d = task.train_difficulty[1]
    pairs = [(task.generate(rng, d), task.generate(rng, d)) for _ in range(30)]
    mismatched = [a.answer for a, b in pairs if task.verify(b, a.answer) == 0.0]
    assert len(mismatched) >= 10


@pytest.mark.parametrize("name, well_formed_but_wrong, malformed", [
    ("arithmetic", "358", "357.0"),
    ("countdown", "3+5+7", "3**5+7"),
    ("hanoi", "AC AC", "AC AD"),
    ("count", "4", "-3"),
    ("most_frequent", "b", "ab"),
    ("last_letters", "xyz", "x y"),
    ("word_sort", "vobu ke tamin", "ke, tamin"),
])
def test_format_reward_separates_form_from_correctness(name, well_formed_but_wrong, malformed):
    task = tasks.get(name)
    assert task.verify(EXAMPLES[name], well_formed_but_wrong) == 0.0
    assert task.format_reward(well_formed_but_wrong) == 1.0
    assert task.format_reward(malformed) == 0.0
