"""The generators: instances follow the difficulty knob and the reference answers are right."""

import itertools
import re
from collections import Counter, deque

import numpy as np
import pytest

from jaxlab import tasks
from jaxlab.tasks.countdown import evaluate, leaves, parse_expression, random_tree, to_text
from jaxlab.tasks.hanoi import MOVES, simulate, solve
from jaxlab.tasks.words import vocabulary


def examples(name, difficulty, n=40, seed=0, **overrides):
    task = tasks.get(name, **overrides)
    rng = np.random.default_rng(seed)
    return task, [task.generate(rng, difficulty) for _ in range(n)]


@pytest.mark.parametrize("digits", [1, 2, 5, 25])
def test_arithmetic_operands_have_the_digits_and_the_answer_is_exact(digits):
    task, exs = examples("arithmetic", digits, ops="+-*")
    for ex in exs:
        a, op, b = ex.meta["a"], ex.meta["op"], ex.meta["b"]
        assert ex.prompt == f"{a}{op}{b}="
        assert re.fullmatch(rf"[0-9]{{{digits}}}[-+*][0-9]{{{digits}}}=", ex.prompt)
        assert digits == 1 or (len(str(a)) == digits and len(str(b)) == digits)
        assert int(ex.answer) == {"+": a + b, "-": a - b, "*": a * b}[op]
    assert {ex.meta["op"] for ex in exs} == {"+", "-", "*"}
    _, only_mul = examples("arithmetic", digits, ops="*")
    assert {ex.meta["op"] for ex in only_mul} == {"*"}


@pytest.mark.parametrize("count", [2, 3, 4, 6, 8])
def test_countdown_instances_are_solvable_by_construction(count):
    task, exs = examples("countdown", count, max_number=12, max_target=150)
    for ex in exs:
        numbers, target = ex.meta["numbers"], ex.meta["target"]
        assert len(numbers) == count and all(1 <= n <= 12 for n in numbers)
        assert 1 <= target <= 150
        assert ex.prompt == f"cd {' '.join(map(str, numbers))} t {target}:"
        tree = parse_expression(ex.answer)
        assert Counter(leaves(tree)) == Counter(numbers) and evaluate(tree) == target
        assert task.verify(ex, ex.answer) == 1.0


def test_countdown_intermediate_values_are_positive_integers():
    rng = np.random.default_rng(5)

    def values(tree):
        if isinstance(tree, int):
            return [tree]
        return values(tree[1]) + values(tree[2]) + [evaluate(tree)]

    for _ in range(200):
        tree = random_tree(rng, [int(n) for n in rng.integers(1, 20, size=5)], max_value=500)
        assert all(v.denominator == 1 and v > 0 for v in values(tree))


def test_countdown_expression_text_has_minimal_parentheses():
    assert to_text(("-", 7, ("-", 5, 3))) == "7-(5-3)"
    assert to_text(("-", ("-", 7, 5), 3)) == "7-5-3"
    assert to_text(("/", ("*", 8, 3), 2)) == "8*3/2"
    assert to_text(("/", 8, ("*", 3, 2))) == "8/(3*2)"
    assert to_text(("*", ("+", 1, 2), 3)) == "(1+2)*3"
    assert to_text(("+", 1, ("*", 2, 3))) == "1+2*3"
    assert to_text(("+", 1, ("+", 2, 3))) == "1+2+3"  # + is associative: no parentheses needed
    rng = np.random.default_rng(0)
    for _ in range(200):
        tree = random_tree(rng, [int(n) for n in rng.integers(1, 10, size=4)], max_value=1000)
        text = to_text(tree)
        assert evaluate(parse_expression(text)) == evaluate(tree)
        assert to_text(parse_expression(text)) == text


def test_hanoi_classic_start_takes_two_to_the_n_minus_one_moves():
    task = tasks.get("hanoi", random_start=False)
    for n in range(1, 11):
        ex = task.generate(np.random.default_rng(0), n)
        assert ex.prompt == f"hanoi {'A' * n}>C:"
        assert len(ex.answer.split()) == 2 ** n - 1
        assert task.verify(ex, ex.answer) == 1.0
    assert task.generate(np.random.default_rng(0), 3).answer == "AC AB CB AC BA BC AC"


def bfs_distance(position, goal):
    """Fewest moves from position to all disks on goal, by breadth-first search."""
    n = len(position)
    target = goal * n
    seen, queue = {position: 0}, deque([position])
    while queue:
        state = queue.popleft()
        if state == target:
            return seen[state]
        for move in MOVES:
            src, dst = move
            tops = {p: min((i for i in range(n) if state[i] == p), default=n) for p in "ABC"}
            if tops[src] < tops[dst]:
                nxt = state[:tops[src]] + dst + state[tops[src] + 1:]
                if nxt not in seen:
                    seen[nxt] = seen[state] + 1
                    queue.append(nxt)
    raise AssertionError("unreachable")


def test_hanoi_reference_is_optimal_from_any_position():
    for n in (1, 2, 3, 4):
        for position in map("".join, itertools.product("ABC", repeat=n)):
            for goal in "ABC":
                moves = solve(position, goal)
                assert simulate(position, goal, moves)
                assert len(moves) == bfs_distance(position, goal), (position, goal)


def test_hanoi_random_instances_are_unsolved_and_varied():
    task, exs = examples("hanoi", 4, n=100)
    assert all(ex.meta["position"] != ex.meta["goal"] * 4 for ex in exs)
    assert len({ex.prompt for ex in exs}) > 50
    assert all(task.verify(ex, ex.answer) == 1.0 for ex in exs)


@pytest.mark.parametrize("length", [1, 4, 30])
def test_count_and_most_frequent(length):
    task, exs = examples("count", length, alphabet="xyz")
    for ex in exs:
        letters, letter = ex.meta["letters"], ex.meta["letter"]
        assert len(letters) == length and set(letters) <= set("xyz") and letter in "xyz"
        assert ex.prompt == f"count {letter} in {letters}:" and ex.answer == str(letters.count(letter))
    task, exs = examples("most_frequent", length)
    for ex in exs:
        counts = Counter(ex.meta["letters"])
        assert len(ex.meta["letters"]) == length
        top = max(counts.values())
        assert [c for c, k in counts.items() if k == top] == [ex.answer]  # a unique mode
        assert ex.prompt == f"mode {ex.meta['letters']}:"


def test_vocabulary_is_fixed_distinct_and_lowercase():
    words = vocabulary(512)
    assert len(words) == len(set(words)) == 512
    assert all(re.fullmatch("[a-z]{2,7}", w) for w in words)
    assert vocabulary(512) is words and vocabulary(100) == words[:100]  # same generator, prefix
    assert vocabulary(512, seed=1) != words


@pytest.mark.parametrize("count", [1, 3, 8])
def test_word_tasks(count):
    task, exs = examples("last_letters", count)
    for ex in exs:
        words = ex.meta["words"]
        assert len(words) == len(set(words)) == count and set(words) <= set(vocabulary(512))
        assert ex.prompt == f"last {' '.join(words)}:" and ex.answer == "".join(w[-1] for w in words)
    task, exs = examples("word_sort", count)
    for ex in exs:
        words = ex.meta["words"]
        assert ex.answer.split() == sorted(words) and len(words) == count


def test_word_sort_orders_prefixes_first():
    meta = {"task": "word_sort", "difficulty": 3, "words": ["bab", "ba", "a"]}
    assert tasks.get("word_sort").verify(meta, "a ba bab") == 1.0
    assert tasks.get("word_sort").verify(meta, "a bab ba") == 0.0
