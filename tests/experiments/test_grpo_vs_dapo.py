"""A tiny end-to-end run of experiments/grpo_vs_dapo.py (a few steps)."""

import sys
from pathlib import Path

from jaxlab.cli import load_experiment

sys.path.insert(0, str(Path(__file__).parent))
from rl_tiny import rl_tiny, tiny  # noqa: E402


def test_grpo_vs_dapo_tiny(tmp_path):
    exp = load_experiment("experiments/grpo_vs_dapo.py")
    cfg = exp.get_config()
    cfg = tiny(cfg, grpo=rl_tiny(cfg.grpo), dapo=rl_tiny(cfg.dapo), eval_samples=2)
    out = exp.run(cfg, tmp_path, progress=False)
    for arm in ("grpo", "dapo"):
        assert len(out[f"{arm}_entropy_curve"]) == 2  # logged every step
        assert all(e >= 0 for e in out[f"{arm}_entropy_curve"])
        assert 0.0 <= out[f"{arm}_test_pass@1"] <= out[f"{arm}_test_pass@2"] + 1e-9 <= 1.0 + 1e-9
        assert 0.0 <= out[f"{arm}_zero_std_in_batch"] <= 1.0
    assert out["grpo_groups_filtered"] == 0.0  # no dynamic sampling in GRPO
    held, text = exp.check({"grpo_vs_dapo": out})
    assert held == (out["dapo_entropy_end"] >= out["grpo_entropy_end"]
                    and out["dapo_zero_std_in_batch"] < out["grpo_zero_std_in_batch"])
    assert f"{out['dapo_entropy_end']:.3f}" in text
