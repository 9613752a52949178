"""experiments/dft_vs_sft.py: the smoke preset end to end (a tiny random byte model, whose
start is at the floor: the verdict must be inconclusive by the precondition), and the
three-way verdict on hand-made per-problem results."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "dft_vs_sft.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_preset_is_inconclusive_at_the_floor(tmp_path):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (r,) = results["runs"]["dft_vs_sft"]
    for arm in ("start", "sft", "dft"):
        test, ood = np.array(r[f"{arm}_test_correct"]), np.array(r[f"{arm}_ood_correct"])
        assert test.shape == (32,) and ood.shape == (16,) and set(test) | set(ood) <= {0, 1}
        assert r[f"{arm}_test_accuracy"] == pytest.approx(test.mean())
    for arm in ("sft", "dft"):
        curve = r[f"{arm}_test_curve"]
        assert [s for s, _ in curve] == [0, 4, 8]  # the shared start, then every eval_every steps
        assert curve[0][1] == r["start_test_accuracy"] and curve[-1][1] == r[f"{arm}_test_accuracy"]
    # both arms learn from the same batches, by different losses: SFT's cross-entropy falls,
    # DFT's loss (CE weighted by p ~ 1/V on a random model) is far smaller
    assert r["sft_last_loss"] < r["sft_first_loss"]
    assert r["dft_first_loss"] < 0.1 * r["sft_first_loss"]
    assert r["dft_minus_sft"] == pytest.approx(r["dft_test_accuracy"] - r["sft_test_accuracy"])
    v = results["verdict"]
    assert v["outcome"] == "inconclusive" and "partly solves the task" in v["reason"]
    assert v["preconditions"][0]["passed"] is False and r["start_test_accuracy"] == 0.0
    assert "**Verdict: inconclusive.**" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "dft_vs_sft" / "seed0" / "accuracy.png").stat().st_size > 0


def _run(start, sft, dft, floor=0.1):
    return {"start_test_correct": start, "sft_test_correct": sft, "dft_test_correct": dft, "floor": floor}


def test_verdict_three_ways(experiment):
    rng = np.random.default_rng(0)
    start = [list(rng.integers(0, 2, 200)) for _ in range(3)]  # about half right: clear of a 0.1 floor
    ones, zeros = [1] * 200, [0] * 200
    held = experiment.claim_verdict({"v": [_run(s, zeros, ones) for s in start]})
    assert held.outcome == "held" and held.effect == 1.0 and held.low > 0
    not_held = experiment.claim_verdict({"v": [_run(s, ones, zeros) for s in start]})
    assert not_held.outcome == "not held" and not_held.high < 0
    # DFT right on a random half of the problems SFT gets right: the interval contains 0
    mixed = experiment.claim_verdict({"v": [_run(s, s, list(rng.permutation(s))) for s in start]})
    assert mixed.outcome == "inconclusive" and mixed.low < 0 < mixed.high
    # the same arms from a start at the floor: inconclusive, whatever the arms did
    floor = experiment.claim_verdict({"v": [_run([0] * 200, zeros, ones) for _ in start]})
    assert floor.outcome == "inconclusive" and "partly solves" in floor.reason
    assert "McNemar" in held.test and "3 seeds x 200 test problems" in held.test


def test_paper_preset_is_the_fair_setting_and_listed_for_the_gpu(experiment):
    from jaxlab import claims
    from jaxlab.config import apply_overrides

    cfg = apply_overrides(experiment.get_config(), claims.preset_overrides(experiment, "paper"))
    assert cfg.model == "smollm2-135m-instruct" and cfg.n_test >= 500 and cfg.n_ood >= 500
    assert cfg.steps % cfg.eval_every == 0
    script = (EXPERIMENT.parents[1] / "scripts" / "gpu_claims.sh").read_text()
    assert ('jaxlab run experiments/dft_vs_sft.py --workdir "$OUT/dft_vs_sft" --preset paper --seeds 3 '
            '--publish') in script
