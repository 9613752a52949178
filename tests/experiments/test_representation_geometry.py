"""The representation-geometry experiment: the claim's peak effect on planted trajectories, the
held-out rows come from the validation split, and the smoke run recomputes its verdict from the
per-seed trajectories."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "representation_geometry.py")


@pytest.fixture(scope="module")
def exp():
    return cli.load_experiment(EXPERIMENT)


def test_peak_effect_of_planted_trajectories(exp):
    steps = [0, 50, 100, 150, 200, 250]
    # collapse before the warm-up (ignored), then rise to 30 and fall to 20: min(30/15, 30/20) - 1
    assert exp.peak_effect(steps, [90, 10, 15, 30, 25, 20], warmup=100) == (pytest.approx(0.5), 150)
    # monotone growth has no interior maximum above the last point
    effect, _ = exp.peak_effect(steps, [90, 10, 15, 20, 25, 30], warmup=100)
    assert effect == pytest.approx(25 / 30 - 1)
    assert np.isnan(exp.peak_effect(steps, [1, 2, 3, 4, 5, 6], warmup=200)[0])  # only 3 points: c_1, one, c_n
    assert exp.peak_effect(steps, [1, 2, 3, 4, 5, 6], warmup=250)[1] is None
    assert exp.warmup_steps(600) == 100 and exp.warmup_steps(24) == 4


def test_geometry_rows_are_held_out_validation_text(exp):
    from jaxlab.data.corpus import default_documents, split_chunks

    train, validation = split_chunks(default_documents())
    rows = exp.validation_rows(4, 64, seed=0)
    text = "\n\n".join(validation).encode()
    assert rows.shape == (4, 64)
    for row in rows:
        assert bytes(row.tolist()) in text
    with pytest.raises(ValueError, match="divide steps"):
        exp.Config(steps=10, checkpoint_every=3)


@pytest.mark.slow
def test_smoke_run_recomputes_its_verdict_from_the_trajectories(tmp_path, exp):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", "steps=8", "checkpoint_every=2", "n_rows=4"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["representation_geometry"]
    for run in runs:
        assert run["steps"] == [0, 2, 4, 6, 8] and run["warmup_steps"] == exp.warmup_steps(8) == 1
        rankme = [p["rankme"] for p in run["points"]]
        assert all(1.0 <= r <= 32 for r in rankme) and len(run["points"][0]["rankme_layers"]) == 3
        assert (run["peak_effect"], run["peak_step"]) == pytest.approx(exp.peak_effect(run["steps"], rankme, 1))
        assert run["points"][-1]["loss"] < run["points"][0]["loss"]  # it trains
    effects = [r["peak_effect"] for r in runs]
    v = results["verdict"]
    assert v["effect"] == pytest.approx(np.mean(effects)) and v["threshold"] == 0.05
    assert v["low"] == v["high"] == pytest.approx(np.mean(effects))  # one seed: no interval
    assert v["outcome"] == "inconclusive" and "2 seeds" in v["reason"]
    assert (tmp_path / "representation_geometry" / "seed0" / "geometry.png").exists()

    # the finished pre-training run is only read when asked for again (shared bases stay as they are)
    from jaxlab.train.checkpoint import load_params
    from jaxlab.train.loop import pretrain_byte_model

    model_dir = tmp_path / "representation_geometry" / "seed0" / "byte_model"
    stamps = {f: f.stat().st_mtime_ns for f in model_dir.rglob("*") if f.is_file()}
    cfg = exp.Config(**{**exp.PRESETS["smoke"], "steps": 8, "checkpoint_every": 2})
    params = pretrain_byte_model(model_dir, exp._model_config(cfg), steps=8, seed=0, progress=False)
    assert {f: f.stat().st_mtime_ns for f in model_dir.rglob("*") if f.is_file()} == stamps
    np.testing.assert_array_equal(params["embed"]["embedding"],
                                  load_params(model_dir, 8)[1]["embed"]["embedding"])
