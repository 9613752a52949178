"""Byte patching (jaxlab.models.patching): the entropy rules on known values, incremental
patching (a prefix's boundaries are the whole text's on that prefix) for every rule, patch ids
and lengths, and the causal entropy model (a prefix's entropies equal the whole text's)."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, strategies as st

from jaxlab.models import patching, transformer

T = 24
entropies = st.lists(st.floats(0.0, 6.0, allow_nan=False, width=32), min_size=T, max_size=T)
byte_rows = st.lists(st.sampled_from([32, 46, 10, 97, 98, 122, 48, 65, 200, 257]), min_size=T, max_size=T)


def test_rules_on_known_entropies():
    next_H = jnp.array([3.0, 0.5, 0.2, 2.5, 2.6, 0.1, 1.0, 0.4])
    H = patching.byte_entropy(next_H)  # H(x_t) = next_H[t - 1], H(x_0) = inf
    np.testing.assert_array_equal(H[1:], next_H[:-1])
    assert H[0] == jnp.inf
    glob = patching.patch_starts_global(H, 2.0)  # H = [inf, 3, .5, .2, 2.5, 2.6, .1, 1]
    np.testing.assert_array_equal(glob, [1, 1, 0, 0, 1, 1, 0, 0])
    mono = patching.patch_starts_monotonic(H, 0.5)  # rises: 3-inf, -2.5, -.3, 2.3, .1, -2.5, .9
    np.testing.assert_array_equal(mono, [1, 0, 0, 0, 1, 0, 0, 1])
    ids = patching.patch_ids(glob)
    np.testing.assert_array_equal(ids, [0, 1, 1, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(patching.patch_lengths(glob, 6), [1, 3, 1, 3, 0, 0])
    limited = patching.limit_patch_length(glob, 2)
    np.testing.assert_array_equal(limited, [1, 1, 0, 1, 1, 1, 0, 1])
    assert int(patching.patch_lengths(limited, 8).max()) == 2


def test_space_and_static_rules():
    text = b"ab  cd.e\nfg"
    starts = patching.patch_starts_space(jnp.array(list(text)))
    # patches: "ab  ", "cd.", "e\n", "fg"
    np.testing.assert_array_equal(np.flatnonzero(starts), [0, 4, 7, 9])
    np.testing.assert_array_equal(patching.patch_starts_static(jnp.arange(7), 3), [1, 0, 0, 1, 0, 0, 1])


PREFIXES = st.sampled_from([1, 2, 7, 13, T])  # few shapes: each compiles once


@given(entropies, PREFIXES, st.floats(0.5, 5.0), st.integers(1, 5))
def test_patching_is_incremental(values, k, theta, max_len):
    H = patching.byte_entropy(jnp.array(values, jnp.float32))
    for rule in (patching.patch_starts_global, patching.patch_starts_monotonic):
        full = rule(H, theta)
        np.testing.assert_array_equal(rule(H[:k], theta), full[:k])
        limited = patching.limit_patch_length(full, max_len)
        np.testing.assert_array_equal(patching.limit_patch_length(rule(H[:k], theta), max_len), limited[:k])
        np.testing.assert_array_equal(patching.patch_ids(rule(H[:k], theta)), patching.patch_ids(full)[:k])
        assert int(patching.patch_lengths(limited, T).max()) <= max_len
        assert int(patching.patch_lengths(limited, T).sum()) == T


@given(byte_rows, PREFIXES)
def test_space_patching_is_incremental(row, k):
    x = jnp.array(row)
    np.testing.assert_array_equal(patching.patch_starts_space(x[:k]), patching.patch_starts_space(x)[:k])


def test_causal_entropy_of_a_prefix_equals_the_full_texts():
    cfg = transformer.Config(vocab_size=264, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2, head_dim=8,
                             mlp_dim=32)
    params = transformer.init(cfg, jax.random.key(0))
    both = jax.jit(lambda x: (transformer.apply(params, x, cfg), patching.next_byte_entropy(params, cfg, x)))
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32)))
    logits, full = both(x)
    _, prefix = both(x[:, :13])
    np.testing.assert_allclose(prefix, full[:, :13], rtol=1e-5, atol=1e-5)
    _, changed = both(x.at[:, 13:].set(7))  # the future changed: the past's entropies are not
    np.testing.assert_allclose(changed[:, :13], full[:, :13], rtol=1e-5, atol=1e-5)
    assert full.shape == (2, 32) and bool(jnp.all((full > 0) & (full <= np.log(264) + 1e-4)))
    p = jax.nn.softmax(logits, axis=-1)  # the formula: -sum_v p log p of the model's softmax
    np.testing.assert_allclose(full, -jnp.sum(p * jnp.log(p), axis=-1), rtol=1e-5)
