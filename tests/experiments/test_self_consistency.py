"""The self-consistency experiment at smoke size (a tiny random model stands in for SmolLM2):
its verdict's effect and precondition recomputed from the per-seed, per-problem scores."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "self_consistency.py")


@pytest.mark.slow
def test_smoke_verdict_from_its_rows(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "n_problems=4", "max_new_tokens=4"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["self_consistency"]
    assert len(runs) == 2 and all(len(r["vote_scores"]) == len(r["greedy_scores"]) == 4 for r in runs)
    for r in runs:
        assert r["vote_accuracy"] == pytest.approx(np.mean(r["vote_scores"]))
        assert r["greedy_accuracy"] == pytest.approx(np.mean(r["greedy_scores"]))
        assert [p["k"] for p in r["points"]["vote"]] == [1, 2, 4] and r["points"]["greedy"][0]["k"] == 1
        # a vote over more samples costs more tokens; greedy one completion of at most 4 tokens
        tokens = [p["tokens"] for p in r["points"]["vote"]]
        assert tokens == sorted(tokens) and 1 <= r["greedy_tokens"] <= 4
        assert r["bon_accuracy"] >= r["vote_accuracy"]  # the oracle picks a right sample whenever one exists
    v = results["verdict"]
    effect = np.mean([np.subtract(r["vote_scores"], r["greedy_scores"]) for r in runs])
    assert v["effect"] == pytest.approx(effect) and v["low"] <= effect <= v["high"]
    greedy = np.mean([r["greedy_scores"] for r in runs])
    assert v["preconditions"][0]["passed"] == (0.2 <= greedy <= 0.6)
    if not v["preconditions"][0]["passed"]:
        assert v["outcome"] == "inconclusive"
    assert (tmp_path / "self_consistency" / "seed1" / "ttc" / "accuracy_vs_tokens.png").exists()


def test_config_is_checked():
    exp = cli.load_experiment(EXPERIMENT)
    with pytest.raises(ValueError, match="budget"):
        exp.Config(budget=1)
