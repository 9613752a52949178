"""A post-training experiment runs on 8 (fake CPU) devices with ``--set mesh.fsdp=8`` and gives
the numbers of its one-device run (tests/conftest.py makes 8 CPU devices)."""

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxlab.cli import load_experiment
from jaxlab.config import apply_overrides
from jaxlab.models import transformer
from jaxlab.train.metrics import read_jsonl

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "dft_vs_sft.py"
TINY = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                          head_dim=16, mlp_dim=64)


def _losses(folder: Path):
    return [(m["step"], m["train/loss"], m["train/grad_norm"])
            for m in read_jsonl(folder / "metrics.jsonl") if "train/loss" in m]


@pytest.mark.slow
def test_dft_vs_sft_on_eight_devices_matches_one(tmp_path):
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
    exp = load_experiment(EXPERIMENT)
    base = dataclasses.replace(exp.get_config(), model=TINY, n_train=48, n_test=8, n_ood=8,
                               warm_steps=6, steps=4, eval_every=4, batch_size=8, seq_len=32)
    runs = {}
    for name, override in (("one", "mesh.data=1"), ("eight", "mesh.fsdp=8")):
        cfg = apply_overrides(base, [override])
        runs[name] = exp.run(cfg, tmp_path / name, progress=False)
    one, eight = runs["one"], runs["eight"]
    for arm in ("warm", "sft", "dft"):
        a, b = _losses(tmp_path / "one" / arm), _losses(tmp_path / "eight" / arm)
        assert [s for s, *_ in a] == [s for s, *_ in b] and len(a) >= 1
        # the same math, summed in another order across devices
        np.testing.assert_allclose([x[1:] for x in b], [x[1:] for x in a], rtol=1e-4)
    for key in exp.REPORT_KEYS:
        assert eight[key] == pytest.approx(one[key], abs=1e-6), key
