"""The FAN extrapolation experiment at a reduced smoke size: matched parameter counts, the
verdict's preconditions and effect computed from the per-seed rows, and the plot."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "fan_periodic.py")


@pytest.mark.slow
def test_smoke_run_reports_matched_networks_and_a_verdict_from_its_rows(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "steps=100", "n_train=128", "n_test=128", "targets=sin"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["fan_periodic"]
    assert len(runs) == 2 and [r["target"] for r in runs[0]["rows"]] == ["sin"]
    for run in runs:
        row = run["rows"][0]
        assert abs(row["params_fan"] - row["params_mlp"]) <= 0.1 * row["params_mlp"]
        assert row["log_ratio"] == pytest.approx(np.log(row["test_mse_mlp"]) - np.log(row["test_mse_fan"]))
    assert runs[0]["rows"][0]["test_mse_mlp"] != runs[1]["rows"][0]["test_mse_mlp"]  # seeds differ
    v = results["verdict"]
    effect = np.mean([run["rows"][0]["log_ratio"] for run in runs])
    assert v["effect"] == pytest.approx(effect) and v["low"] <= effect <= v["high"]
    worst = max(max(r["train_mse_mlp"], r["train_mse_fan"]) / r["train_variance"]
                for run in runs for r in run["rows"])
    fits = [p for p in v["preconditions"] if p["name"] == "both networks fit the training interval"][0]
    assert fits["passed"] == (worst < 0.05)
    if not fits["passed"]:
        assert v["outcome"] == "inconclusive"
    assert (tmp_path / "fan_periodic" / "seed1" / "fan_periodic.png").exists()


def test_unknown_targets_are_refused():
    from jaxlab.cli import load_experiment

    exp = load_experiment(EXPERIMENT)
    with pytest.raises(ValueError, match="non-empty subset"):
        exp.Config(targets=("square",))
