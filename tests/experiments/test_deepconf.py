"""The DeepConf experiment at smoke size (a tiny random model stands in for SmolLM2): its two
effects (accuracy against the vote, saved token share) recomputed from the per-problem rows,
and the combined verdict's rule."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "deepconf.py")


def _runs(dc, vote, dc_tokens, vote_tokens, greedy):
    return {"deepconf": [{"deepconf_scores": dc, "vote_scores": vote, "deepconf_token_counts": dc_tokens,
                          "vote_token_counts": vote_tokens, "greedy_scores": greedy}]}


@pytest.mark.slow
def test_smoke_verdict_from_its_rows(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "n_problems=4", "max_new_tokens=4"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["deepconf"]
    for r in runs:
        # early stopping never costs more tokens than the full vote, problem by problem
        assert all(d <= v for d, v in zip(r["deepconf_token_counts"], r["vote_token_counts"], strict=True))
        assert r["deepconf_tokens"] == pytest.approx(np.mean(r["deepconf_token_counts"]))
        assert r["deepconf_accuracy"] == pytest.approx(np.mean(r["deepconf_scores"]))
    v = results["verdict"]
    effect = np.mean([np.subtract(r["deepconf_scores"], r["vote_scores"]) for r in runs])
    assert v["effect"] == pytest.approx(effect) and v["threshold"] == -0.05
    greedy = np.mean([r["greedy_scores"] for r in runs])
    assert v["preconditions"][0]["passed"] == (0.2 <= greedy <= 0.6)
    if not v["preconditions"][0]["passed"]:
        assert v["outcome"] == "inconclusive"


def test_combined_verdict_rule():
    exp = cli.load_experiment(EXPERIMENT)
    ones, greedy = [1.0] * 20, [1.0] * 8 + [0.0] * 12   # greedy accuracy 0.4
    # same accuracy, half the tokens on every problem: both parts held
    v = exp.claim_verdict(_runs(ones, ones, [5] * 20, [10] * 20, greedy))
    assert v.outcome == "held" and v.effect == 0.0
    # same accuracy, no tokens saved: the token part is not held
    v = exp.claim_verdict(_runs(ones, ones, [10] * 20, [10] * 20, greedy))
    assert v.outcome == "not held" and "token part not held" in v.reason
    # every answer lost: the accuracy part is not held
    v = exp.claim_verdict(_runs([0.0] * 20, ones, [5] * 20, [10] * 20, greedy))
    assert v.outcome == "not held" and v.effect == -1.0
    # greedy accuracy outside [0.2, 0.6]: inconclusive whatever the effects
    v = exp.claim_verdict(_runs(ones, ones, [5] * 20, [10] * 20, ones))
    assert v.outcome == "inconclusive" and "precondition" in v.reason
    with pytest.raises(ValueError, match="warmup"):
        exp.Config(budget=4, warmup=4)
