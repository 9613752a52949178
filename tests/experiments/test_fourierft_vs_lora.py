"""experiments/fourierft_vs_lora.py: the smoke preset end to end (matched counts, the verdict
recomputed from the per-problem results; inconclusive by precondition) and the three-way
verdict on hand-made results."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "fourierft_vs_lora.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_preset_recomputes_its_verdict(tmp_path, experiment):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (r,) = results["runs"]["fourierft_vs_lora"]
    # tiny model, LoRA rank 1 on q, o (32 x 32) and k, v (32 x 16): 64 + 64 + 48 + 48 = 224 = 4 x 56
    assert r["n_frequencies"] == 56 and r["lora_params"] == r["fourierft_params"] == 224
    for m in ("lora", "fourierft"):
        test = np.array(r[f"{m}_test_correct"])
        assert test.shape == (1, 16) and r[f"{m}_best_test_accuracy"] == pytest.approx(test[0].mean())
    v = experiment.claim_verdict(results["runs"])
    assert v.to_dict() == results["verdict"]
    assert v.outcome == "inconclusive" and "budgets matched" in v.reason  # 224 is under 1,000
    assert (tmp_path / "accuracy.png").stat().st_size > 0


def _seed(lora_test, four_test, base, params=(6144, 6144)):
    P = len(base)
    return {"lora_lrs": [1e-3, 1e-2], "fourierft_lrs": [1e-2, 1e-1],
            "lora_val_correct": [[0] * P, [1] * P], "lora_test_correct": [[0] * P, lora_test],
            "fourierft_val_correct": [[1] * P, [0] * P], "fourierft_test_correct": [four_test, [0] * P],
            "base_test_correct": base, "floor": 0.1, "lora_params": params[0], "fourierft_params": params[1]}


def test_verdict_three_ways(experiment):
    rng = np.random.default_rng(1)
    P = 300
    zeros = [0] * P
    lora = [rng.integers(0, 2, P).tolist() for _ in range(3)]  # about half right
    held = experiment.claim_verdict({"v": [_seed(x, x, zeros) for x in lora]})  # FourierFT = LoRA
    assert held.outcome == "held" and held.effect == 0.0 and held.low > -0.05
    assert "LoRA 0.01, FourierFT 0.01" in held.test
    not_held = experiment.claim_verdict({"v": [_seed(x, zeros, zeros) for x in lora]})
    assert not_held.outcome == "not held" and not_held.high <= -0.05
    # FourierFT right on a random 45% where LoRA gets ~50%: the interval straddles -0.05
    near = [_seed(x, (rng.random(P) < 0.45).astype(int).tolist(), zeros) for x in lora]
    mid = experiment.claim_verdict({"v": near})
    assert mid.low < -0.05 < mid.high and mid.outcome == "inconclusive"
    unmatched = experiment.claim_verdict({"v": [_seed(x, x, zeros, params=(6144, 7000)) for x in lora]})
    assert unmatched.outcome == "inconclusive" and "budgets matched" in unmatched.reason
    untuned = experiment.claim_verdict({"v": [_seed(x, x, x) for x in lora]})  # the base already as good
    assert untuned.outcome == "inconclusive" and "fine-tuning learns" in untuned.reason
