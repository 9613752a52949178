"""A tiny end-to-end run of experiments/sft_memorizes_rl_generalizes.py (a few steps)."""

import dataclasses
import sys
from pathlib import Path

from jaxlab.cli import load_experiment

sys.path.insert(0, str(Path(__file__).parent))
from rl_tiny import rl_tiny, tiny  # noqa: E402


def test_sft_vs_rl_tiny(tmp_path):
    exp = load_experiment("experiments/sft_memorizes_rl_generalizes.py")
    cfg = exp.get_config()
    cfg = tiny(cfg, rl=rl_tiny(cfg.rl), sft_more=dataclasses.replace(
        cfg.sft_more, batch_size=8, loop=dataclasses.replace(cfg.sft_more.loop, steps=2)))
    out = exp.run(cfg, tmp_path, progress=False)
    assert set(exp.REPORT_KEYS) <= set(out)
    assert all(0.0 <= out[k] <= 1.0 for k in exp.REPORT_KEYS)
    held, _ = exp.check({"x": out})
    assert held == (out["rl_ood"] > out["sft_ood"])
