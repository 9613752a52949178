"""DAPO's dynamic sampling filters groups on correctness (0 < correct < G), not on std(reward):
a group of wrong answers with unequal format rewards is dropped."""

import jax
import numpy as np
import pytest

from jaxlab import tasks as tasks_lib
from jaxlab.models import transformer
from jaxlab.rl import RLConfig
from jaxlab.rl import loop as loop_lib
from jaxlab.rl.shaping import informative_groups, mixed_correctness_groups

CFG = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=2,
                         head_dim=16, mlp_dim=64)


def test_mixed_correctness_groups_hand_values():
    correct_BG = [[1, 1, 1], [0, 1, 0], [0, 0, 0], [1, 0, 1]]
    np.testing.assert_array_equal(mixed_correctness_groups(correct_BG), [False, True, False, True])
    # rewards of format-only credit differ inside the all-wrong group 2: std > 0, not mixed
    rewards_BG = np.asarray(correct_BG) + 0.5 * np.array([[1, 1, 1], [1, 1, 1], [0, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(informative_groups(rewards_BG), [False, True, True, True])


def _stub(correct_fn):
    """A verifier: correctness by ``correct_fn(text)``, format credit 1 for texts whose first
    byte is even (so rewards differ inside a group whatever its correctness)."""
    def score(examples, texts, *, format_coef=0.0):
        del examples
        correct = np.array([correct_fn(t) for t in texts], np.float32)
        formed = np.array([float(bool(t) and ord(t[0]) % 2 == 0) for t in texts], np.float32)
        return correct + np.float32(format_coef) * formed, correct
    return score


def _source(dynamic: bool):
    examples = tasks_lib.get("arithmetic", train_difficulty=(1, 2), ops="+").splits(0, 16, 0, 0)["train"]
    rl = RLConfig(prompts_per_step=4, group_size=4, max_new_tokens=6, temperature=2.0, format_coef=0.5,
                  dynamic_sampling=dynamic, max_sample_rounds=2)
    return loop_lib.RolloutSource(examples, model_cfg=CFG, rl=rl), rl


@pytest.mark.slow
def test_all_wrong_groups_with_unequal_format_rewards_are_dropped(monkeypatch):
    monkeypatch.setattr(loop_lib, "score_responses", _stub(lambda t: 0.0))  # every answer wrong
    params = transformer.init(CFG, jax.random.key(0))
    source, rl = _source(dynamic=True)
    batch, metrics = source.sample_batch(params, 0)
    assert metrics["groups_zero_std"] < 1.0  # the format rewards do differ in some group ...
    assert metrics["groups_uniform"] == 1.0  # ... but no group holds a right answer
    assert metrics["groups_kept"] == 0.0 and metrics["groups_filtered"] == 1.0
    assert batch["mask"].sum() == 0 and np.all(batch["advantages"] == 0)
    assert metrics["batch_zero_std"] == 1.0
    # without dynamic sampling the same groups stay, with their format-only advantages
    source, rl = _source(dynamic=False)
    batch, metrics = source.sample_batch(params, 0)
    assert metrics["groups_kept"] == rl.prompts_per_step and metrics["groups_filtered"] == 0.0
    assert np.any(batch["advantages"] != 0) and metrics["batch_zero_std"] < 1.0


def test_kept_groups_are_mixed(monkeypatch):
    seen = []

    def score(examples, texts, *, format_coef=0.0):
        rewards, correct = _stub(lambda t: float(bool(t) and ord(t[0]) % 3 == 0))(examples, texts,
                                                                                  format_coef=format_coef)
        seen.append(correct.reshape(-1, 4))
        return rewards, correct

    monkeypatch.setattr(loop_lib, "score_responses", score)
    source, rl = _source(dynamic=True)
    batch, metrics = source.sample_batch(transformer.init(CFG, jax.random.key(0)), 0)
    correct_NG = np.concatenate(seen)
    n_mixed = int(mixed_correctness_groups(correct_NG).sum())
    assert 0 < n_mixed < len(correct_NG)  # the stub makes both kinds of group
    assert metrics["groups_kept"] == min(n_mixed, rl.prompts_per_step)
    assert metrics["groups_uniform"] == 1.0 - n_mixed / len(correct_NG)
    # every kept group's rows: rewards of the group, recomputed from the rows' texts, are mixed
    kept = int(metrics["groups_kept"])
    for g in range(kept):
        texts = []
        for b in range(g * rl.group_size, (g + 1) * rl.group_size):
            on = batch["mask"][b] > 0
            texts.append(loop_lib.decode_response(batch["targets"][b][on], np.ones(int(on.sum()))))
        c = [float(bool(t) and ord(t[0]) % 3 == 0) for t in texts]
        assert 0 < sum(c) < rl.group_size
