"""The KV-cache generation loop against full-sequence ``transformer.apply`` recomputation."""

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.config import apply_overrides
from jaxlab.models import transformer
from jaxlab.samplers import SampleConfig, SampleOutput, generate, pad_prompts, process_logits

process_jit = jax.jit(process_logits, static_argnums=1)
PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3, 5, 8, 9, 7], [2, 7, 1]]
PAD = 0


L_MAX = 16  # uncached forward passes run on sequences right-padded to this length


@pytest.fixture(scope="module")
def apply_jit(model_cfg):
    return jax.jit(lambda params, tokens_BT: transformer.apply(params, tokens_BT, model_cfg))


@pytest.fixture(scope="module")
def seq_logits(params, apply_jit):
    """Logits [len(seq), V] of one uncached ``transformer.apply`` pass over ``seq``.

    The sequence is right-padded to L_MAX (one compile for every length): under causal
    attention the logits at positions < len(seq) do not depend on the padding.
    """
    def fn(seq):
        seq = np.asarray(seq, np.int32)
        assert seq.size <= L_MAX
        padded = np.zeros((1, L_MAX), np.int32)
        padded[0, :seq.size] = seq
        return apply_jit(params, jnp.asarray(padded))[0, :seq.size]
    return fn


def run(params, model_cfg, prompts, sample_cfg, seed=0):
    tokens_BT, mask_BT = pad_prompts(prompts, PAD)
    return generate(params, model_cfg, tokens_BT, mask_BT, jax.random.PRNGKey(seed), sample_cfg)


# ---------------------------------------------------------------- configs and inputs


def test_sample_config_validation():
    for bad, match in [
        (dict(temperature=-0.1), "temperature"),
        (dict(temperature=math.nan), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.01), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(min_p=1.5), "min_p"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(stop_tokens=(-1,)), "stop_tokens"),
        (dict(stop_tokens=(1.5,)), "stop_tokens"),
    ]:
        with pytest.raises(ValueError, match=match):
            SampleConfig(**bad)
    cfg = SampleConfig(stop_tokens=[1, 2])
    assert cfg.stop_tokens == (1, 2) and hash(cfg) == hash(SampleConfig(stop_tokens=(1, 2)))
    # every field can be set from the command line
    cfg = apply_overrides(SampleConfig(), ["max_new_tokens=7", "temperature=0", "top_k=4",
                                           "top_p=0.9", "min_p=0.05", "stop_tokens=1,2", "pad_id=3"])
    assert cfg == SampleConfig(max_new_tokens=7, temperature=0.0, top_k=4, top_p=0.9, min_p=0.05,
                               stop_tokens=(1, 2), pad_id=3)


def test_pad_prompts_left_pads():
    tokens_BT, mask_BT = pad_prompts([[5, 6], np.array([7, 8, 9]), [4]], pad_id=1)
    np.testing.assert_array_equal(tokens_BT, [[1, 5, 6], [7, 8, 9], [1, 1, 4]])
    np.testing.assert_array_equal(mask_BT, [[0, 1, 1], [1, 1, 1], [0, 0, 1]])
    assert tokens_BT.dtype == np.int32 and mask_BT.dtype == np.int32
    with pytest.raises(ValueError, match="at least one prompt"):
        pad_prompts([], 0)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        pad_prompts([[1], []], 0)
    with pytest.raises(ValueError, match="1-D"):
        pad_prompts([[[1, 2]]], 0)
    with pytest.raises(ValueError, match="integer"):
        pad_prompts([[1.5]], 0)


def test_generate_rejects_bad_inputs(params, model_cfg):
    tokens_BT, mask_BT = pad_prompts(PROMPTS, PAD)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="left-padded"):
        generate(params, model_cfg, tokens_BT, mask_BT[:, ::-1], key, SampleConfig(max_new_tokens=2))
    with pytest.raises(ValueError, match="vocabulary"):
        generate(params, model_cfg, tokens_BT, mask_BT, key, SampleConfig(stop_tokens=(32,)))
    with pytest.raises(ValueError, match="shape"):
        generate(params, model_cfg, tokens_BT, mask_BT[:, 1:], key, SampleConfig())


# ---------------------------------------------------------------- greedy


GREEDY = SampleConfig(max_new_tokens=6, temperature=0.0)


def test_greedy_equals_argmax_of_uncached_forward(params, model_cfg, seq_logits):
    N = GREEDY.max_new_tokens
    out = run(params, model_cfg, PROMPTS, GREEDY)
    assert isinstance(out, SampleOutput)
    chex.assert_shape([out.tokens, out.logprobs, out.model_logprobs, out.mask], (len(PROMPTS), N))
    chex.assert_type([out.tokens, out.logprobs, out.mask, out.lengths], [jnp.int32, jnp.float32,
                                                                          jnp.int32, jnp.int32])
    np.testing.assert_array_equal(out.mask, 1)
    np.testing.assert_array_equal(out.lengths, N)
    np.testing.assert_array_equal(out.logprobs, 0.0)  # a point mass
    for b, prompt in enumerate(PROMPTS):
        seq = list(prompt)
        for _ in range(N):  # the growing sequence, no cache
            seq.append(int(jnp.argmax(seq_logits(seq)[-1])))
        np.testing.assert_array_equal(out.tokens[b], seq[len(prompt):])
        model_lp_N = jax.nn.log_softmax(seq_logits(seq)[len(prompt) - 1:-1])[np.arange(N), out.tokens[b]]
        np.testing.assert_allclose(out.model_logprobs[b], model_lp_N, atol=1e-5)


def test_tiny_temperature_equals_greedy(params, model_cfg):
    greedy = run(params, model_cfg, PROMPTS, GREEDY)
    cold = run(params, model_cfg, PROMPTS, dataclasses.replace(GREEDY, temperature=1e-6), seed=5)
    np.testing.assert_array_equal(cold.tokens, greedy.tokens)
    np.testing.assert_allclose(cold.logprobs, 0.0, atol=1e-6)  # the distribution is a point mass
    np.testing.assert_allclose(cold.model_logprobs, greedy.model_logprobs, atol=1e-6)


def test_left_padding_does_not_change_results(params, model_cfg):
    # two prompt lengths (2 and 7) in one batch: two compiles for the prompts alone
    prompts = [PROMPTS[1], PROMPTS[2], [4, 4], [1, 2, 3, 4, 5, 6, 7]]
    batch = run(params, model_cfg, prompts, GREEDY)
    for b, prompt in enumerate(prompts):
        alone = run(params, model_cfg, [prompt], GREEDY)
        np.testing.assert_array_equal(batch.tokens[b], alone.tokens[0])
        np.testing.assert_allclose(batch.model_logprobs[b], alone.model_logprobs[0], atol=1e-5)


# ---------------------------------------------------------------- sampled


SAMPLED = SampleConfig(max_new_tokens=8, temperature=0.8, top_k=12, top_p=0.9, min_p=0.05)


def test_logprobs_match_uncached_recomputation(params, model_cfg, seq_logits):
    out = run(params, model_cfg, PROMPTS, SAMPLED, seed=3)
    np.testing.assert_array_equal(out.mask, 1)
    assert np.all(np.asarray(out.logprobs) < 0) and np.all(np.isfinite(out.logprobs))
    for b, prompt in enumerate(PROMPTS):
        logits_NV = seq_logits(np.concatenate([prompt, out.tokens[b]]))[len(prompt) - 1:-1]
        rows = np.arange(SAMPLED.max_new_tokens)
        model_lp_N = jax.nn.log_softmax(logits_NV)[rows, out.tokens[b]]
        np.testing.assert_allclose(out.model_logprobs[b], model_lp_N, atol=1e-5)
        lp_N = process_jit(logits_NV, SAMPLED)[rows, out.tokens[b]]
        np.testing.assert_allclose(out.logprobs[b], lp_N, atol=1e-5)


def test_same_key_same_output_and_jit_compatible(params, model_cfg):
    tokens_BT, mask_BT = pad_prompts(PROMPTS, PAD)
    key = jax.random.PRNGKey(7)
    a = generate(params, model_cfg, tokens_BT, mask_BT, key, SAMPLED)
    outer = jax.jit(generate, static_argnames=("model_cfg", "sample_cfg"))
    b = outer(params, model_cfg, jnp.asarray(tokens_BT), jnp.asarray(mask_BT), key, SAMPLED)
    chex.assert_trees_all_equal(a, b)
    c = generate(params, model_cfg, tokens_BT, mask_BT, jax.random.PRNGKey(8), SAMPLED)
    assert not np.array_equal(a.tokens, c.tokens)


def l1_bound(n: int, support: int, delta: float = 1e-9) -> float:
    """eps with P(||p_hat - p||_1 >= eps) <= delta for n samples on ``support`` outcomes
    (Bretagnolle-Huber-Carol: P <= 2^support exp(-n eps^2 / 2))."""
    return math.sqrt(2.0 * (support * math.log(2.0) + math.log(1.0 / delta)) / n)


@pytest.mark.parametrize("cfg", [
    SampleConfig(max_new_tokens=2, temperature=0.6, top_k=5),
    SampleConfig(max_new_tokens=2, temperature=1.5, top_p=0.7, min_p=0.2),
])
def test_sampled_distribution_matches_processed(params, model_cfg, seq_logits, cfg):
    """n rows with one prompt are n independent draws; the empirical law of the first token,
    and of the first two tokens jointly, must be within a 1e-9-probability L1 bound of
    q(y0) and q(y0) q(y1 | y0) under the processed distribution."""
    n, V = 20_000, model_cfg.vocab_size
    prompt = PROMPTS[0]
    out = run(params, model_cfg, [prompt] * n, cfg, seed=11)
    chex.assert_shape(out.tokens, (n, 2))
    y0, y1 = np.asarray(out.tokens[:, 0]), np.asarray(out.tokens[:, 1])

    logits_1V = seq_logits(prompt)[-1:]
    logq_V = np.asarray(process_jit(logits_1V, cfg)[0])
    support_V = np.isfinite(logq_V)
    assert 1 < support_V.sum() < V  # the filter is active and not trivial
    assert support_V[y0].all(), "sampled a token outside the kept set"
    q_V = np.exp(logq_V.astype(np.float64))
    eps = l1_bound(n, int(support_V.sum()))
    assert np.abs(np.bincount(y0, minlength=V) / n - q_V).sum() < eps
    # the test has the power to see a sampler that ignores the processing
    p_V = np.exp(np.asarray(jax.nn.log_softmax(logits_1V[0]), np.float64))
    assert np.abs(p_V - q_V).sum() > 3 * eps
    np.testing.assert_allclose(out.logprobs[:, 0], logq_V[y0], atol=1e-5)

    # the second token: q(y1 | y0) from an uncached pass over prompt + [y0]
    joint_VV = np.zeros((V, V))
    for t in np.flatnonzero(support_V):
        logq1_V = np.asarray(process_jit(seq_logits(prompt + [int(t)])[-1:], cfg)[0])
        joint_VV[t] = q_V[t] * np.exp(logq1_V.astype(np.float64))
        rows = y0 == t
        assert np.isfinite(logq1_V[y1[rows]]).all(), "second token outside the kept set"
    counts_VV = np.zeros((V, V))
    np.add.at(counts_VV, (y0, y1), 1)
    eps2 = l1_bound(n, int((joint_VV > 0).sum()))
    assert np.abs(counts_VV / n - joint_VV).sum() < eps2


# ---------------------------------------------------------------- stop tokens and lengths


def expected_truncation(tokens_BN, stop_tokens):
    lengths = []
    for row in np.asarray(tokens_BN):
        hits = np.flatnonzero(np.isin(row, stop_tokens))
        lengths.append(hits[0] + 1 if hits.size else row.size)
    return np.array(lengths)


@pytest.mark.parametrize("free_cfg, seed", [(GREEDY, 0), (SAMPLED, 3)])
def test_stop_tokens_mask_and_lengths(params, model_cfg, free_cfg, seed):
    N = free_cfg.max_new_tokens
    free = run(params, model_cfg, PROMPTS, free_cfg, seed=seed)
    # a stop token that first appears in row 0 after its first token
    row0 = np.asarray(free.tokens[0])
    stop = next(int(t) for j, t in enumerate(row0) if j >= 1 and t not in row0[:j])
    cfg = dataclasses.replace(free_cfg, stop_tokens=(stop,), pad_id=31)
    out = run(params, model_cfg, PROMPTS, cfg, seed=seed)
    lengths_B = expected_truncation(free.tokens, [stop])
    assert 1 < lengths_B[0] < N
    np.testing.assert_array_equal(out.lengths, lengths_B)
    mask_BN = np.arange(N)[None, :] < lengths_B[:, None]
    np.testing.assert_array_equal(out.mask, mask_BN)
    # up to and including the stop token the output equals the unstopped run (same key);
    # after it: pad_id, logprob 0
    np.testing.assert_array_equal(np.where(mask_BN, free.tokens, 31), out.tokens)
    np.testing.assert_allclose(np.where(mask_BN, free.model_logprobs, 0.0), out.model_logprobs,
                               atol=1e-6)
    np.testing.assert_allclose(np.where(mask_BN, free.logprobs, 0.0), out.logprobs, atol=1e-6)


def test_all_rows_stop_at_once(params, model_cfg):
    """Every token stops: the loop ends after the first token; max_new_tokens slots remain."""
    every = tuple(range(model_cfg.vocab_size))
    out = run(params, model_cfg, PROMPTS, SampleConfig(max_new_tokens=5, stop_tokens=every, pad_id=-1))
    chex.assert_shape(out.tokens, (len(PROMPTS), 5))
    np.testing.assert_array_equal(out.lengths, 1)
    np.testing.assert_array_equal(out.tokens[:, 1:], -1)
    np.testing.assert_array_equal(out.mask, np.broadcast_to(np.arange(5) < 1, (len(PROMPTS), 5)))
    assert np.all(np.asarray(out.tokens[:, 0]) >= 0)


def test_shared_prefill_samples_equal_repeated_prompts_and_top_logprobs(params, model_cfg, seq_logits):
    """samples_per_prompt S: the draws of the prompts each repeated S times, from one prefill per
    prompt; top_logprobs: the k largest log_softmax values of the uncached logits, descending."""
    cfg = dataclasses.replace(SAMPLED, top_logprobs=3)
    tokens_BT, mask_BT = pad_prompts(PROMPTS[:2], PAD)
    shared = generate(params, model_cfg, tokens_BT, mask_BT, jax.random.PRNGKey(4), cfg, samples_per_prompt=2)
    repeated = run(params, model_cfg, [PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1]], cfg, seed=4)
    np.testing.assert_array_equal(shared.tokens, repeated.tokens)
    np.testing.assert_allclose(shared.top_logprobs, repeated.top_logprobs, atol=1e-5)
    chex.assert_shape(shared.top_logprobs, (4, cfg.max_new_tokens, 3))
    for b, prompt in enumerate([PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1]]):
        logits_NV = seq_logits(np.concatenate([prompt, shared.tokens[b]]))[len(prompt) - 1:-1]
        top_N3 = -np.sort(-np.asarray(jax.nn.log_softmax(logits_NV)), axis=-1)[:, :3]
        np.testing.assert_allclose(shared.top_logprobs[b], top_N3, atol=1e-5)
    with pytest.raises(ValueError, match="samples_per_prompt"):
        generate(params, model_cfg, tokens_BT, mask_BT, jax.random.PRNGKey(4), cfg, samples_per_prompt=0)
    with pytest.raises(ValueError, match="top_logprobs"):
        SampleConfig(top_logprobs=-1)
