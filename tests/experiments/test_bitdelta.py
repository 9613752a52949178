"""experiments/bitdelta.py: the smoke preset end to end (a tiny random model whose fine-tune
learns nothing: inconclusive by the precondition, the verdict recomputed from results.json),
and the non-inferiority verdict on hand-made per-problem results."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "bitdelta.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_preset_compresses_calibrates_and_recomputes(tmp_path, experiment):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (r,) = results["runs"]["bitdelta"]
    for arm in ("base", "full", "bitdelta_init", "bitdelta_calibrated"):
        c = np.array(r[f"{arm}_correct"])
        assert c.shape == (8,) and set(c) <= {0, 1} and r[f"{arm}_accuracy"] == pytest.approx(c.mean())
    # the tiny model's 7 kernels, one layer each: one scale per matrix, init = mean |delta| > 0
    assert len(r["scales_init"]) == 7 and all(len(v) == 1 and v[0] > 0 for v in r["scales_init"].values())
    assert r["scales_calibrated"] != r["scales_init"] and len(r["calib_losses"]) == 4
    # 1 bit per compressed weight + 16 bits per scale
    assert r["delta_bits"] == r["compressed_weights"] + 16 * 7
    assert r["ratio_vs_fp16"] == pytest.approx(16 * r["compressed_weights"] / r["delta_bits"])
    assert 15 < r["ratio_vs_fp16"] < 16 and r["whole_ratio_vs_fp16"] < r["ratio_vs_fp16"]
    # calibration lowers the distillation loss: along its steps and on the held-out test texts
    losses = r["calib_losses"]
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert 0 < r["distill_loss_calibrated"] < 0.8 * r["distill_loss_init"]
    v = results["verdict"]
    assert v["outcome"] == "inconclusive" and "learned the task" in v["reason"] and v["threshold"] == -0.05
    again = experiment.claim_verdict(results["runs"])
    assert (again.outcome, again.effect, again.low, again.high) == (v["outcome"], v["effect"], v["low"], v["high"])
    assert (tmp_path / "bitdelta_accuracy.png").stat().st_size > 0


def _run(full, calibrated, floor=0.1):
    return {"full_correct": full, "bitdelta_calibrated_correct": calibrated, "floor": floor}


def test_non_inferiority_three_ways(experiment):
    rng = np.random.default_rng(0)
    full = [list(rng.integers(0, 2, 400)) for _ in range(3)]   # about half right: clear of 0.1
    same = experiment.claim_verdict({"v": [_run(f, f) for f in full]})
    assert same.outcome == "held" and same.effect == 0.0 and same.low > -0.05
    # the compressed model loses every problem the fine-tune solved: far below the margin
    lost = experiment.claim_verdict({"v": [_run(f, [0] * 400) for f in full]})
    assert lost.outcome == "not held" and lost.high <= -0.05

    def drop(f, share):
        f = np.array(f)
        ones = np.flatnonzero(f)
        f[rng.choice(ones, int(share * len(f)), replace=False)] = 0
        return list(f)
    # about 5% worse: the interval straddles the margin
    edge = experiment.claim_verdict({"v": [_run(f, drop(f, 0.05)) for f in full]})
    assert edge.outcome == "inconclusive" and edge.low < -0.05 < edge.high
    floor = experiment.claim_verdict({"v": [_run([0] * 400, [0] * 400)] * 3})
    assert floor.outcome == "inconclusive" and "learned the task" in floor.reason


@pytest.mark.parametrize("preset", ["smoke", "paper"])
def test_published_verdict_recomputes(experiment, preset):
    path = EXPERIMENT.parents[1] / "results" / "bitdelta" / preset / "results.json"
    if not path.exists():
        pytest.skip(f"no published {preset} run")
    results = json.loads(path.read_text())
    v, again = results["verdict"], experiment.claim_verdict(results["runs"])
    assert (again.outcome, again.effect, again.low, again.high) == (v["outcome"], v["effect"], v["low"], v["high"])
