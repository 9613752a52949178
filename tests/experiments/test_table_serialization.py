"""experiments/table_serialization.py: the smoke preset end to end (a tiny random byte model),
the pairing of serialisations, the accuracy table and the verdict recomputed from the
per-problem rows, and the verdict's three ways on synthetic rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "table_serialization.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_run_pairs_serialisations_and_its_numbers_follow_from_its_rows(tmp_path, experiment):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "tasks=table_lookup,table_size", "n_problems=1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["table_serialization"]
    formats = ("markdown", "html", "csv", "json")
    problems = []
    for run in runs:
        by_format = {f: [(r["task"], r["index"], r["answer"]) for r in run["rows"] if r["format"] == f]
                     for f in formats}
        assert all(by_format[f] == by_format["html"] for f in formats)  # every serialisation, same problems
        assert len(by_format["html"]) == 2  # 2 tasks x 1 problem
        problems.append(by_format["html"])
        for task, accs in run["accuracy"].items():
            for f, acc in accs.items():
                sel = [r["correct"] for r in run["rows"] if r["task"] == task and r["format"] == f]
                assert acc == pytest.approx(np.mean(sel))
        for f in formats:
            sel = [r["correct"] for r in run["rows"] if r["format"] == f]
            assert run[f"accuracy_{f}"] == pytest.approx(np.mean(sel))
        assert all(r["well_formed"] >= r["correct"] for r in run["rows"])
    assert problems[0] != problems[1]  # the seed draws the problems
    pooled = {f: np.mean([r["correct"] for run in runs for r in run["rows"] if r["format"] == f]) for f in formats}
    other = max((f for f in formats if f != "html"), key=lambda f: (pooled[f], -formats.index(f)))
    v = results["verdict"]
    assert v["effect"] == pytest.approx(pooled["html"] - pooled[other]) and other in v["test"]
    formed = min(np.mean([r["well_formed"] for run in runs for r in run["rows"] if r["format"] == f]) for f in formats)
    assert v["preconditions"][0]["passed"] == (formed >= 0.5)
    assert v["outcome"] == "inconclusive"  # the random model solves nothing: precondition (2)
    assert (tmp_path / "heatmap.png").exists() and (tmp_path / "table_serialization" / "seed1" / "heatmap.png").exists()
    assert "| all tasks |" in (tmp_path / "report.md").read_text()


def _run(correct: dict, formed=1):
    """One seed's results with rows for task t of P problems, correct[f] a 0/1 list per format."""
    rows = [{"task": "table_size", "index": i, "answer": str(i), "format": f, "correct": c,
             "well_formed": max(c, formed)} for f, cs in correct.items() for i, c in enumerate(cs)]
    return {"rows": rows}


def test_verdict_three_ways(experiment):
    n = 40
    html, half = [1] * n, [1, 0] * (n // 2)
    held = experiment.claim_verdict({"x": [_run({"markdown": half, "html": html, "csv": [0] * n})] * 2})
    assert held.outcome == "held" and held.effect == pytest.approx(0.5) and "markdown" in held.test
    lost = experiment.claim_verdict({"x": [_run({"markdown": html, "html": [0] * n, "csv": half})] * 2})
    assert lost.outcome == "not held" and lost.effect == pytest.approx(-1.0) and "best overall: markdown" in lost.test
    malformed = experiment.claim_verdict({"x": [_run({"markdown": half, "html": html, "csv": [0] * n}, formed=0)]})
    assert malformed.outcome == "inconclusive" and "well formed" in malformed.reason


def test_unknown_serialisation_or_task_is_refused(experiment):
    with pytest.raises(ValueError, match="unknown serialisation"):
        experiment.Config(formats=("html", "yaml"))
    with pytest.raises(ValueError, match="unknown table task"):
        experiment.Config(tasks=("table_sise",))
    with pytest.raises(ValueError, match="cannot be serialised"):
        experiment.Config(tasks=("table_merged",))
    with pytest.raises(ValueError, match="compares html"):
        experiment.Config(formats=("markdown", "csv"))


def test_unpaired_rows_are_refused(experiment):
    run = _run({"markdown": [1, 0], "html": [1, 1]})
    run["rows"][0]["answer"] = "another problem"
    with pytest.raises(ValueError, match="saw other problems"):
        experiment.correct_by_format([run])
