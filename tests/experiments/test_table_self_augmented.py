"""experiments/table_self_augmented.py: the smoke preset end to end (a tiny random byte model),
both arms on the same problems, the summary and the verdict recomputed from the per-problem
rows, and the verdict's three ways on synthetic rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "table_self_augmented.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_run_scores_both_arms_on_the_same_problems(tmp_path, experiment):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "tasks=table_size,table_merged"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["table_self_augmented"]
    assert [[(r["task"], r["index"]) for r in run["rows"]] for run in runs] == [
        [("table_size", 0), ("table_size", 1), ("table_merged", 0), ("table_merged", 1)]] * 2
    assert runs[0]["rows"][0]["answer"] != runs[1]["rows"][0]["answer"] or \
        runs[0]["rows"][2]["answer"] != runs[1]["rows"][2]["answer"]  # the seed draws the problems
    for run in runs:
        for arm in ("direct", "self_augmented"):
            assert run[f"{arm}_accuracy"] == pytest.approx(np.mean([r[f"{arm}_correct"] for r in run["rows"]]))
        assert run["self_augmented_minus_direct"] == pytest.approx(
            run["self_augmented_accuracy"] - run["direct_accuracy"])
        assert all(isinstance(r["description"], str) for r in run["rows"])
    diff = np.mean([r["self_augmented_correct"] - r["direct_correct"] for run in runs for r in run["rows"]])
    v = results["verdict"]
    assert v["effect"] == pytest.approx(diff) and v["low"] <= diff <= v["high"]
    assert v["outcome"] == "inconclusive"  # the random model solves nothing: precondition (2)
    assert (tmp_path / "arms.png").exists()


def _run(sa, direct, formed=1):
    return {"rows": [{"task": "table_size", "index": i, "self_augmented_correct": a, "direct_correct": b,
                      "self_augmented_well_formed": max(a, formed), "direct_well_formed": max(b, formed)}
                     for i, (a, b) in enumerate(zip(sa, direct))]}


def test_verdict_three_ways(experiment):
    n = 40
    ones, half, zeros = [1] * n, [1, 0] * (n // 2), [0] * n
    held = experiment.claim_verdict({"x": [_run(ones, half)] * 2})
    assert held.outcome == "held" and held.effect == pytest.approx(0.5) and "McNemar" in held.test
    assert experiment.claim_verdict({"x": [_run(zeros, half)] * 2}).outcome == "not held"
    malformed = experiment.claim_verdict({"x": [_run(half, zeros, formed=0)]})  # direct: 0 well formed
    assert malformed.outcome == "inconclusive" and "well formed" in malformed.reason


def test_unknown_serialisation_or_task_is_refused(experiment):
    with pytest.raises(ValueError, match="unknown serialisation"):
        experiment.Config(fmt="latex")
    with pytest.raises(ValueError, match="unknown table task"):
        experiment.Config(tasks=("table_lookup", "table_sum"))
    with pytest.raises(ValueError, match="cannot be serialised"):
        experiment.Config(fmt="csv")  # merged cells need html
