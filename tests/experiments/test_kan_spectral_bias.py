"""The KAN spectral-bias experiment at a reduced smoke size: matched parameter counts, the
per-frequency residual curves, and the verdict recomputed from the per-seed rows."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "kan_spectral_bias.py")


@pytest.mark.slow
def test_smoke_run_reports_residual_curves_and_a_verdict_from_its_rows(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "steps=60", "log_every=20", "n_points=64", "freqs=1,4",
                     "mlp_width=16", "mlp_depth=2", "kan_intervals=8"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["kan_spectral_bias"]
    assert len(runs) == 2
    for run in runs:
        assert run["logged_steps"] == [0, 20, 40, 60]
        assert abs(run["params_kan"] - run["params_mlp"]) <= 0.1 * run["params_mlp"]
        for kind in ("mlp", "kan"):
            r_KF = np.array(run[f"residual_{kind}"])
            assert r_KF.shape == (4, 2) and np.all(r_KF >= 0)
            assert run[f"auc_top_{kind}"] == pytest.approx(r_KF[:, -1].mean())
            below = [s for s, r in zip(run["logged_steps"], r_KF[:, 1]) if r < 0.1]
            assert run[f"fit_step_f4_{kind}"] == (below[0] if below else None)
        assert run["log_auc_ratio"] == pytest.approx(math.log(run["auc_top_mlp"]) - math.log(run["auc_top_kan"]))
    assert runs[0]["residual_mlp"] != runs[1]["residual_mlp"]  # seeds differ
    v = results["verdict"]
    d = [run["log_auc_ratio"] for run in runs]
    low, high = stats.bootstrap_mean_interval(d)
    assert v["effect"] == pytest.approx(np.mean(d))
    assert v["low"] == pytest.approx(min(low, np.mean(d))) and v["high"] == pytest.approx(max(high, np.mean(d)))
    worst = max(max(run["residual_mlp"][-1][0], run["residual_kan"][-1][0]) for run in runs)
    fits = [p for p in v["preconditions"] if p["name"] == "both networks fit the lowest frequency"][0]
    assert fits["passed"] == (worst < 0.1)
    expected = ("inconclusive" if not all(p["passed"] for p in v["preconditions"]) or v["low"] <= 0 < v["high"]
                else "held" if v["low"] > 0 else "not held")
    assert v["outcome"] == expected
    assert (tmp_path / "kan_spectral_bias" / "seed1" / "kan_spectral_bias.png").exists()
    assert (tmp_path / "residual_over_steps.png").exists()


def test_target_holds_its_frequencies_and_bad_settings_are_refused():
    from jaxlab.cli import load_experiment

    exp = load_experiment(EXPERIMENT)
    cfg = exp.Config(freqs=(1, 3), n_points=32)
    x, y = exp.target(cfg, np.random.default_rng(0))
    assert x[0] == -1.0 and x[-1] == pytest.approx(1 - 2 / 32)
    spectrum = np.abs(np.fft.rfft(y)) / (32 / 2)   # unit sinusoids have |FFT| = N / 2
    np.testing.assert_allclose(spectrum[[1, 3]], [1, 1], atol=1e-9)
    assert np.all(np.delete(spectrum, [1, 3]) < 1e-9)
    assert exp.first_below(np.array([1.0, 0.5, 0.05, 0.2]), np.array([0, 10, 20, 30]), 0.1) == 20
    assert exp.first_below(np.array([1.0, 0.5]), np.array([0, 10]), 0.1) is None
    with pytest.raises(ValueError, match="Nyquist"):
        exp.Config(freqs=(1, 16), n_points=32)
    with pytest.raises(ValueError, match="increasing"):
        exp.Config(freqs=(4, 1))
    with pytest.raises(ValueError, match="log_every must divide"):
        exp.Config(steps=100, log_every=30)
