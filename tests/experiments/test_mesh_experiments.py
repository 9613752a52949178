"""A post-training experiment runs on 8 (fake CPU) devices with ``--set mesh.fsdp=8`` and gives
the numbers of its one-device run (tests/conftest.py makes 8 CPU devices): dft_vs_sft's smoke
preset, shortened, trains both arms sharded and answers every problem the same."""

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxlab import claims
from jaxlab.cli import load_experiment
from jaxlab.config import apply_overrides
from jaxlab.train.metrics import read_jsonl

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "dft_vs_sft.py"


def _losses(folder: Path):
    return [(m["step"], m["train/loss"], m["train/grad_norm"])
            for m in read_jsonl(folder / "metrics.jsonl") if "train/loss" in m]


@pytest.mark.slow
def test_dft_vs_sft_on_eight_devices_matches_one(tmp_path):
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
    exp = load_experiment(EXPERIMENT)
    smoke = apply_overrides(exp.get_config(), claims.preset_overrides(exp, "smoke"))
    base = dataclasses.replace(smoke, n_train=48, n_test=8, n_ood=8, steps=3, eval_every=3)
    runs = {}
    for name, override in (("one", "mesh.data=1"), ("eight", "mesh.fsdp=8")):
        runs[name] = exp.run(apply_overrides(base, [override]), tmp_path / name, progress=False)
    one, eight = runs["one"], runs["eight"]
    for arm in ("sft", "dft"):
        a, b = _losses(tmp_path / "one" / arm), _losses(tmp_path / "eight" / arm)
        assert [s for s, *_ in a] == [s for s, *_ in b] == [1, 2, 3]
        # the same math, summed in another order across devices
        np.testing.assert_allclose([x[1:] for x in b], [x[1:] for x in a], rtol=1e-4)
        assert eight[f"{arm}_test_correct"] == one[f"{arm}_test_correct"]
        assert eight[f"{arm}_ood_correct"] == one[f"{arm}_ood_correct"]
    # the arms differ (another loss), so matching them is not matching one number twice
    assert _losses(tmp_path / "one" / "sft")[-1][1] != _losses(tmp_path / "one" / "dft")[-1][1]
    for key in exp.REPORT_KEYS:
        assert eight[key] == pytest.approx(one[key], abs=1e-6), key
