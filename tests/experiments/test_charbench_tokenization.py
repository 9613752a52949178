"""experiments/charbench_tokenization.py: the smoke preset end to end (tiny models), its
numbers and verdict recomputed from the per-example rows, and the verdict's three ways on
synthetic rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.analysis.characters import point_biserial
from jaxlab.cli import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "charbench_tokenization.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_run_and_its_numbers_follow_from_its_rows(tmp_path, experiment):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", "n_examples=4", "byte_steps=2", "n_train=8"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["charbench_tokenization"]
    for run in runs:
        for label in ("model", "byte"):
            for task in ("char_count", "char_locate"):
                sel = [r for r in run["rows"] if r["model"] == label and r["task"] == task]
                assert len(sel) == 4 and run[f"accuracy_{label}_{task}"] == pytest.approx(np.mean([r["correct"] for r in sel]))
        locate = [r for r in run["rows"] if r["task"] == "char_locate"]
        assert all(r["token_len"] == 1 for r in locate)  # the stand-in and the byte model read bytes
        assert all(r["word"][r["position"] - 1] == r["letter"] for r in locate)
        assert all(r["well_formed"] >= r["correct"] for r in run["rows"])
    seed1 = experiment.tasks(experiment.Config(seed=1))["char_locate"].splits(1, 8, 4, 0)["test"]
    assert [e.meta["word"] for e in seed1] != [r["word"] for r in locate if r["model"] == "model"]  # seeds differ
    v = results["verdict"]
    assert v["outcome"] == "inconclusive" and v["direction"] == "less"
    assert {p["name"]: p["passed"] for p in v["preconditions"]}["token lengths vary"] is False
    assert experiment.claim_verdict({"x": runs}).to_dict() == v
    assert (tmp_path / "token_length.png").exists()
    assert "| token length (chars) |" in (tmp_path / "report.md").read_text()


def _seed(lengths, correct, answers=None):
    rows = [{"model": "model", "task": "char_locate", "token_len": n, "correct": c,
             "answer": str(a)} for n, c, a in zip(lengths, correct, range(len(lengths)) if answers is None else answers)]
    return {"rows": rows + [{"model": "byte", "task": "char_locate", "token_len": 1, "correct": 1, "answer": "1"}]}


def test_verdict_three_ways(experiment):
    rng = np.random.default_rng(0)
    lengths = [rng.integers(1, 8, size=120) for _ in range(2)]
    neg = [(rng.random(120) < np.where(x <= 3, 0.9, 0.1)).astype(int) for x in lengths]
    held = experiment.claim_verdict({"x": [_seed(x, c) for x, c in zip(lengths, neg)]})
    assert held.outcome == "held" and held.high < 0
    assert held.effect == pytest.approx(point_biserial(np.concatenate(lengths), np.concatenate(neg)))
    pos = [1 - c for c in neg]
    assert experiment.claim_verdict({"x": [_seed(x, c) for x, c in zip(lengths, pos)]}).outcome == "not held"
    # a model that always answers "1": right exactly on position-1 targets, at the constant-guess floor
    answers = [rng.integers(1, 3, size=120) for _ in range(2)]
    floor = experiment.claim_verdict({"x": [_seed(x, (a == 1).astype(int), a) for x, a in zip(lengths, answers)]})
    assert floor.outcome == "inconclusive" and "constant-guess floor" in floor.reason
    dead = experiment.claim_verdict({"x": [_seed(x, np.zeros(120, int)) for x in lengths]})
    assert dead.outcome == "inconclusive" and dead.effect == 0.0


def test_bad_settings_are_refused(experiment):
    with pytest.raises(ValueError, match="byte_model"):
        experiment.Config(byte_model="huge")
    with pytest.raises(ValueError, match="n_examples >= 2"):
        experiment.Config(n_examples=1)
