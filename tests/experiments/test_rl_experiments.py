"""Tiny end-to-end runs of the RL experiments (a few steps each)."""

import dataclasses

import pytest

from jaxlab.cli import load_experiment
from jaxlab.rl.warmstart import TaskConfig

TINY_TASK = TaskConfig(n_train=64, n_test=8, n_ood=8)


def tiny(cfg, **rl_fields):
    """The experiment's own task with few examples, a tiny model and a few steps."""
    sft = dataclasses.replace(cfg.sft, batch_size=8, loop=dataclasses.replace(cfg.sft.loop, steps=4))
    task = dataclasses.replace(cfg.task, n_train=64, n_test=8, n_ood=8)
    return dataclasses.replace(cfg, task=task, model_dim=32, model_layers=1, sft=sft, **rl_fields)


def rl_tiny(rl, **kw):
    return dataclasses.replace(rl, prompts_per_step=2, group_size=4, max_new_tokens=6, pass_k=2,
                               loop=dataclasses.replace(rl.loop, steps=2, checkpoint_every=2), **kw)


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


def test_reflect_retry_reward_tiny(tmp_path):
    exp = load_experiment("experiments/reflect_retry_reward.py")
    cfg = exp.get_config()
    cfg = tiny(cfg, rl=rl_tiny(cfg.rl, reflect_max_tokens=6))
    out = exp.run(cfg, tmp_path, progress=False)
    # second try counts the first-try successes too
    assert out["second_before"] >= out["first_before"] and out["second_after"] >= out["first_after"]
    held, _ = exp.check({"x": out})
    assert held == (out["first_after"] > out["first_before"] and out["second_after"] > out["second_before"])


def test_reflect_records_have_a_wrong_first_answer():
    exp = load_experiment("experiments/reflect_retry_reward.py")
    examples = TINY_TASK.splits()["train"][:10]
    records = exp.reflect_records(examples, 0.5)
    assert len(records) == 15
    for ex, rec in zip(examples[:5], records[10:]):
        wrong = rec["prompt"][len(ex.prompt):-len("\nWrong. Reflect:")]
        assert wrong != ex.answer and rec["response"].endswith("Retry:" + ex.answer)
