"""The intermediate-answers experiment at smoke size (a tiny random model stands in for
SmolLM2): its verdict recomputed from the per-problem scores."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "intermediate_answers.py")


@pytest.mark.slow
def test_smoke_verdict_from_its_rows(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "n_problems=4", "max_new_tokens=4"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["intermediate_answers"]
    for r in runs:
        assert r["changed"] == int(np.sum(np.array(r["inter_scores"]) != np.array(r["last_scores"])))
        assert r["inter_tokens"] >= r["last_tokens"]  # the trace plus its continuations
    v = results["verdict"]
    effect = np.mean([np.subtract(r["inter_scores"], r["last_scores"]) for r in runs])
    assert v["effect"] == pytest.approx(effect) and v["low"] <= effect <= v["high"]
    greedy = np.mean([r["greedy_scores"] for r in runs])
    assert v["preconditions"][0]["passed"] == (0.2 <= greedy <= 0.6)
    if not v["preconditions"][0]["passed"]:
        assert v["outcome"] == "inconclusive"


def test_config_is_checked():
    exp = cli.load_experiment(EXPERIMENT)
    with pytest.raises(ValueError, match="inter_points"):
        exp.Config(inter_points=1)
