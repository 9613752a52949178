"""The Byte Latent Transformer (jaxlab.models.blt): hashed n-grams follow their formula, no
future byte reaches a logit (every patching), gradients are finite and the entropy model gets
none, packed sequences keep apart, greedy generation follows the full forward pass, and the
family plugs into the config and the param-axes table."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import config as config_lib, models
from jaxlab.models import blt, transformer
from jaxlab.samplers import SampleConfig, generate, pad_prompts
from jaxlab.train.config import ExperimentConfig

TINY = dict(vocab_size=264, d_model=32, n_layers=1, n_heads=2, head_dim=16, mlp_dim=64, d_local=16,
            local_heads=2, local_mlp_dim=32, local_window=8, ngram_table_size=64, entropy_d_model=16)
T = 32
STATIC = blt.Config(**TINY, patching="static", patch_size=3)
ENTROPY = blt.Config(**TINY, patching="entropy", entropy_rule="monotonic", entropy_threshold=0.0, max_patch_len=3)
APPLY = jax.jit(blt.apply, static_argnums=2)  # one compile per config and shape, shared by the tests
STARTS = jax.jit(blt.patch_starts, static_argnums=2)


@pytest.fixture(scope="module")
def static_params():
    return blt.init(STATIC, jax.random.key(1))


@pytest.fixture(scope="module")
def entropy_params(static_params):  # the same shapes plus the entropy model (one init compile fewer)
    return {**static_params, "entropy": transformer.init(ENTROPY.entropy_model, jax.random.key(2))}


def _bytes(seed, shape=(2, T)):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, shape), jnp.int32)


def test_ngram_hashes_follow_the_formula_and_restart_with_each_sequence():
    tokens = np.random.default_rng(0).integers(0, 259, (2, 12))
    positions = np.concatenate([np.arange(5), np.arange(7)])[None].repeat(2, 0)  # two sequences per row
    sizes, M = (3, 5), 97
    ids = np.asarray(blt.ngram_hashes(jnp.asarray(tokens), jnp.asarray(positions), sizes, M))
    for k, n in enumerate(sizes):
        for b in range(2):
            for t in range(12):
                h = sum((int(tokens[b, t - i]) + 1 if positions[b, t] >= i else 0) * blt.HASH_BASE ** i
                        for i in range(n)) % 2 ** 32 % M
                assert ids[k, b, t] == h
    again = blt.ngram_hashes(jnp.asarray(tokens), jnp.asarray(positions), sizes, M)
    np.testing.assert_array_equal(ids, again)  # deterministic
    assert blt.ngram_hashes(jnp.asarray(tokens), jnp.asarray(positions), (), M).shape == (0, 2, 12)  # no n-grams
    other = tokens.copy()
    other[:, :5] = 7  # the first sequence changes: the second's hashes do not
    np.testing.assert_array_equal(
        np.asarray(blt.ngram_hashes(jnp.asarray(other), jnp.asarray(positions), sizes, M))[:, :, 5:], ids[:, :, 5:])


@pytest.mark.parametrize("which", ["static", "entropy"])
def test_no_future_byte_reaches_a_logit(which, static_params, entropy_params):
    cfg, params = (STATIC, static_params) if which == "static" else (ENTROPY, entropy_params)
    x = _bytes(2)
    logits, starts = APPLY(params, x, cfg), STARTS(params, x, cfg)
    assert logits.shape == (2, T, 264) and logits.dtype == jnp.float32
    n_patches = np.asarray(starts).sum(1)
    assert np.all((n_patches > 2) & (n_patches < T))  # a real patching, neither one patch nor bytes
    for t in (0, 6, 19, T - 2):  # logits_t predicts byte t + 1: bytes t + 1.. change, logits <= t do not
        changed = x.at[:, t + 1:].set((x[:, t + 1:] + 1 + t) % 256)
        new_logits, new_starts = APPLY(params, changed, cfg), STARTS(params, changed, cfg)
        np.testing.assert_array_equal(new_starts[:, :t + 1], starts[:, :t + 1])
        np.testing.assert_allclose(new_logits[:, :t + 1], logits[:, :t + 1], atol=1e-5)
        assert float(jnp.abs(new_logits[:, t + 1:] - logits[:, t + 1:]).max()) > 1e-3


def test_fewer_latent_slots_change_nothing_while_every_patch_has_one(static_params):
    """max_patches = P < T packs the latent transformer into P slots: with T / 3 patches per
    row (static, k = 3), any P >= 11 gives the P = T logits; with fewer slots the bytes past
    the last slot join the last patch and still no future byte reaches a logit."""
    x = _bytes(4)
    full = APPLY(static_params, x, STATIC)
    packed = APPLY(static_params, x, dataclasses.replace(STATIC, max_patches=11))
    np.testing.assert_allclose(packed, full, atol=1e-5)
    short = dataclasses.replace(STATIC, max_patches=6)  # patches 6.. (bytes 18..) join patch 5
    logits = APPLY(static_params, x, short)
    np.testing.assert_allclose(logits[:, :18], full[:, :18], atol=1e-5)  # bytes before the overflow
    assert float(jnp.abs(logits[:, 18:] - full[:, 18:]).max()) > 1e-3
    for t in (3, 16, 25):
        changed = x.at[:, t + 1:].set((x[:, t + 1:] + 1 + t) % 256)
        np.testing.assert_allclose(APPLY(static_params, changed, short)[:, :t + 1], logits[:, :t + 1], atol=1e-5)
    assert blt.num_patch_slots(short, T) == 6 and blt.num_patch_slots(STATIC, T) == T


def test_gradients_are_finite_and_the_entropy_model_gets_none(entropy_params):
    x = _bytes(5, (2, T + 1))

    def loss(p):
        logp = jax.nn.log_softmax(blt.apply(p, x[:, :-1], ENTROPY))
        return -jnp.mean(jnp.take_along_axis(logp, x[:, 1:, None], -1))

    value, grads = jax.jit(jax.value_and_grad(loss))(entropy_params)
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["entropy"]))
    for name in ("ngram_embed", "encoder", "patch_cross", "latent", "byte_cross", "decoder", "head"):
        assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads[name])) > 0, name


def test_packed_sequences_get_their_logits_alone(static_params):
    a, b = _bytes(6, (11,)), _bytes(7, (14,))
    pad = jnp.zeros((T - 25,), jnp.int32)
    packed = jnp.concatenate([a, b, pad])
    alone = jnp.concatenate([b, jnp.zeros((T - 14,), jnp.int32)])
    tokens = jnp.stack([packed, alone])
    segments = jnp.stack([jnp.array([1] * 11 + [2] * 14 + [0] * (T - 25)), jnp.array([1] * 14 + [0] * (T - 14))])
    positions = jnp.stack([jnp.concatenate([jnp.arange(11), jnp.arange(14), jnp.zeros(T - 25, int)]),
                           jnp.concatenate([jnp.arange(14), jnp.zeros(T - 14, int)])])
    logits = APPLY(static_params, tokens, STATIC, positions_BT=positions, segment_ids_BT=segments)
    np.testing.assert_allclose(logits[0, 11:25], logits[1, :14], atol=1e-5)


def test_greedy_generation_follows_the_full_forward_pass(static_params):
    prompts = [[257, 72, 105, 33, 10], [257, 65]]  # different lengths: the second is left-padded
    tokens, mask = pad_prompts(prompts, pad_id=256)
    out = generate(static_params, STATIC, tokens, mask, jax.random.key(0),
                   SampleConfig(max_new_tokens=5, temperature=0.0, pad_id=256))
    for prompt, row in zip(prompts, np.asarray(out.tokens)):
        seq = prompt + row.tolist()
        padded = jnp.asarray([seq + [0] * (T - len(seq))] * 2)  # the tests' shape; the tail is causal-safe
        logits = APPLY(static_params, padded, STATIC)[0]
        assert row.tolist() == np.asarray(jnp.argmax(logits[len(prompt) - 1:len(seq) - 1], -1)).tolist()


def test_family_switch_param_axes_and_count(static_params, entropy_params):
    cfg = config_lib.apply_overrides(ExperimentConfig(), ["model.family=blt", "model.d_local=32"])
    assert isinstance(cfg.model, blt.Config) and cfg.model.d_local == 32
    assert cfg.model.d_model == ExperimentConfig().model.d_model  # shared fields carried over
    assert config_lib.from_dict(ExperimentConfig, json.loads(config_lib.to_json(cfg))) == cfg
    assert models.module(cfg.model) is blt
    shapes = jax.eval_shape(lambda k: blt.init(ENTROPY, k), jax.random.key(0))
    assert jax.tree.map(jnp.shape, shapes) == jax.tree.map(jnp.shape, entropy_params)
    for path, leaf in jax.tree_util.tree_leaves_with_path(shapes):
        name = "/".join(p.key for p in path)
        assert len(blt.param_axes(name)) == leaf.ndim, name
    total = sum(x.size for x in jax.tree.leaves(shapes))
    assert blt.count_params(shapes) == total - sum(x.size for x in jax.tree.leaves(shapes["entropy"]))
    with pytest.raises(ValueError, match="model.d_local"):
        blt.Config(d_local=30, local_heads=4)
    with pytest.raises(ValueError, match="patch_starts_BT"):
        blt.apply(static_params, _bytes(0), STATIC, patch_starts_BT=jnp.ones((2, 3), bool))


def test_the_pallas_kernel_serves_the_patch_local_masks(static_params):
    x = _bytes(8)
    pallas = dataclasses.replace(STATIC, attention_impl="pallas")  # interpreted on CPU
    np.testing.assert_allclose(APPLY(static_params, x, pallas), APPLY(static_params, x, STATIC), atol=1e-4)
