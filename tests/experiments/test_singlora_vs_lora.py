"""experiments/singlora_vs_lora.py: the smoke preset end to end (a random byte model at the
floor: inconclusive by precondition, with the verdict recomputed from the per-problem results),
and both verdicts on hand-made results."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "singlora_vs_lora.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_preset_recomputes_its_verdict(tmp_path, experiment):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (r,) = results["runs"]["singlora_vs_lora"]
    assert r["lrs"] == [1e-2]
    for m in ("lora", "singlora"):
        test, val = np.array(r[f"{m}_test_correct"]), np.array(r[f"{m}_val_correct"])
        assert test.shape == (1, 16) and val.shape == (1, 16) and set(test.ravel()) <= {0, 1}
        assert r[f"{m}_test_accuracy"] == pytest.approx(test.mean(axis=1).tolist())
        best = int(np.argmax(val.mean(axis=1)))
        assert r[f"{m}_best_test_accuracy"] == pytest.approx(test[best].mean())
    # the tiny model's q and o are square, k and v 32 x 16: SingLoRA keeps 256 of LoRA's 448
    assert (r["lora_params"], r["singlora_params"]) == (448, 256)
    v = experiment.claim_verdict(results["runs"])
    assert v.to_dict() == results["verdict"]
    assert v.outcome == "inconclusive" and "fine-tuning learns" in v.reason  # LoRA at the floor
    assert "Part (b)" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "sweep.png").stat().st_size > 0


def _seed(lora_val, lora_test, sing_val, sing_test, base, floor=0.1, params=(100, 50)):
    return {"lrs": [1e-3, 1e-2, 1e-1], "lora_val_correct": lora_val, "lora_test_correct": lora_test,
            "singlora_val_correct": sing_val, "singlora_test_correct": sing_test, "base_test_correct": base,
            "floor": floor, "lora_params": params[0], "singlora_params": params[1]}


def test_verdicts_on_planted_results(experiment):
    rng = np.random.default_rng(0)
    P = 200
    half = lambda: rng.integers(0, 2, P).tolist()  # noqa: E731  about 0.5 right
    zeros, ones = [0] * P, [1] * P
    # LoRA: best at rate 1 (validation), about half right there; SingLoRA right everywhere at rate 2
    runs = [_seed([zeros, ones, zeros], [zeros, half(), zeros], [zeros, zeros, ones], [zeros, zeros, ones], zeros)
            for _ in range(3)]
    v = experiment.claim_verdict({"v": runs})
    assert v.outcome == "held" and v.low > -0.05 and v.effect == pytest.approx(0.5, abs=0.05)
    assert "LoRA 0.01, SingLoRA 0.1" in v.test
    # SingLoRA right nowhere: not held
    runs_bad = [dict(r, singlora_test_correct=[zeros] * 3) for r in runs]
    assert experiment.claim_verdict({"v": runs_bad}).outcome == "not held"
    # the same as held but SingLoRA as large as LoRA: inconclusive by the parameter ratio
    big = experiment.claim_verdict({"v": [dict(r, singlora_params=100) for r in runs]})
    assert big.outcome == "inconclusive" and "parameters" in big.reason
    # a LoRA at the ceiling says nothing
    ceiling = [dict(r, lora_test_correct=[zeros, ones, zeros]) for r in runs]
    assert "ceiling" in experiment.claim_verdict({"v": ceiling}).reason
    # part (b): LoRA's test accuracy spans 0 .. 0.5, SingLoRA's 0 .. 1: SingLoRA varies more
    s = experiment.spread_verdict({"v": runs})
    lora_spread = np.mean([r["lora_test_correct"][1] for r in runs])  # rates 0 and 2 are at 0
    assert s.outcome == "not held" and s.effect == pytest.approx(lora_spread - 1.0)
    flat = [dict(r, singlora_test_correct=[r["lora_test_correct"][1]] * 3) for r in runs]
    assert experiment.spread_verdict({"v": flat}).outcome == "held"  # SingLoRA flat over the rates
