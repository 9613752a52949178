"""The leaderboard-illusion simulation at smoke size: paired arenas, the verdict recomputed from
the per-seed inflations, the precondition from the even arena, and the plot."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "leaderboard_illusion.py")


@pytest.mark.slow
def test_smoke_run_gives_a_verdict_recomputable_from_its_arenas(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "replications=2", "rank_replications=1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["leaderboard_illusion"]
    assert [len(run["inflation"]["10"]) for run in runs] == [2, 2]
    assert runs[0]["inflation"]["1"] != runs[1]["inflation"]["1"]  # seeds draw different arenas
    many = np.array([run["inflation"]["10"] for run in runs])
    one = np.array([run["inflation"]["1"] for run in runs])
    v = results["verdict"]
    expected = stats.paired_bootstrap_interval(many, one)
    assert v["effect"] == pytest.approx(expected["effect"]) and v["low"] == pytest.approx(expected["low"])
    tau_even = np.mean([np.mean(run["tau"]["even"]) for run in runs])
    pre = [p for p in v["preconditions"] if p["name"] == "the fit orders an evenly sampled arena"][0]
    assert pre["passed"] == (tau_even >= 0.8)
    assert all(-1.0 <= t <= 1.0 for run in runs for ts in run["tau"].values() for t in ts)
    assert (tmp_path / "leaderboard_illusion" / "seed0" / "leaderboard.png").exists()


def test_a_grid_without_the_claimed_n_is_refused():
    exp = cli.load_experiment(EXPERIMENT)
    with pytest.raises(ValueError, match="must include 1 and 10"):
        exp.Config(n_variants=(1, 5))
