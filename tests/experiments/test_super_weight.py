"""The super-weight experiment at smoke size: the planted weight is found from the probe, the
arms' losses and the verdict are recomputable from the per-row losses, RTN covers every setting."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "super_weight.py")


@pytest.mark.slow
def test_smoke_run_finds_the_planted_weight_and_recomputes_its_verdict(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "bits=4", "blocks=64"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["super_weight"]
    for run in runs:
        sw = run["super_weight"]
        assert (sw["layer"], sw["row"], sw["col"], sw["value"]) == (1, 7, 3, 40.0)
        assert run["spike_ratio"] >= 10.0
        assert run["super_zeroed_loss"] == pytest.approx(np.mean(run["row_losses"]["super_zeroed"]))
        assert [(r["bits"], r["block"], r["super_weight_held_out"]) for r in run["rtn"]] == [(4, 64, False), (4, 64, True)]
    assert runs[0]["row_losses"]["base"] != runs[1]["row_losses"]["base"]  # seeds draw different rows
    sup = np.array([run["row_losses"]["super_zeroed"] for run in runs])
    others = np.array([run["row_losses"]["others_zeroed"] for run in runs])
    v = results["verdict"]
    assert v["effect"] == pytest.approx(stats.paired_bootstrap_interval(sup, others)["effect"])
    # a random model does not predict text: the verdict must not be read as a result
    assert v["outcome"] == "inconclusive" and "predicts text" in v["reason"]
    assert (tmp_path / "super_weight" / "seed0" / "super_weight.png").exists()


def test_block_sizes_that_do_not_divide_d_model_are_refused(tmp_path):
    with pytest.raises(ValueError, match="do not divide d_model"):
        cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                  "--set", "blocks=48"])
