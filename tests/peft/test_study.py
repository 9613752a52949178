"""finetune_arm: what trains, resuming a finished arm, and the held-out score it reports."""

import jax
import numpy as np
import pytest

from jaxlab import tasks
from jaxlab.interop.models import load_experiment_model
from jaxlab.models import transformer
from jaxlab.peft.adapters import AdapterSpec, attach, count_trainable
from jaxlab.peft.study import finetune_arm, steps_to_reach


@pytest.mark.slow
def test_lora_and_full_arms_train_what_they_say_and_a_finished_arm_reloads(tmp_path):
    cfg, base, _ = load_experiment_model("tiny-random", 0)
    task = tasks.get("count")
    splits = task.splits(0, 32, 8, 0)
    lora = AdapterSpec(method="lora", rank=4)
    kw = dict(lr=1e-2, steps=6, batch_size=8, seq_len=48, max_new_tokens=4)
    a = finetune_arm(tmp_path / "lora", base, cfg, task, splits["train"], splits["test"], spec=lora, **kw)
    assert a.trainable_params == count_trainable(attach(base, lora, jax.random.key(0))[1])
    assert a.losses_S.shape == a.steps_S.shape == (6,) and a.losses_S[-1] < a.losses_S[0]
    assert a.correct_P.shape == (8,) and a.train_seconds is not None
    # the merged params differ from the base only in the targeted (attention) kernels
    assert np.array_equal(a.params["layers"]["mlp"]["up"]["kernel"], base["layers"]["mlp"]["up"]["kernel"])
    assert not np.array_equal(a.params["layers"]["attn"]["q"]["kernel"], base["layers"]["attn"]["q"]["kernel"])
    again = finetune_arm(tmp_path / "lora", base, cfg, task, splits["train"], splits["test"], spec=lora, **kw)
    assert again.train_seconds is None and np.array_equal(again.losses_S, a.losses_S)
    full = finetune_arm(tmp_path / "full", base, cfg, task, splits["train"], splits["test"],
                        spec=AdapterSpec(method="none"), **kw)
    assert full.trainable_params == transformer.count_params(base)
    with pytest.raises(ValueError, match="train and test"):
        finetune_arm(tmp_path / "x", base, cfg, task, [], splits["test"], spec=lora, **kw)


def test_steps_to_reach_is_the_first_logged_step_at_or_below_the_target():
    losses, steps = np.array([3.0, 2.5, 1.9, 2.1, 1.5]), np.array([10, 20, 30, 40, 50])
    assert steps_to_reach(losses, steps, 2.0) == 30
    assert steps_to_reach(losses, steps, 1.5) == 50
    assert steps_to_reach(losses, steps, 1.0) == float("inf")
