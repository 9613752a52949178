import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import tasks as tasks_lib
from jaxlab.data.chat import encode_prompt
from jaxlab.data.tokenizer import EOS_ID, PAD_ID
from jaxlab.models import transformer
from jaxlab.rl import (PassRateCurriculum, RLConfig, build_rows, decode_response,
                       default_sample_config, informative_groups, normalize_rl_sums, pass_at_k,
                       policy_logprobs, rl_loss_sums, sample_completions, sampled_responses,
                       score_responses, soft_overlong_penalty)
from jaxlab.rl import reflect as reflect_lib
from jaxlab.train.step import accumulate_gradients

CFG = transformer.Config(vocab_size=264, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1,
                         head_dim=16, mlp_dim=64)


@pytest.fixture(scope="module")
def params():
    return transformer.init(CFG, jax.random.key(0))


PROMPTS = [encode_prompt(p) for p in ("1+2=", "34+5=", "7+8=", "12+13=")]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_recomputed_logprobs_equal_sampled(params, temperature):
    sample = default_sample_config(12, temperature)
    out = sample_completions(params, CFG, PROMPTS, jax.random.key(1), sample)
    rows = build_rows(PROMPTS, *sampled_responses(out), width=32)
    logp_BW, entropy_BW = policy_logprobs(params, rows, CFG, sample)
    m = rows["mask"] > 0
    assert m.sum() == out["lengths"].sum() > 0
    np.testing.assert_allclose(np.asarray(logp_BW)[m], rows["old_logp"][m], atol=1e-5)
    if temperature == 1.0:  # the raw model's log-probs
        model_rows = build_rows(PROMPTS, [out["tokens"][b, :n] for b, n in enumerate(out["lengths"])],
                                [np.ones(n) for n in out["lengths"]],
                                [out["model_logprobs"][b, :n] for b, n in enumerate(out["lengths"])], 32)
        np.testing.assert_allclose(np.asarray(logp_BW)[m], model_rows["old_logp"][m], atol=1e-5)
    assert np.all(np.asarray(entropy_BW)[m] >= 0)


def test_build_rows_layout():
    rows = build_rows([np.array([257, 65, 66])], [np.array([67, EOS_ID])], [np.array([1.0, 1.0])],
                      [np.array([-0.5, -0.25])], width=6)
    np.testing.assert_array_equal(rows["inputs"][0], [257, 65, 66, 67, PAD_ID, PAD_ID])
    np.testing.assert_array_equal(rows["targets"][0], [65, 66, 67, EOS_ID, PAD_ID, PAD_ID])
    np.testing.assert_array_equal(rows["mask"][0], [0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(rows["old_logp"][0], [0, 0, -0.5, -0.25, 0, 0])
    np.testing.assert_array_equal(rows["segment_ids"][0], [1, 1, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="width"):
        build_rows([np.array([257, 65, 66])], [np.array([67, 68, 69, 70, 71])],
                   [np.ones(5)], [np.zeros(5)], width=6)


def test_pass_at_k_hand_values():
    assert pass_at_k(4, 0, 2) == 0.0
    assert pass_at_k(4, 3, 2) == 1.0  # fewer than k wrong samples
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_soft_overlong_penalty_hand_values():
    # L_max 10, buffer 4: free up to 6, then -(|y| - 6) / 4, -1 past 10
    np.testing.assert_allclose(soft_overlong_penalty([3, 6, 7, 9, 10, 11], 10, 4),
                               [0, 0, -0.25, -0.75, -1.0, -1.0])
    with pytest.raises(ValueError, match="buffer"):
        soft_overlong_penalty([1], 10, 0)


def test_informative_groups():
    np.testing.assert_array_equal(informative_groups([[1, 1, 1], [0, 1, 0], [0, 0, 0]]), [False, True, False])


def test_decode_and_score_untrusted_output():
    task = tasks_lib.get("arithmetic")
    ex = task.generate(np.random.default_rng(0), 1)
    answer = np.frombuffer(ex.answer.encode(), np.uint8).astype(np.int32)
    tokens = np.concatenate([answer, [EOS_ID, 65]])
    mask = np.concatenate([np.ones(len(answer) + 1), [0]])
    text = decode_response(tokens, mask)
    assert text == ex.answer
    junk = "\udcff" * 3 + "\x00" * 5000  # over-long hostile text scores 0, never raises
    rewards, correct = score_responses([ex, ex, ex], [text, "x", junk], format_coef=0.5)
    np.testing.assert_allclose(correct, [1, 0, 0])
    np.testing.assert_allclose(rewards, [1.5, 0, 0])


def test_curriculum_keeps_partially_solved_prompts():
    cur = PassRateCurriculum(4, cooldown=3)
    cur.update([0, 1, 2], [0.0, 0.5, 1.0], rollout=0)
    np.testing.assert_array_equal(cur.eligible(1), [False, True, False, True])
    np.testing.assert_array_equal(cur.eligible(3), [True, True, True, True])  # cooled down
    picked = cur.select(np.random.default_rng(0), 3, 1)
    assert sorted(picked[:2]) == [1, 3] and len(set(picked)) == 3
    restored = PassRateCurriculum(4, cooldown=3)
    restored.set_state(cur.get_state())
    np.testing.assert_array_equal(restored.eligible(1), cur.eligible(1))


def test_reflection_rows_mask_only_the_reflection(params):
    contexts = [reflect_lib.reflection_context("1+2=", np.array([52, EOS_ID]))] * 2
    rl = RLConfig(max_new_tokens=4, reflect_max_tokens=5)
    out = reflect_lib.reflect_and_retry(params, CFG, contexts, jax.random.key(0),
                                        reflect_cfg=rl.reflect_sample_config(), answer_cfg=rl.sample_config())
    tokens, masks, logps = reflect_lib.reflection_responses(out)
    rows = build_rows(contexts, tokens, masks, logps, width=48)
    for b in range(2):
        n_f = len(out["reflection"][b])
        assert rows["mask"][b].sum() == n_f
        start = len(contexts[b]) - 1
        np.testing.assert_array_equal(rows["targets"][b, start:start + n_f], out["reflection"][b])
    logp, _ = policy_logprobs(params, rows, CFG, rl.reflect_sample_config())
    m = rows["mask"] > 0
    np.testing.assert_allclose(np.asarray(logp)[m], rows["old_logp"][m], atol=1e-5)


def test_gradient_accumulation_equals_large_batch(params):
    sample = default_sample_config(8, 1.0)
    out = sample_completions(params, CFG, PROMPTS * 2, jax.random.key(3), sample)
    rows = build_rows(PROMPTS * 2, *sampled_responses(out), width=24)
    rows["advantages"] = np.linspace(-1, 1, 8).astype(np.float32)
    rows["old_logp"] = rows["old_logp"] + 0.1 * rows["mask"]  # off-policy: ratios != 1
    batch = jax.tree.map(jnp.asarray, rows)
    for aggregation in ("seq-mean-token-mean",):  # per-row means: the harder case
        rl = RLConfig(eps_high=0.28, aggregation=aggregation)
        fn = functools.partial(rl_loss_sums, model_cfg=CFG, rl=rl)
        g1, s1 = accumulate_gradients(fn, params, batch, jax.random.key(0), 1)
        g4, s4 = accumulate_gradients(fn, params, batch, jax.random.key(0), 4)
        m1, m4 = normalize_rl_sums(s1), normalize_rl_sums(s4)
        np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5, atol=1e-7)
        for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g4)):
            np.testing.assert_allclose(a / s1["count"], b / s4["count"], rtol=1e-4, atol=1e-7)
