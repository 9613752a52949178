"""The layer-pruning experiment at its smoke preset: per-seed runs, a three-way verdict whose
precondition fails honestly on a random model, and the plots."""

import json
from pathlib import Path

from jaxlab import cli

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "layer_pruning.py")


def test_smoke_preset_reports_an_inconclusive_verdict_on_a_random_model(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    run0 = results["runs"]["layer_pruning"][0]
    assert [r["n"] for r in run0["rows"]] == [1, 2, 3, 4]  # half of 8 layers
    assert all(0 <= r["angular_block"] <= 8 - r["n"] for r in run0["rows"])
    v = results["verdict"]
    # a random byte model does not predict text better than uniform: the claim cannot be judged
    assert v["outcome"] == "inconclusive" and "predicts text" in v["reason"]
    assert (tmp_path / "layer_pruning" / "seed1" / "pruning.png").exists()
    assert "**Verdict: inconclusive.**" in (tmp_path / "report.md").read_text()
