"""experiments/dpo_likelihood_displacement.py: the smoke preset end to end (CHES ranks the pairs,
three DPO arms train, the verdict follows its interval and preconditions, a finished seed is
read back), the three-way verdict on made-up runs, and the pairs."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "dpo_likelihood_displacement.py"


@pytest.fixture(scope="module")
def experiment():
    return cli.load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_preset(tmp_path):
    args = ["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
            "--seeds", "2"]
    assert cli.main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["dpo_likelihood_displacement"]
    assert len(runs) == 2
    for r in runs:
        assert r["n_pairs"] == 128 and r["arm_size"] == 32 and r["n_heldout"] == 32
        for arm in ("top", "bottom", "random"):
            assert len(r[f"pair_displacement_{arm}"]) == 32
            assert len(r[f"heldout_pair_displacement_{arm}"]) == 32
            assert r[f"displacement_{arm}"] == pytest.approx(np.mean(r[f"pair_displacement_{arm}"]))
            assert r[f"curve_{arm}"][-1]["step"] == 40
        # the arms are what CHES selected, and CHES tells look-alike pairs from letter spellings
        assert r["ches_top"] > r["ches_random"] > r["ches_bottom"]
        assert r["ches_near_mean"] > r["ches_far_mean"]
        assert r["near_share_top"] > r["near_share_bottom"]
        # the set-up worked: SFT fitted both responses, DPO widened every arm's margin
        assert min(r["ref_chosen_logp_per_token"], r["ref_rejected_logp_per_token"]) > -1.0
        assert r["margin_gain_min"] > 0
    v = results["verdict"]
    effect = np.mean([r["displacement_top"] - r["displacement_bottom"] for r in runs])
    assert v["effect"] == pytest.approx(effect)
    assert v["low"] <= v["effect"] <= v["high"]
    assert all(p["passed"] for p in v["preconditions"])
    expected = "held" if v["low"] > 0 else "not held" if v["high"] <= 0 else "inconclusive"
    assert v["outcome"] == expected
    report = (tmp_path / "report.md").read_text()
    assert f"**Verdict: {v['outcome']}.**" in report and "top - random" in report
    for k in (0, 1):
        assert (tmp_path / "dpo_likelihood_displacement" / f"seed{k}" / "displacement.png").exists()
    assert (tmp_path / "arms.png").exists()
    # a finished seed is read back, not trained again
    assert cli.main(args) == 0
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["verdict"] == v and again["runs"] == results["runs"]


def _seed(top, bottom, *, margin=5.0, ref=-0.5):
    return {"pair_displacement_top": list(top), "pair_displacement_bottom": list(bottom),
            "margin_gain_min": margin, "ref_chosen_logp_per_token": ref, "ref_rejected_logp_per_token": ref}


def test_claim_verdict_three_ways(experiment):
    rng = np.random.default_rng(0)
    noise = lambda: rng.normal(0.0, 0.5, 40)  # noqa: E731
    held = experiment.claim_verdict({"v": [_seed(3 + noise(), noise()), _seed(2 + noise(), noise())]})
    assert held.outcome == "held" and held.low > 0
    not_held = experiment.claim_verdict({"v": [_seed(noise() - 2, noise()), _seed(noise() - 3, noise())]})
    assert not_held.outcome == "not held" and not_held.high <= 0
    mixed = experiment.claim_verdict({"v": [_seed(3 + noise(), noise()), _seed(noise() - 3, noise())]})
    assert mixed.outcome == "inconclusive" and "threshold" in mixed.reason
    no_training = experiment.claim_verdict({"v": [_seed(3 + noise(), noise(), margin=-0.1)]})
    assert no_training.outcome == "inconclusive" and "DPO trained" in no_training.reason
    no_sft = experiment.claim_verdict({"v": [_seed(3 + noise(), noise(), ref=-2.0)]})
    assert no_sft.outcome == "inconclusive" and "reference learned" in no_sft.reason


def test_pairs(experiment):
    pool, heldout = experiment.make_pairs((1, 2), 20, 10, seed=0)
    assert len(pool) == 20 and len(heldout) == 10
    assert not {p["prompt"] for p in pool} & {p["prompt"] for p in heldout}
    for i, p in enumerate(pool):
        a, b = p["prompt"].rstrip("=").split("+")
        assert int(p["chosen"]) == int(a) + int(b)
        if i % 2 == 0:
            assert p["kind"] == "near" and int(p["rejected"]) == int(p["chosen"]) + 1
        else:
            assert p["kind"] == "far" and p["rejected"] == "".join("abcdefghij"[int(c)] for c in p["chosen"])
