"""Sequence log-probs, DFT and importance-weighted SFT (jaxlab.losses.lm)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxlab.losses.lm import (
    cross_entropy,
    dft_loss,
    dft_sums,
    importance_weighted_loss,
    importance_weighted_sums,
    importance_weights,
    normalize_sums,
    segment_logprobs,
    segment_sums,
    sequence_logprobs,
)

LN2, LN3 = np.log(2.0), np.log(3.0)
_dft = jax.jit(dft_loss)
_ce = jax.jit(cross_entropy)


def test_sequence_logprobs_hand_computed():
    # Row 0: logits [0, ln 3] -> p = (1/4, 3/4). Targets 1, 0, 1 with mask 1, 0, 1:
    #   log(3/4) + log(3/4). Row 1: uniform over 2 -> log(1/2) per token, mask 1, 1, 0.
    logits = jnp.array([[[0.0, LN3]] * 3, [[0.0, 0.0]] * 3])
    targets = jnp.array([[1, 0, 1], [0, 1, 1]])
    mask = jnp.array([[1, 0, 1], [1, 1, 0]])
    logp, count = sequence_logprobs(logits, targets, mask)
    np.testing.assert_allclose(logp, [2 * np.log(0.75), 2 * np.log(0.5)], rtol=1e-6)
    np.testing.assert_array_equal(count, [2.0, 2.0])


def test_segment_sums_drop_padding_and_extra_segments():
    values = jnp.array([[1.0, 2.0, 4.0, 8.0, 16.0, 32.0]])
    seg = jnp.array([[1, 1, 2, 0, 3, 2]])
    # segment 1: 1 + 2; segment 2: 4 + 32; segment 3 is beyond num_segments=2; id 0 is padding.
    np.testing.assert_array_equal(segment_sums(values, seg, 2), [[3.0, 36.0]])
    np.testing.assert_array_equal(segment_sums(values, seg, 4), [[3.0, 36.0, 16.0, 0.0]])


def test_segment_logprobs_equal_the_rows_they_pack():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 7, 5)).astype(np.float32)
    targets = rng.integers(0, 5, (1, 7))
    mask = jnp.array([[0, 1, 1, 0, 1, 1, 0]])
    seg = jnp.array([[1, 1, 1, 2, 2, 2, 0]])
    logp_BS, count_BS = jax.jit(segment_logprobs, static_argnums=4)(logits, targets, mask, seg, 3)
    seq = jax.jit(sequence_logprobs)
    a = seq(logits[:, :3], targets[:, :3], mask[:, :3])
    b = seq(logits[:, 3:6], targets[:, 3:6], mask[:, 3:6])
    np.testing.assert_allclose(logp_BS[0], [a[0][0], b[0][0], 0.0], rtol=1e-6)
    np.testing.assert_array_equal(count_BS[0], [2.0, 2.0, 0.0])


# ---------------------------------------------------------------- DFT

def test_dft_uniform_logits_is_cross_entropy_over_vocab():
    # Uniform logits over V: p = 1/V, nll = ln V, DFT = ln V / V (V = 2: CE / 2).
    for V in (2, 5):
        logits = jnp.zeros((2, 3, V))
        targets = jnp.zeros((2, 3), jnp.int32)
        loss, m = dft_loss(logits, targets)
        np.testing.assert_allclose(loss, np.log(V) / V, rtol=1e-6)
        np.testing.assert_allclose(m["nll"], np.log(V), rtol=1e-6)
        np.testing.assert_allclose(m["prob"], 1.0 / V, rtol=1e-6)


def test_dft_hand_computed_with_mask():
    # Token 0: logits [0, ln 3], target 1: p = 3/4, nll = ln(4/3), l = 3/4 ln(4/3).
    # Token 1: same logits, target 0: p = 1/4, nll = ln 4, l = 1/4 ln 4 = ln 2 / 2.
    # Token 2: masked out (junk logits). Mean over 2 tokens.
    logits = jnp.array([[[0.0, LN3], [0.0, LN3], [50.0, -50.0]]])
    targets = jnp.array([[1, 0, 1]])
    mask = jnp.array([[1.0, 1.0, 0.0]])
    loss, m = dft_loss(logits, targets, mask)
    expected = (0.75 * np.log(4 / 3) + 0.25 * np.log(4.0)) / 2
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(m["nll"], (np.log(4 / 3) + np.log(4.0)) / 2, rtol=1e-6)
    assert float(m["count"]) == 2.0


def test_dft_gradient_is_probability_weighted_cross_entropy_gradient():
    # d/dz [sg(p) nll] = p (softmax(z) - onehot): the weight is not differentiated.
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(2, 4, 6)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 6, (2, 4)))
    g = jax.jit(jax.grad(lambda z: dft_sums(z, targets)["loss"]))(logits)
    p_all = jax.nn.softmax(logits)
    p_t = jnp.take_along_axis(p_all, targets[..., None], axis=-1)
    expected = p_t * (p_all - jax.nn.one_hot(targets, 6))
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-7)


@given(seed=st.integers(0, 50))
def test_dft_is_at_most_cross_entropy_and_non_negative(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32) * 4
    targets = rng.integers(0, 7, (2, 5))
    dft, _ = _dft(logits, targets)
    ce, _ = _ce(logits, targets)
    assert 0.0 <= float(dft) <= float(ce)


@given(pad=st.integers(1, 5), seed=st.integers(0, 50))
def test_dft_padding_and_masked_junk_do_not_change_the_loss(pad, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(1, 4, 7)).astype(np.float32) * 3
    targets = rng.integers(0, 7, (1, 4))
    junk = rng.normal(size=(1, pad, 7)).astype(np.float32) * 100
    padded = np.concatenate([logits, junk], axis=1)
    padded_targets = np.concatenate([targets, np.full((1, pad), 3)], axis=1)
    mask = np.concatenate([np.ones((1, 4)), np.zeros((1, pad))], axis=1)
    np.testing.assert_allclose(_dft(padded, padded_targets, mask)[0],
                               _dft(logits, targets, np.ones((1, 4)))[0], rtol=1e-6)


@pytest.mark.parametrize("kind", ["dft", "iw"])
def test_micro_batch_sums_equal_the_large_batch_in_value_and_gradient(kind):
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.normal(size=(4, 6, 9)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 9, (4, 6)))
    mask = jnp.asarray(rng.uniform(size=(4, 6)) > 0.4, jnp.float32)  # uneven counts
    weights = jnp.asarray(rng.uniform(0.0, 2.0, (4, 6)), jnp.float32)

    def sums(z, rows):
        if kind == "dft":
            return dft_sums(z[rows], targets[rows], mask[rows])
        return importance_weighted_sums(z[rows], targets[rows], weights[rows], mask[rows])

    def full(z):
        s = sums(z, slice(0, 4))
        return s["loss"] / s["count"]

    def accumulated(z):
        parts = [sums(z, slice(i, i + 1)) for i in range(4)]
        total = jax.tree.map(lambda *xs: sum(xs), *parts)
        return total["loss"] / total["count"]

    np.testing.assert_allclose(jax.jit(accumulated)(logits), jax.jit(full)(logits), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(accumulated))(logits), jax.jit(jax.grad(full))(logits),
                               rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- iw-SFT

def test_importance_weighted_sft_hand_computed_token_and_sequence_weights():
    # Uniform logits over 2: nll = ln 2 per token. Token weights 0.5, 2, (masked) 9 ->
    # (0.5 ln 2 + 2 ln 2) / 2 tokens = 1.25 ln 2.
    logits = jnp.zeros((1, 3, 2))
    targets = jnp.zeros((1, 3), jnp.int32)
    mask = jnp.array([[1.0, 1.0, 0.0]])
    loss, m = importance_weighted_loss(logits, targets, jnp.array([[0.5, 2.0, 9.0]]), mask)
    np.testing.assert_allclose(loss, 1.25 * LN2, rtol=1e-6)
    np.testing.assert_allclose(m["weight"], 1.25, rtol=1e-6)
    # Per-sequence weights [B]: row 0 weight 3 over 2 tokens, row 1 weight 1 over 1 token:
    # (3 ln 2 * 2 + 1 ln 2) / 3 tokens = 7/3 ln 2.
    logits2 = jnp.zeros((2, 2, 2))
    mask2 = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    loss2, _ = importance_weighted_loss(logits2, jnp.zeros((2, 2), jnp.int32),
                                        jnp.array([3.0, 1.0]), mask2)
    np.testing.assert_allclose(loss2, 7 / 3 * LN2, rtol=1e-6)


def test_unit_weights_are_plain_sft_and_weights_get_no_gradient():
    rng = np.random.default_rng(4)
    logits = jnp.asarray(rng.normal(size=(2, 5, 6)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 6, (2, 5)))
    mask = jnp.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], jnp.float32)
    iw, _ = importance_weighted_loss(logits, targets, jnp.ones((2, 5)), mask)
    ce, _ = cross_entropy(logits, targets, mask)
    np.testing.assert_allclose(iw, ce, rtol=1e-6)
    gw = jax.grad(lambda w: importance_weighted_sums(logits, targets, w, mask)["loss"])(
        jnp.ones((2, 5)))
    np.testing.assert_array_equal(gw, 0.0)


def test_importance_weights_token_and_sequence_clipping_hand_computed():
    # log q - log pi_ref per token: row [ln 2, ln 2, ln 4 (masked)].
    logp = jnp.array([[LN2, LN2, np.log(4.0)]])
    ref = jnp.zeros((1, 3))
    mask = jnp.array([[1.0, 1.0, 0.0]])
    tok = importance_weights(logp, ref, mask, level="token", max_weight=10.0)
    np.testing.assert_allclose(tok, [[2.0, 2.0, 0.0]], rtol=1e-6)
    # Sequence ratio 2 * 2 = 4, clipped to 3, given to every masked token.
    seq = importance_weights(logp, ref, mask, level="sequence", max_weight=3.0)
    np.testing.assert_allclose(seq, [[3.0, 3.0, 0.0]], rtol=1e-6)
    # Lower clip: ratio 1/8 over the row -> 0.25.
    low = importance_weights(-3 * LN2 * jnp.array([[1.0, 0.0, 0.0]]), ref, mask,
                             level="sequence", min_weight=0.25, max_weight=3.0)
    np.testing.assert_allclose(low, [[0.25, 0.25, 0.0]], rtol=1e-6)
    # Packed: segments [1, 1, 2] get their own ratios 4 and 1/2 (no mask on the last token).
    packed = importance_weights(jnp.array([[LN2, LN2, -LN2]]), ref, jnp.ones((1, 3)),
                                level="sequence", max_weight=10.0,
                                segment_ids_BT=jnp.array([[1, 1, 2]]))
    np.testing.assert_allclose(packed, [[4.0, 4.0, 0.5]], rtol=1e-6)
    # No gradient flows into the weights.
    g = jax.grad(lambda x: importance_weights(x, ref, mask, level="token").sum())(logp)
    np.testing.assert_array_equal(g, 0.0)


def test_importance_weights_reject_bad_arguments():
    x = jnp.zeros((1, 2))
    with pytest.raises(ValueError, match="level"):
        importance_weights(x, x, x, level="batch")
    with pytest.raises(ValueError, match="min_weight"):
        importance_weights(x, x, x, min_weight=2.0, max_weight=1.0)


def test_sft_variant_losses_under_jit_match_eager():
    rng = np.random.default_rng(6)
    logits = jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 4, (2, 3)))
    w = jnp.array([0.5, 2.0])
    for fn in (lambda z: dft_sums(z, targets),
               lambda z: importance_weighted_sums(z, targets, w)):
        eager, jitted = normalize_sums(fn(logits)), normalize_sums(jax.jit(fn)(logits))
        chex.assert_trees_all_close(eager, jitted, rtol=1e-6)
        chex.assert_tree_all_finite(jitted)
