"""rl.reward="partial": the task's partial credit (doc_extract: field F1) replaces the 1/0
correctness term of the reward; tasks without partial credit reward alike under both settings;
dynamic sampling keeps the groups whose credit varies, whatever their correctness."""

import json

import numpy as np
import pytest

from jaxlab import tasks as tasks_lib
from jaxlab.data.tokenizer import EOS_ID
from jaxlab.losses.policy import grpo_advantages
from jaxlab.models import transformer
from jaxlab.rl import RLConfig, score_responses
from jaxlab.rl import loop as loop_lib

CFG = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=2,
                         head_dim=16, mlp_dim=64)


def _doc_example(n_fields=4):
    task = tasks_lib.get("doc_extract")
    rng = np.random.default_rng(3)
    for _ in range(50):
        ex = task.generate(rng, 3)
        gold = ex.meta["record"]
        if sum(v is not None for v in gold.values()) == n_fields:
            return task, ex
    raise AssertionError("no document with all fields shown")


def test_partial_reward_is_the_field_f1():
    task, ex = _doc_example()
    gold = ex.meta["record"]
    keys = list(gold)
    one_wrong = dict(gold, **{keys[0]: "zzz-not-it"})
    one_missing = {k: gold[k] for k in keys[1:]}
    extra = dict(gold, unasked="x")
    responses = [ex.answer, json.dumps(one_wrong), json.dumps(one_missing), json.dumps(extra),
                 "not json at all", "Sure!\n" + json.dumps(one_missing), '{"a": 1, "a": 2}']
    # field F1 = 2 TP / (2 TP + FP + FN), n = 4 gold fields (records.py)
    expected = [1.0, 6 / 8, 6 / 7, 8 / 9, 0.0, 6 / 7, 0.0]
    rewards, correct = score_responses([ex] * len(responses), responses, partial=True)
    np.testing.assert_allclose(rewards, expected, rtol=1e-6)
    np.testing.assert_allclose(rewards, [task.scores(ex, r)["f1"] for r in responses], rtol=1e-6)
    np.testing.assert_array_equal(correct, [1, 0, 0, 0, 0, 0, 0])  # correctness stays exact
    exact, _ = score_responses([ex] * len(responses), responses)
    np.testing.assert_array_equal(exact, correct)
    # the loop's reward under rl.reward="partial", with a format term on top of the credit
    source = loop_lib.RolloutSource([ex], model_cfg=CFG, rl=RLConfig(reward="partial", format_coef=0.5))
    r, c, s = source._score([ex] * len(responses), responses)
    np.testing.assert_allclose(s, expected, rtol=1e-6)
    np.testing.assert_allclose(r, np.array(expected) + 0.5 * np.array([1, 1, 1, 1, 0, 1, 0]), rtol=1e-6)


@pytest.mark.parametrize("format_coef", [0.0, 0.5])
def test_task_without_partial_credit_rewards_alike(format_coef):
    task = tasks_lib.get("arithmetic", train_difficulty=(1, 2), ops="+")
    examples = task.splits(0, 4, 0, 0)["train"]
    responses = [examples[0].answer, "7", "", "12\n" + examples[3].answer]
    for rl_reward in ("exact", "partial"):
        source = loop_lib.RolloutSource(examples, model_cfg=CFG, rl=RLConfig(reward=rl_reward,
                                                                             format_coef=format_coef))
        r, c, s = source._score(examples, responses)
        np.testing.assert_array_equal(s, c)  # the task score is the 1/0 verdict
        np.testing.assert_array_equal(r, score_responses(examples, responses, format_coef=format_coef)[0])
    assert task.reward(examples[0], examples[0].answer) == 1.0 and task.reward(examples[1], "x") == 0.0


def test_unknown_reward_is_refused():
    with pytest.raises(ValueError, match="reward"):
        RLConfig(reward="f1")


DISTINCT = [0.2, 0.4, 0.6, 0.8]  # none exact, all different: advantages != 0
EQUAL = [0.5] * 4                # equal credit: advantages 0


def _stub(calls):
    """score_responses with crafted credit: group 0 of a call gets DISTINCT, group 1 EQUAL;
    nothing is ever exactly right."""
    def score(examples, texts, *, format_coef=0.0, partial=False):
        credit = np.array(DISTINCT + EQUAL, np.float32)[:len(texts)]
        calls.append(partial)
        correct = np.zeros(len(texts), np.float32)
        return (credit if partial else correct) + np.float32(format_coef), correct
    return score


def _fake_sample(params, model_cfg, prompts, key, sample_cfg, mesh=None):
    """Completions "7" + EOS for every prompt, as :func:`jaxlab.rl.rollout.sample_completions` lays them out."""
    B = len(prompts)
    tokens = np.tile(np.array([[ord("7"), EOS_ID]], np.int32), (B, 1))
    return {"tokens": tokens, "logprobs": np.full((B, 2), -1.0, np.float32), "model_logprobs": np.zeros((B, 2)),
            "mask": np.ones((B, 2), np.float32), "lengths": np.full(B, 2), "truncated": np.zeros(B, bool)}


def _sample(monkeypatch, *, reward, dynamic, format_coef=0.0):
    calls = []
    monkeypatch.setattr(loop_lib, "score_responses", _stub(calls))
    # format credit differs inside every group: 1 on even rows
    monkeypatch.setattr(loop_lib, "well_formed", lambda exs, texts: (np.arange(len(texts)) % 2).astype(np.float32))
    monkeypatch.setattr(loop_lib, "sample_completions", _fake_sample)  # no model: crafted completions
    examples = tasks_lib.get("arithmetic", train_difficulty=(1, 1), ops="+").splits(0, 8, 0, 0)["train"]
    rl = RLConfig(prompts_per_step=2, group_size=4, max_new_tokens=3, reward=reward, dynamic_sampling=dynamic,
                  max_sample_rounds=1, format_coef=format_coef)
    source = loop_lib.RolloutSource(examples, model_cfg=CFG, rl=rl)
    batch, metrics = source.sample_batch(None, 0)
    assert calls and all(p == (reward == "partial") for p in calls)
    return batch, metrics


def test_dynamic_sampling_keeps_distinct_partial_credit(monkeypatch):
    batch, m = _sample(monkeypatch, reward="partial", dynamic=True)
    assert m["groups_kept"] == 1.0 and m["groups_filtered"] == 0.5
    adv = batch["advantages"].reshape(2, 4)
    np.testing.assert_allclose(adv[0], np.asarray(grpo_advantages(np.array([DISTINCT])))[0], atol=1e-6)
    assert np.all(adv[0] != 0) and np.all(adv[1] == 0) and batch["mask"][4:].sum() == 0  # filler
    assert (m["groups_sampled"], m["groups_sampled_zero_std"]) == (2.0, 1.0)
    assert m["groups_zero_std"] == m["groups_sampled_zero_std"] / m["groups_sampled"] == 0.5
    assert m["batch_zero_std"] == 0.5 and m["pass_at_1"] == 0.0
    # DAPO's filter on correctness drops both groups: none holds a right answer
    batch, m = _sample(monkeypatch, reward="exact", dynamic=True)
    assert m["groups_kept"] == 0.0 and m["batch_zero_std"] == 1.0 and np.all(batch["advantages"] == 0)
    # without dynamic sampling both partial-credit groups are trained on, one with advantage 0
    batch, m = _sample(monkeypatch, reward="partial", dynamic=False)
    assert m["groups_kept"] == 2.0 and m["groups_filtered"] == 0.0
    assert m["batch_zero_std"] == m["groups_zero_std"] == 0.5


def test_format_credit_does_not_keep_a_group_of_equal_credit(monkeypatch):
    batch, m = _sample(monkeypatch, reward="partial", dynamic=True, format_coef=0.5)
    assert m["groups_sampled_zero_std"] == 0.0  # the format term makes every group's rewards differ
    assert m["groups_kept"] == 1.0  # ... but the group of equal F1s is still dropped
    r = np.array(DISTINCT) + 0.5 * (np.arange(4) % 2)
    np.testing.assert_allclose(batch["advantages"][:4], np.asarray(grpo_advantages(r[None]))[0], atol=1e-6)
