"""experiments/reflect_retry_reward.py: answer reading and mining against hand values, the
three-way verdict on constructed runs, and the smoke preset end to end (a tiny random model
over SmolLM2's tokenizer and ChatML template; skipped without the SmolLM2 file)."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab import tasks as tasks_lib
from jaxlab.cli import load_experiment
from jaxlab.tasks.base import Example

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "reflect_retry_reward.py")


@pytest.fixture(scope="module")
def exp():
    return load_experiment(EXPERIMENT)


def test_answers_are_read_up_to_the_equals_sign_and_never_evaluated(exp):
    assert exp.expression("5 - 3 = 2") == "5 - 3"
    assert exp.expression("Sure.\n\n(4+4)*2  \n") == "(4+4)*2"
    assert exp.expression("  \n") == ""
    meta = {"task": "countdown", "difficulty": 2, "numbers": [3, 5], "target": 2}
    ex = Example(exp.instruction([3, 5], 2), "5-3", meta)
    replies = ["5-3", "5 - 3 = 2", "3-5", "5-3+0", "(5-3)", "5-3 = 8", "__import__('os').getcwd()", "2"]
    np.testing.assert_array_equal(exp.solved([ex] * len(replies), replies), [1, 1, 0, 0, 1, 1, 0, 0])
    assert "3, 5" in ex.prompt and "equals 2" in ex.prompt
    # the task's own verifier agrees on the bare expressions
    assert tasks_lib.get("countdown").verify(meta, "5-3") == 1.0


def test_mined_failures_and_second_try(exp):
    np.testing.assert_array_equal(exp.failures([[0, 0], [1, 0], [0, 0], [0, 1]]), [0, 2])
    np.testing.assert_array_equal(exp.failures(np.zeros((3, 4))), [0, 1, 2])
    np.testing.assert_array_equal(exp.second_try([1, 0, 0, 1], [0, 1, 0, 0]), [1, 1, 0, 1])


def _runs(before_SP, after_SP, *, mined=40, signal=3, min_mined=20, first_after=None):
    per_seed = []
    for s, (b, a) in enumerate(zip(before_SP, after_SP)):
        fa = np.zeros_like(a) if first_after is None else first_after[s]
        per_seed.append({"min_mined_test": min_mined, "n_mined_test": mined, "rollouts_with_signal": signal,
                         "before": {"first": [0.0] * len(b), "second": list(map(float, b))},
                         "after": {"first": list(map(float, fa)), "second": list(map(float, a))}})
    return {"reflect_retry_reward": per_seed}


def test_verdict_is_three_way_with_preconditions(exp):
    rng = np.random.default_rng(0)
    before = (rng.random((3, 40)) < 0.1).astype(float)
    gained = np.maximum(before, rng.random((3, 40)) < 0.6)
    v = exp.claim_verdict(_runs(before, gained))
    assert v.outcome == "held" and v.low > 0
    assert v.effect == pytest.approx(float((gained - before).mean()))
    lost = np.zeros_like(before)
    lost[:, :20] = 1  # every seed loses its successes on the first 20 problems
    v = exp.claim_verdict(_runs(lost, np.zeros_like(before)))
    assert v.outcome == "not held" and v.high < 0
    v = exp.claim_verdict(_runs(before, gained, signal=0))
    assert v.outcome == "inconclusive" and "retries can succeed" in v.reason
    v = exp.claim_verdict(_runs(before, gained, mined=10))
    assert v.outcome == "inconclusive" and "mined held-out failures" in v.reason
    v = exp.claim_verdict(_runs(np.ones_like(before), np.ones_like(before)))
    assert v.outcome == "inconclusive" and "room to rise" in v.reason
    # the first-try claim is the same test on the first-try arrays
    v = exp.verdict_of(_runs(before, gained, first_after=gained), "first", 20)
    assert v.outcome == "held" and v.effect == pytest.approx(float(gained.mean()))


@pytest.mark.slow
def test_smoke_preset_end_to_end(smollm2_path, tmp_path, exp):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1"]) == 0  # one seed: the published smoke run has two
    results = json.loads((tmp_path / "results.json").read_text())
    per_seed = results["runs"]["reflect_retry_reward"]
    assert len(per_seed) == 1
    for run in per_seed:
        # the mined held-out problems are exactly the pool problems whose sampled attempts all failed
        assert run["mined_test"] == [i for i, c in enumerate(run["pool_test_correct"]) if c == 0][:8]
        for when in ("before", "after"):
            first, retry, second = (np.array(run[when][k]) for k in ("first", "retry", "second"))
            assert len(first) == run["n_mined_test"]
            np.testing.assert_array_equal(second, np.maximum(first, retry))
            assert not np.any(retry[first == 1])  # a retry only follows a failure
        # a random model never solves Countdown: every GRPO advantage is 0, nothing moves
        assert run["rollouts_with_signal"] == 0
        assert run["before"]["second"] == run["after"]["second"] and run["before"]["shown"] == run["after"]["shown"]
        assert all(s["reflection"] for s in run["before"]["shown"])  # reflections were written
    v = results["verdict"]
    assert v["outcome"] == "inconclusive" and "retries can succeed" in v["reason"]
    second = [np.array(r["after"]["second"]) - np.array(r["before"]["second"]) for r in per_seed]
    assert v["effect"] == pytest.approx(float(np.mean(second)))
    report = (tmp_path / "report.md").read_text()
    assert "**Verdict: inconclusive.**" in report and "McNemar" in report
    assert (tmp_path / "first_second.png").exists() and (tmp_path / "seeds.png").exists()
