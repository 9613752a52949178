"""experiments/eva_init.py: the smoke preset end to end (losses logged at every step, EVA's
total rank equal to LoRA's, the verdict recomputed from the logged losses) and the verdict on
planted loss curves."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "eva_init.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_preset_recomputes_its_verdict(tmp_path, experiment):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (r,) = results["runs"]["eva_init"]
    assert r["lora_steps"] == r["eva_steps"] == [1, 2, 3, 4, 5, 6]  # every step logged
    # rank 2 on q, k, v, gate, up, down of 1 layer: 12 in all, re-allocated by EVA
    assert r["lora_total_rank"] == r["eva_total_rank"] == 12
    target = float(np.mean(r["lora_losses"][-1:]))  # 10% of 6 steps rounds to the last one
    assert r["target_loss"] == pytest.approx(target)
    v = experiment.claim_verdict(results["runs"])
    assert v.to_dict() == results["verdict"]
    assert v.outcome == "inconclusive" and "at least 2 seeds" in v.reason
    assert (tmp_path / "loss.png").stat().st_size > 0


def _seed(lora, eva):
    steps = list(range(1, len(lora) + 1))
    return {"lora_losses": list(lora), "lora_steps": steps, "eva_losses": list(eva), "eva_steps": steps,
            "lora_total_rank": 8, "eva_total_rank": 8}


def test_steps_to_target_known_answer(experiment):
    # a loss of 10 - 0.1 (t - 1) at step t: its trailing mean of 10 at step t >= 10 is
    # 10 - 0.1 (t - 5.5), and the mean of its last 10 of 100 steps (LoRA's target) is 0.55
    lora = 10 - 0.1 * np.arange(100)
    assert experiment.steps_to_target(lora, np.arange(1, 101), 0.55, 100) == 100
    assert experiment.steps_to_target(lora - 2.0, np.arange(1, 101), 0.55, 100) == 80
    assert experiment.steps_to_target(lora + 1.0, np.arange(1, 101), 0.55, 100) == 101  # never: steps + 1


def test_verdict_on_planted_curves(experiment):
    rng = np.random.default_rng(0)
    lora = [10 - 0.1 * np.arange(100) + rng.normal(0, 0.01, 100) for _ in range(4)]
    faster = [_seed(x, x - 2.0) for x in lora]  # EVA 20 steps ahead
    v = experiment.claim_verdict({"v": faster})
    assert v.outcome == "held" and v.effect == pytest.approx(20, abs=2)
    slower = [_seed(x, x + 2.0) for x in lora]  # EVA never reaches: counts as 101
    assert experiment.claim_verdict({"v": slower}).outcome == "not held"
    flat = [_seed(np.full(100, 5.0) + rng.normal(0, 0.01, 100), x) for x in lora]  # LoRA does not learn
    assert "LoRA learns" in experiment.claim_verdict({"v": flat}).reason
    bad_rank = [dict(s, eva_total_rank=7) for s in faster]
    assert "total rank" in experiment.claim_verdict({"v": bad_rank}).reason
