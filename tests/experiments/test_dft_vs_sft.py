"""experiments/dft_vs_sft.py at a tiny size: both arms run from one warm start, the numbers are
finite and the verdict follows them."""

import dataclasses
import math
from pathlib import Path

import pytest

from jaxlab.cli import load_experiment
from jaxlab.models import transformer
from jaxlab.train.metrics import read_jsonl

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "dft_vs_sft.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


TINY = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                          head_dim=16, mlp_dim=64)


def test_tiny_run(experiment, tmp_path):
    cfg = dataclasses.replace(experiment.get_config(), model=TINY, n_train=200, n_test=16, n_ood=16,
                              warm_steps=30, steps=20, eval_every=10, batch_size=8, seq_len=32)
    r = experiment.run(cfg, tmp_path, progress=False)
    for key in experiment.REPORT_KEYS:
        assert 0.0 <= r[key] <= 1.0 and math.isfinite(r[key]), key
    # Both curves start at the shared warm start, then one point per evaluation.
    for arm in ("sft", "dft"):
        assert [s for s, _ in r[f"{arm}_test_curve"]] == [0, 10, 20]
        assert r[f"{arm}_test_curve"][0][1] == r["warm_test_accuracy"]
    warm_losses = [m["train/loss"] for m in read_jsonl(tmp_path / "warm" / "metrics.jsonl")
                   if "train/loss" in m]
    assert warm_losses[-1] < warm_losses[0]
    held, _ = experiment.check({"v": r})
    assert held == (r["dft_test_auc"] > r["sft_test_auc"]
                    and r["dft_ood_accuracy"] > r["sft_ood_accuracy"])
    assert f"**Verdict: the claim {'held' if held else 'did not hold'}**" in r["report"]
    assert (tmp_path / "accuracy.png").stat().st_size > 0
