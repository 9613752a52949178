"""experiments/intruder_dimensions.py: the smoke preset end to end (a tiny random model whose
fine-tunes learn nothing: inconclusive by the precondition, the verdict recomputed from
results.json), and the three-way verdict on hand-made similarities."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "intruder_dimensions.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_preset_counts_and_recomputed_verdict(tmp_path, experiment):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (r,) = results["runs"]["intruder_dimensions"]
    # the tiny model: 1 layer, 7 kernels (q, k, v, o, gate, up, down), each read as one matrix
    assert r["matrices"] == sorted(f"layers/{m}[0]" for m in
                                   ("attn/q", "attn/k", "attn/v", "attn/o", "mlp/gate", "mlp/up", "mlp/down"))
    for arm in ("full", "lora"):
        sims = r[f"{arm}_similarities"]
        assert all(0.0 <= s <= 1.0 + 1e-9 for m in sims.values() for d in m.values() for s in d)
        # the counts at epsilon 0.5 and the sweep agree with the stored similarities
        total = sum(int(np.sum(np.array(sims[m]["intruder"]) < 0.5)) for m in r["matrices"])
        assert r[f"{arm}_intruder"] == total == r[f"{arm}_intruder_sweep"][r["epsilons"].index(0.5)]
        assert all(a <= b for a, b in zip(r[f"{arm}_intruder_sweep"], r[f"{arm}_intruder_sweep"][1:]))
        assert r[f"{arm}_forgetting"] == pytest.approx(np.mean(r[f"{arm}_text_row_loss_increase"]))
        assert r[f"{arm}_last_loss"] < r[f"{arm}_first_loss"]
    assert r["lora_trainable_params"] < r["full_trainable_params"]
    v = results["verdict"]
    assert v["outcome"] == "inconclusive" and "learned the task" in v["reason"]
    again = experiment.claim_verdict(results["runs"])
    assert (again.outcome, again.effect, again.low, again.high) == (v["outcome"], v["effect"], v["low"], v["high"])
    report = (tmp_path / "report.md").read_text()
    assert "**Verdict: inconclusive.**" in report and "Second line" in report
    assert (tmp_path / "intruder_dimensions_sweep.png").stat().st_size > 0


def _seed(lora_sims, full_sims, correct=1):
    mats = [f"m{i}" for i in range(len(lora_sims))]
    return {"matrices": mats, "floor": 0.1, "full_correct": [correct] * 100, "lora_correct": [correct] * 100,
            **{f"{arm}_similarities": {m: {"intruder": s, "lost": s} for m, s in zip(mats, sims)}
               for arm, sims in (("lora", lora_sims), ("full", full_sims))}}


def test_verdict_three_ways(experiment):
    rng = np.random.default_rng(0)
    same = [[0.9] * 10 for _ in range(6)]
    intruded = [[0.2] + [0.9] * 9 for _ in range(6)]  # one intruder per matrix at epsilon 0.5
    held = experiment.claim_verdict({"v": [_seed(intruded, same) for _ in range(3)]})
    assert held.outcome == "held" and held.effect == 1.0 and "3 seeds x 6 matrices" in held.test
    not_held = experiment.claim_verdict({"v": [_seed(same, intruded) for _ in range(3)]})
    assert not_held.outcome == "not held" and not_held.effect == -1.0
    mixed = [[[0.2] + [0.9] * 9 if rng.random() < 0.5 else [0.9] * 10 for _ in range(6)] for _ in range(3)]
    other = [[[0.2] + [0.9] * 9 if rng.random() < 0.5 else [0.9] * 10 for _ in range(6)] for _ in range(3)]
    straddle = experiment.claim_verdict({"v": [_seed(a, b) for a, b in zip(mixed, other)]})
    assert straddle.outcome == "inconclusive" and straddle.low < 0 < straddle.high
    # 0.45 is an intruder at 0.5 but not at 0.4: the verdict uses the fixed epsilon 0.5
    near = experiment.claim_verdict({"v": [_seed([[0.45] + [0.9] * 9] * 6, same)] * 2})
    assert near.outcome == "held"
    # arms that learned nothing: inconclusive whatever the counts
    blank = experiment.claim_verdict({"v": [_seed(intruded, same, correct=0) for _ in range(3)]})
    assert blank.outcome == "inconclusive" and "learned the task" in blank.reason


def test_forgetting_line(experiment):
    per_seed = [{"lora_text_row_loss_increase": [0.3, 0.2, 0.25], "full_text_row_loss_increase": [0.1, 0.05, 0.1]}] * 2
    v = experiment.forgetting_verdict(per_seed)
    assert v.outcome == "held" and v.effect == pytest.approx(0.5 / 3)


@pytest.mark.parametrize("preset", ["smoke", "paper"])
def test_published_verdict_recomputes(experiment, preset):
    path = EXPERIMENT.parents[1] / "results" / "intruder_dimensions" / preset / "results.json"
    if not path.exists():
        pytest.skip(f"no published {preset} run")
    results = json.loads(path.read_text())
    v, again = results["verdict"], experiment.claim_verdict(results["runs"])
    assert (again.outcome, again.effect, again.low, again.high) == (v["outcome"], v["effect"], v["low"], v["high"])
