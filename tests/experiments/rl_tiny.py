"""Small settings shared by the RL experiments' tests: the experiment's own task with few
examples, a tiny model and a few steps."""

import dataclasses

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
