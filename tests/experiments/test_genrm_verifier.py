"""experiments/genrm_verifier.py: the GenRM objective is exact per step, and a tiny run
produces selection accuracies bounded by the oracle with a verdict that follows them."""

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.cli import load_experiment
from jaxlab.data.chat import verification_record
from jaxlab.losses.verifier import genrm_objective, genrm_sums
from jaxlab.models import transformer
from jaxlab.train.metrics import read_jsonl

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "genrm_verifier.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


TINY = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                          head_dim=16, mlp_dim=64)


def test_weighted_rows_give_the_genrm_objective(experiment):
    verify = [verification_record(f"{a}+{a}=", str(a + a + (a % 2)), a % 2 == 0) for a in range(8)]
    correct = [{"prompt": f"{a}+{a}=", "response": str(2 * a)} for a in range(0, 8, 2)]
    lam = 0.7
    source = experiment.GenRMSource(verify, correct, lam=lam, batch_size=4, seq_len=48, seed=0)
    batch, _ = source.next(None, 1)
    params = transformer.init(TINY, jax.random.key(0))
    sums = experiment.genrm_loss_sums(params, batch, jax.random.key(0), model_cfg=TINY)
    logits = transformer.apply(params, batch["inputs"], TINY, positions_BT=batch["positions"],
                               segment_ids_BT=batch["segment_ids"])
    is_c = (batch["correct_scale"] > 0)[:, None]
    ref = genrm_sums(logits, batch["targets"], jnp.where(is_c, 0.0, batch["mask"]),
                     jnp.where(is_c, batch["mask"], 0.0))
    expected, _ = genrm_objective(ref, lam=lam)
    np.testing.assert_allclose(sums["loss"] / sums["count"], expected, rtol=1e-5)


def test_tiny_run(experiment, tmp_path):
    cfg = dataclasses.replace(experiment.get_config(), model=TINY, digits=(1, 1), n_gen_train=18,
                              gen_steps=40, n_verify_problems=24, n_train_samples=2, n_test=12,
                              n_best_of=3, verifier_steps=15, batch_size=8, seq_len=64)
    r = experiment.run(cfg, tmp_path, progress=False)
    for key in experiment.REPORT_KEYS:
        assert 0.0 <= r[key] <= 1.0 and math.isfinite(r[key]), key
    for key in ("first_sample_accuracy", "genrm_best_of_n_accuracy", "classifier_best_of_n_accuracy"):
        assert r[key] <= r["oracle_accuracy"]
    assert r["verify_train_examples"] == 48
    for name in ("genrm", "classifier"):
        losses = [m["train/loss"] for m in read_jsonl(tmp_path / name / "metrics.jsonl") if "train/loss" in m]
        assert losses[-1] < losses[0], name
    held, _ = experiment.check({"v": r})
    g = r["genrm_best_of_n_accuracy"]
    assert held == (g > r["classifier_best_of_n_accuracy"] and g > r["first_sample_accuracy"])
    assert f"**Verdict: the claim {'held' if held else 'did not hold'}**" in r["report"]
