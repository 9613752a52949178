"""experiments/sft_memorizes_rl_generalizes.py: the smoke preset end to end (compute-matched
arms from one warm start, the OOD rule variant, a verdict that is inconclusive by its
precondition on a tiny model that learns nothing in a few steps), and the three-way verdict
on hand-made per-problem results."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment
from jaxlab.rl.compute import matched_sft_steps

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "sft_memorizes_rl_generalizes.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_preset_compute_matched_and_inconclusive(tmp_path):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (r,) = results["runs"]["sft_memorizes_rl_generalizes"]
    # SFT's steps are RL's compute in SFT steps: 2 RL steps of 2 x 4 rows x W columns
    # (rows: the longest byte prompt of a 3-4 card hand, ~100 bytes, and 6 new tokens, rounded up to 8)
    assert r["rl_steps"] == 2 and r["rl_width"] % 8 == 0 and r["rl_width"] >= 100
    assert r["sft_steps"] == matched_sft_steps(2, rows=8, width=r["rl_width"], ppo_epochs=1, batch_size=8,
                                               seq_len=128, multiple_of=2)
    assert r["rl_step_flops"] / r["sft_step_flops"] == pytest.approx(8 * 8 * r["rl_width"] / (6 * 8 * 128))
    # equal compute up to the rounding to whole evaluation points (one point = one SFT step here)
    assert abs(r["sft_train_flops"] - r["rl_train_flops"]) <= r["sft_step_flops"]
    for arm in ("start", "sft", "rl"):
        for split, n in (("test", 16), ("ood", 16)):
            c = np.array(r[f"{arm}_{split}_correct"])
            assert c.shape == (n,) and set(c) <= {0, 1} and r[f"{arm}_{split}"] == pytest.approx(c.mean())
    for arm in ("sft", "rl"):
        assert [p[0] for p in r[f"{arm}_curve"]] == [0.0, r[f"{arm}_train_flops"] / 2, r[f"{arm}_train_flops"]]
        assert r[f"{arm}_curve"][-1][1:] == [r[f"{arm}_test"], r[f"{arm}_ood"]]
        assert r[f"{arm}_ood_gain"] == pytest.approx(r[f"{arm}_ood"] - r["start_ood"])
    assert r["rl_minus_sft_ood"] == pytest.approx(r["rl_ood"] - r["sft_ood"])
    v = results["verdict"]
    assert v["outcome"] == "inconclusive" and "precondition" in v["reason"]
    assert [p["name"] for p in v["preconditions"]] == ["both arms improve in distribution",
                                                       "the OOD split is off its floor for some model"]
    assert not all(p["passed"] for p in v["preconditions"])
    assert (tmp_path / "sft_memorizes_rl_generalizes" / "seed0" / "curves.png").stat().st_size > 0


def _run(start, sft, rl, *, start_ood=None, sft_ood, rl_ood, floor=0.05):
    P = len(start)
    return {"start_test_correct": start, "sft_test_correct": sft, "rl_test_correct": rl,
            "start_ood_correct": start_ood or [0] * P, "sft_ood_correct": sft_ood, "rl_ood_correct": rl_ood,
            "ood_floor": floor}


def test_verdict_three_ways(experiment):
    rng = np.random.default_rng(0)
    P = 300
    start = [list((rng.random(P) < 0.2).astype(int)) for _ in range(3)]
    better = [list(np.maximum(s, (rng.random(P) < 0.6).astype(int))) for s in start]  # ID gains
    half = [list((rng.random(P) < 0.5).astype(int)) for _ in range(3)]
    zeros = [0] * P

    def verdict(sft_ood, rl_ood, sft=better, rl=better):
        return experiment.claim_verdict({"v": [
            _run(start[k], sft[k], rl[k], sft_ood=sft_ood[k], rl_ood=rl_ood[k]) for k in range(3)]})

    held = verdict([zeros] * 3, half)
    assert held.outcome == "held" and held.low > 0 and all(p for _, p, _ in held.preconditions)
    not_held = verdict(half, [zeros] * 3)
    assert not_held.outcome == "not held" and not_held.high < 0
    same = verdict(half, [list(rng.permutation(h)) for h in half])
    assert same.outcome == "inconclusive" and same.low < 0 < same.high
    # RL beats SFT out of distribution, but SFT did not learn the task: no verdict
    no_id = verdict([zeros] * 3, half, sft=start)
    assert no_id.outcome == "inconclusive" and "improve in distribution" in no_id.reason
    # every model at 0 out of distribution: 0 against 0 is no evidence
    floor = verdict([zeros] * 3, [zeros] * 3)
    assert floor.outcome == "inconclusive" and "off its floor" in floor.reason


def test_paper_preset_is_the_fair_setting_and_listed_for_the_gpu(experiment):
    from jaxlab import claims
    from jaxlab.config import apply_overrides

    cfg = apply_overrides(experiment.get_config(), claims.preset_overrides(experiment, "paper"))
    assert cfg.model == "smollm2-135m-instruct" and cfg.n_test >= 500 and cfg.n_ood >= 500
    assert cfg.rl.loop.steps % cfg.n_points == 0 and cfg.rl.advantage == "grpo" and cfg.rl.kl_coef == 0
    script = (EXPERIMENT.parents[1] / "scripts" / "gpu_claims.sh").read_text()
    assert ('jaxlab run experiments/sft_memorizes_rl_generalizes.py --workdir "$OUT/sft_memorizes_rl_generalizes" '
            '--preset paper --seeds 3 --publish') in script
