"""The selective-copying experiment at smoke size: both variants train on the same task, the
test sets of a seed are shared (paired), and the verdict is recomputed from the per-sequence rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "mamba_selectivity.py")


@pytest.mark.slow
def test_smoke_run_pairs_the_variants_and_recomputes_its_verdict(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", "steps=12", "n_test=32", "n_layers=1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]
    sel, lti = runs["selective"], runs["time_invariant"]
    assert [r["selective"] for r in sel] == [True] and [r["selective"] for r in lti] == [False]
    assert lti[0]["params"] < sel[0]["params"]  # no x_proj / dt_proj kernel in the time-invariant model
    for run in sel + lti:
        assert len(run["per_sequence_accuracy"]) == 32
        assert run["accuracy"] == pytest.approx(np.mean(run["per_sequence_accuracy"]))
        assert all(v in (0.0, 0.25, 0.5, 0.75, 1.0) for v in run["per_sequence_accuracy"])  # 4 answer tokens
    v = results["verdict"]
    effect = np.mean(np.asarray([r["per_sequence_accuracy"] for r in sel])
                     - np.asarray([r["per_sequence_accuracy"] for r in lti]))
    assert v["effect"] == pytest.approx(effect) and v["low"] <= effect <= v["high"]
    assert v["threshold"] == 0.3
    solved = np.mean([r["accuracy"] for r in sel])
    assert v["preconditions"][0]["passed"] == (solved >= 0.9)
    if solved < 0.9:
        assert v["outcome"] == "inconclusive"
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_sizes_are_refused():
    from jaxlab.cli import load_experiment

    exp = load_experiment(EXPERIMENT)
    with pytest.raises(ValueError, match="n_data"):
        exp.Config(context=4, n_data=5)
