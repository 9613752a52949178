"""experiments/dpo_likelihood_displacement.py at a tiny size: DPO widens the margin, CHES
separates look-alike pairs from dissimilar ones, the filtered run drops the top-CHES pairs,
and the verdict follows the numbers."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from jaxlab.cli import load_experiment
from jaxlab.models import transformer

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "dpo_likelihood_displacement.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


TINY = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                          head_dim=16, mlp_dim=64)


def test_tiny_run(experiment, tmp_path):
    base = experiment.get_config()
    cfg = dataclasses.replace(base, model=TINY, n_pairs=32, sft_steps=40,
                              dpo=dataclasses.replace(base.dpo, batch_size=8, loop=dataclasses.replace(
                                  base.dpo.loop, steps=20, eval_every=10)))
    r = experiment.run(cfg, tmp_path, progress=False)
    for key in experiment.REPORT_KEYS:
        assert math.isfinite(r[key]), key
    assert r["margin_end"] > r["margin_start"]  # DPO does what it optimises
    # Near misses (the sum + 1) share tokens with the chosen answer, the letter spellings do not.
    assert r["ches_near_mean"] > r["ches_far_mean"]
    assert r["n_kept"] == 32 - round(cfg.drop_fraction * 32)
    held, _ = experiment.check({"v": r})
    expected = (r["chosen_logp_end"] < r["chosen_logp_start"]
                and r["rejected_logp_end"] < r["rejected_logp_start"]
                and r["ches_spearman"] > 0
                and r["kept_displacement_filtered"] < r["kept_displacement_full"])
    assert held == expected
    assert f"**Verdict: the claim {'held' if held else 'did not hold'}**" in r["report"]


def test_pairs_and_spearman(experiment):
    pairs = experiment.make_pairs((1, 2), 10, seed=0)
    near, far = pairs[0], pairs[1]
    assert int(near["rejected"]) == int(near["chosen"]) + 1
    assert far["rejected"] == "".join("abcdefghij"[int(c)] for c in far["chosen"])
    x = np.array([0.1, 0.5, 0.3, 0.9])
    assert experiment.spearman(x, x ** 3) == pytest.approx(1.0)
    assert experiment.spearman(x, -x) == pytest.approx(-1.0)
