import json

import numpy as np
import pytest

from jaxlab import tasks
from jaxlab.tasks.base import MAX_RESPONSE_CHARS, Example, TaskError, ascii_int, ascii_uint, extract_answer


def test_extract_answer_takes_the_last_non_blank_line():
    assert extract_answer("357") == "357"
    assert extract_answer("  357 \n") == "357"
    assert extract_answer("scratch 12+345\n= 357\n\n  \n") == "= 357"
    assert extract_answer("a\nb") == "b"
    assert extract_answer("") is None
    assert extract_answer(" \n\t\n") is None
    assert extract_answer("1" * MAX_RESPONSE_CHARS) == "1" * MAX_RESPONSE_CHARS
    assert extract_answer("1" * (MAX_RESPONSE_CHARS + 1)) is None


def test_ascii_integers_reject_unicode_digits_and_signs():
    assert ascii_uint("0357", 4) == 357
    assert ascii_int("-42", 4) == -42
    for bad in ("", "٣", "３", "²", "1_000", "+1", " 1", "1.0", "0x10", "--1", "-", "12345"):
        assert ascii_int(bad, 4) is None, bad
    assert "٣".isdigit() and int("٣") == 3  # why str.isdigit / int() alone are not enough
    assert ascii_uint("-1", 4) is None


def test_registry_names_and_errors():
    assert sorted(tasks.TASKS) == ["arithmetic", "card_sum", "char_count", "char_locate", "count", "countdown",
                                   "doc_extract", "hanoi", "instructed_arithmetic", "last_letters", "most_frequent", "shift_cipher", "table_column", "table_lookup",
                                   "table_merged", "table_partition", "table_reverse_lookup", "table_row", "table_size",
                                   "word_sort"]
    assert all(tasks.get(name).name == name for name in tasks.TASKS)
    with pytest.raises(TaskError, match="unknown task 'sudoku'; known tasks: arithmetic, card_sum, char_count"):
        tasks.get("sudoku")
    with pytest.raises(TaskError, match="unknown field.*digits.*fields: .*ops"):
        tasks.get("arithmetic", digits=3)
    assert tasks.get("arithmetic", ops="*").ops == "*"
    assert tasks.get("hanoi", train_difficulty=[1, 3]).train_difficulty == (1, 3)  # lists from JSON
    assert issubclass(TaskError, ValueError)


@pytest.mark.parametrize("kwargs, match", [
    (dict(train_difficulty=(3, 2)), "low <= high"),
    (dict(ood_difficulty=(0, 2)), r"must lie in \[1, 30\] \(digits per operand\)"),
    (dict(ops="+/"), "ops='\\+/'"),
])
def test_bad_task_settings(kwargs, match):
    with pytest.raises(TaskError, match=match):
        tasks.get("arithmetic", **kwargs)


def test_generate_rejects_out_of_range_difficulty():
    rng = np.random.default_rng(0)
    with pytest.raises(TaskError, match=r"difficulty=11 \(disks\) must be an int in \[1, 10\]"):
        tasks.get("hanoi").generate(rng, 11)
    with pytest.raises(TaskError, match="difficulty=2.0"):
        tasks.get("count").generate(rng, 2.0)


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_splits_are_deterministic_disjoint_and_in_range(name):
    task = tasks.get(name)
    a = task.splits(seed=3, n_train=60, n_test=20, n_ood=20)
    b = task.splits(seed=3, n_train=60, n_test=20, n_ood=20)
    c = task.splits(seed=4, n_train=60, n_test=20, n_ood=20)
    assert a == b and a != c
    assert {k: len(v) for k, v in a.items()} == {"train": 60, "test": 20, "ood": 20}
    prompts = {k: [e.prompt for e in v] for k, v in a.items()}
    all_prompts = sum(prompts.values(), [])
    assert len(set(all_prompts)) == len(all_prompts)  # no prompt twice, within or across splits
    for split, examples in a.items():
        low, high = task.ood_difficulty if split == "ood" else task.train_difficulty
        assert all(low <= e.meta["difficulty"] <= high for e in examples)
        assert all(e.meta["task"] == name for e in examples)
        assert all(task.verify(e, e.answer) == 1.0 for e in examples)
    keys = [task.equivalence_key(e) for v in a.values() for e in v]
    assert len(set(keys)) == len(keys)  # no equivalent form twice either


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_train_and_test_have_the_same_difficulty_mix(name):
    task = tasks.get(name)
    s = task.splits(seed=0, n_train=300, n_test=100, n_ood=40)
    levels = range(task.train_difficulty[0], task.train_difficulty[1] + 1)
    for d in levels:
        train = sum(e.meta["difficulty"] == d for e in s["train"]) / 300
        test = sum(e.meta["difficulty"] == d for e in s["test"]) / 100
        assert abs(train - test) <= 1 / 100 + 1 / 300, (d, train, test)  # rounding only
    ood = [e.meta["difficulty"] for e in s["ood"]]
    assert min(ood) > task.train_difficulty[1] or task.ood_difficulty[0] <= task.train_difficulty[1]


def test_small_levels_are_capped_and_shares_spread_to_the_others():
    # arithmetic "+" with 1-digit operands holds 55 unordered sums: 80% of them is 44
    task = tasks.get("arithmetic", train_difficulty=(1, 3), ops="+")
    assert task.level_capacity(1) == 55 and task.level_capacity(2) == 90 * 91 // 2
    s = task.splits(seed=1, n_train=900, n_test=300, n_ood=0)
    ones = {k: sum(e.meta["difficulty"] == 1 for e in s[k]) for k in ("train", "test")}
    assert ones["train"] + ones["test"] == 44  # the cap, shared in proportion 3 : 1
    assert ones == {"train": 33, "test": 11}
    # commuted sums never cross splits
    canon = {k: {tuple(sorted((e.meta["a"], e.meta["b"]))) for e in s[k]} for k in ("train", "test")}
    assert not canon["train"] & canon["test"]


def test_level_shares_and_quotas_known_values():
    from jaxlab.tasks.base import level_quotas, level_shares
    assert level_shares({1: None, 2: None, 3: None, 4: None}, 100) == {1: .25, 2: .25, 3: .25, 4: .25}
    # level 1 holds 10 problems: 8 usable of the 25 an even share asks; 92 go to the others
    shares = level_shares({1: 10, 2: None, 3: None, 4: None}, 100)
    assert shares[1] == pytest.approx(0.08) and shares[2] == pytest.approx(0.92 / 3)
    assert level_quotas(10, {1: 0.25, 2: 0.25, 3: 0.25, 4: 0.25}) == {1: 3, 2: 3, 3: 2, 4: 2}
    assert sum(level_quotas(7, shares).values()) == 7
    assert level_shares({1: 10, 2: 30}, 20) == {1: 0.4, 2: 0.6}  # 8 of level 1, 12 of level 2
    assert level_shares({1: 10, 2: 30}, 36) == {1: 0.25, 2: 0.75}  # both capped: by size
    with pytest.raises(TaskError, match="hold only 40"):
        level_shares({1: 10, 2: 30}, 41)


def test_splits_too_large_for_the_range_raise():
    task = tasks.get("hanoi", train_difficulty=(1, 1))  # 6 distinct instances with one disk
    assert len(task.splits(0, 4, 2, 0)["train"]) == 4
    assert task.level_capacity(1) == 6
    with pytest.raises(TaskError, match="7 problems asked but the levels hold only 6"):
        task.splits(0, 5, 2, 0)
    with pytest.raises(TaskError, match="n_test=-1"):
        task.splits(0, 1, -1, 0)


def test_example_record_round_trip_and_module_verify():
    ex = tasks.get("countdown").generate(np.random.default_rng(1), 3)
    record = {k: v.encode() for k, v in ex.to_record().items()}  # what a tfds source returns
    back = Example.from_record(record)
    assert back == ex
    for form in (ex, ex.meta, json.dumps(ex.meta), record["meta"]):
        assert tasks.verify(form, ex.answer) == 1.0
        assert tasks.verify(form, ex.answer + "+0") == 0.0


def test_programming_errors_raise():
    ex = tasks.get("count").generate(np.random.default_rng(0), 5)
    with pytest.raises(TaskError, match="meta of task 'count' given to the 'hanoi' verifier"):
        tasks.get("hanoi").verify(ex, "AC")
    with pytest.raises(TypeError, match="response must be str or bytes"):
        tasks.get("count").verify(ex, 3)
    with pytest.raises(TaskError, match="unknown task None"):
        tasks.verify({"difficulty": 1}, "1")
    # bytes responses are decoded (invalid UTF-8 replaced), not rejected
    assert tasks.get("count").verify(ex, ex.answer.encode()) == 1.0
    assert tasks.get("count").verify(ex, b"\xff\xfe") == 0.0
