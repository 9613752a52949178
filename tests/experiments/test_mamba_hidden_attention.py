"""The hidden-attention experiment at smoke size: the induction score of a map follows its
formula, and the verdict is recomputed from the per-sequence scores."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "mamba_hidden_attention.py")


def test_induction_score_of_ideal_and_uniform_maps():
    exp = load_experiment(EXPERIMENT)
    half = 4
    T = 2 * half - 1
    uniform = np.tril(np.ones((T, T)))
    uniform /= uniform.sum(1, keepdims=True)
    ideal = uniform.copy()
    for t in range(half, T):  # all mass on the position after the previous occurrence
        ideal[t] = 0.0
        ideal[t, t - half + 1] = 1.0
    scores = np.asarray(exp.induction_mass(jnp.asarray(np.stack([uniform, ideal]))[:, None], half))[:, 0]
    baseline = np.mean([1.0 / (t + 1) for t in range(half, T)])
    np.testing.assert_allclose(scores, [1.0, 1.0 / baseline], rtol=1e-6)


@pytest.mark.slow
def test_smoke_run_recomputes_its_verdict(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", "steps=8", "n_layers=1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["runs"]["mamba_hidden_attention"][0]
    assert len(run["mamba_per_sequence_score"]) == 16 and len(run["transformer_per_sequence_score"]) == 16
    assert run["mamba_score"] == pytest.approx(np.mean(run["mamba_per_sequence_score"]))
    assert 0 <= run["mamba_best_map"] < 32 and 0 <= run["transformer_best_map"] < 2  # 1 layer: E = 32, 2 heads
    v = results["verdict"]
    assert v["effect"] == pytest.approx(run["mamba_score"]) and v["low"] <= v["effect"] <= v["high"]
    assert v["threshold"] == 5.0
    solved = [p for p in v["preconditions"] if p["name"] == "the Mamba solves the task"][0]
    assert solved["passed"] == (run["mamba_accuracy"] >= 0.9)
    if not solved["passed"]:
        assert v["outcome"] == "inconclusive"
    assert (tmp_path / "mamba_hidden_attention" / "seed0" / "hidden_attention.png").exists()
