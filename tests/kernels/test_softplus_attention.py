"""Softplus attention with length scaling and re-weighting: reference, XLA and Pallas."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from kernel_checks import (BF16_FWD_REL, BF16_GRAD_REL, F32_REL, assert_close,
                           kernel_and_reference, packed_segments, random_qkv, run_compiled)

from jaxlab.kernels import attention
from jaxlab.kernels.attention import flash_attention, softplus_attention_reference
from jaxlab.kernels.attention.pallas import BlockSizes

SMALL = BlockSizes(block_q=16, block_k=16, block_q_bwd=16, block_k_bwd=16)


def naive_softplus_attention(q, k, v, *, causal, window=None, q_seg=None, kv_seg=None, q_offset=0,
                             power=1.0):
    """Loops over batch, head and query: the paper's formula, K/V repeated per group."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    B, T, H, Dh = q.shape
    S, K = k.shape[1], k.shape[2]
    out = np.zeros_like(q)
    for b in range(B):
        for h in range(H):
            kh = h // (H // K)
            for t in range(T):
                p = t + q_offset
                s_idx = np.arange(S)
                ok = np.ones(S, bool)
                if causal:
                    ok &= s_idx <= p
                if window is not None:
                    ok &= (p - s_idx < window) if causal else (np.abs(p - s_idx) < window)
                if q_seg is not None:
                    ok &= np.asarray(kv_seg)[b] == np.asarray(q_seg)[b, t]
                n = ok.sum()
                if n == 0:
                    continue
                x = math.log(n) / math.sqrt(Dh) * (k[b, :, kh] @ q[b, t, h])
                w = np.log1p(np.exp(x)) ** power * ok
                out[b, t, h] = (w / w.sum()) @ v[b, :, kh]
    return out


@pytest.mark.parametrize("causal,window,segments,q_offset,power", [
    (True, None, False, 0, 1.0), (True, 4, True, 0, 3.0), (False, None, False, 0, 2.5),
    (False, 3, True, 0, 1.0), (True, None, False, 5, 2.0)])
def test_reference_matches_the_formula(causal, window, segments, q_offset, power):
    q, k, v, _ = random_qkv(0, 2, 9, 9 + q_offset, 4, 2, 8, jnp.float32)
    q_seg, kv_seg = packed_segments(9, 2) if segments else (None, None)
    if segments and q_offset:
        kv_seg = jnp.concatenate([jnp.ones((2, q_offset), jnp.int32), kv_seg], 1)
    ref = functools.partial(softplus_attention_reference, causal=causal, window=window,
                            q_segment_ids_BT=q_seg, kv_segment_ids_BS=kv_seg, q_offset=q_offset,
                            power=power)
    out = run_compiled(ref, q, k, v)
    want = naive_softplus_attention(q, k, v, causal=causal, window=window, q_seg=q_seg,
                                    kv_seg=kv_seg, q_offset=q_offset, power=power)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_one_row_by_hand():
    # Query 2 (causal) sees keys 0, 1, 2 with scores 0, 1, 2: x = log(3) * score.
    q = jnp.ones((1, 3, 1, 1))
    k = jnp.arange(3.0).reshape(1, 3, 1, 1)
    v = jnp.array([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    out = softplus_attention_reference(q, k, v, causal=True, scale=1.0, power=2.0)
    w = [math.log1p(math.exp(math.log(3) * s)) ** 2 for s in (0.0, 1.0, 2.0)]
    assert float(out[0, 2, 0, 0]) == pytest.approx(w[0] / sum(w), rel=1e-6)
    assert float(out[0, 0, 0, 0]) == pytest.approx(1.0)  # one visible key: weight 1


def _weights(power, seed=1, S=16):
    """Attention weights of the reference, read out with one-hot values (v_s = e_s)."""
    q, k, _, _ = random_qkv(seed, 1, S, S, 2, 2, S, jnp.float32)
    v = jnp.broadcast_to(jnp.eye(S)[None, :, None, :], (1, S, 2, S))
    ref = functools.partial(softplus_attention_reference, causal=True, power=power)
    return np.asarray(run_compiled(ref, q * 3, k, v))


def test_weights_are_l1_normalised_and_reweighting_sharpens_them():
    w1, w4 = _weights(1.0), _weights(4.0)
    np.testing.assert_allclose(w1.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(w4.sum(-1), 1.0, rtol=1e-5)
    assert (w1 >= 0).all() and (np.triu(w1[0, :, 0], 1) == 0).all()  # causal
    entropy = lambda w: -np.sum(np.where(w > 0, w * np.log(np.where(w > 0, w, 1)), 0), -1)  # noqa: E731
    rows = slice(2, None)  # rows with at least 3 keys
    assert (entropy(w4)[0, rows] < entropy(w1)[0, rows]).all()
    np.testing.assert_array_equal(w4.argmax(-1), w1.argmax(-1))
    # Re-weighting is a^p / sum a^p of the LSSA weights.
    sharpened = w1 ** 4 / np.sum(w1 ** 4, -1, keepdims=True)
    np.testing.assert_allclose(w4, sharpened, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("causal,window,segments,power", [
    (True, None, False, 1.0), (True, 5, True, 2.5), (False, None, True, 3.0)])
def test_xla_impl_values_and_gradients_equal_the_reference(causal, window, segments, power):
    q, k, v, do = random_qkv(2, 2, 23, 23, 4, 2, 16, jnp.float32)
    seg = packed_segments(23, 2, empty_tail=3) if segments else None
    masks = dict(causal=causal, window=window)
    kernel = lambda q, k, v: attention(q, k, v, segment_ids=seg, impl="xla", kind="softplus",  # noqa: E731
                                       reweight_power=power, **masks)
    ref = functools.partial(softplus_attention_reference, q_segment_ids_BT=None if seg is None else seg[0],
                            kv_segment_ids_BS=None if seg is None else seg[1], power=power, **masks)
    (out, grads), (ref_out, ref_grads) = kernel_and_reference(kernel, ref, (q, k, v), do)
    assert_close(out, ref_out, F32_REL, "out")
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, F32_REL, "grad")


def test_xla_query_blocks_keep_each_rows_length():
    from jaxlab.kernels.attention.xla import attention_xla
    q, k, v, _ = random_qkv(3, 1, 150, 150, 2, 1, 8, jnp.float32)
    blocked = functools.partial(attention_xla, causal=True, window=40, scale=8 ** -0.5,
                                kind="softplus", power=2.0, block_q=32)
    ref = functools.partial(softplus_attention_reference, causal=True, window=40, power=2.0)
    assert_close(run_compiled(blocked, q, k, v), run_compiled(ref, q, k, v), F32_REL, "blocked")


# name: (T, S, H, K, Dh, causal, window, segments, power)
PALLAS_CASES = {
    "causal-gqa4": (45, 45, 4, 1, 64, True, None, False, 1.0),
    "window-segments-power-2.5": (48, 48, 4, 2, 64, True, 9, True, 2.5),
    "bidirectional-cross-power-3": (21, 37, 2, 1, 64, False, None, False, 3.0),
}


@pytest.mark.parametrize("name", PALLAS_CASES)
def test_pallas_f32_values_and_gradients_match_the_reference(name):
    T, S, H, K, Dh, causal, window, segments, power = PALLAS_CASES[name]
    q, k, v, do = random_qkv(4, 2, T, S, H, K, Dh, jnp.float32)
    q_seg, kv_seg = packed_segments(T, 2, empty_tail=5) if segments else (None, None)
    masks = dict(causal=causal, window=window, q_segment_ids_BT=q_seg, kv_segment_ids_BS=kv_seg,
                 scale=Dh ** -0.5)
    kernel = functools.partial(flash_attention, kind="softplus", power=power, block_sizes=SMALL,
                               **masks)
    ref = functools.partial(softplus_attention_reference, power=power, **masks)
    (out, grads), (ref_out, ref_grads) = kernel_and_reference(kernel, ref, (q, k, v), do)
    assert_close(out, ref_out, F32_REL, f"{name} out")
    for g, r, n in zip(grads, ref_grads, "qkv"):
        assert_close(g, r, F32_REL, f"{name} d{n}")


def test_pallas_bf16_values_and_gradients_match_the_f32_reference():
    q, k, v, do = random_qkv(5, 2, 40, 40, 4, 2, 64, jnp.bfloat16)
    masks = dict(causal=True, window=12, scale=0.125)
    kernel = functools.partial(flash_attention, kind="softplus", power=2.0, block_sizes=SMALL, **masks)
    ref = functools.partial(softplus_attention_reference, power=2.0, **masks)
    (out, grads), (ref_out, ref_grads) = kernel_and_reference(kernel, ref, (q, k, v), do)
    assert out.dtype == jnp.bfloat16
    assert_close(out, ref_out, BF16_FWD_REL, "out")
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, BF16_GRAD_REL, "grad")


def test_reweighting_at_evaluation_leaves_a_model_differentiable_and_finite():
    q, k, v, _ = random_qkv(6, 1, 33, 33, 2, 2, 16, jnp.float32)
    loss = lambda q, k, v: jnp.sum(attention(q * 30, k, v, kind="softplus", reweight_power=8.0) ** 2)  # noqa: E731
    grads = run_compiled(jax.grad(loss, argnums=(0, 1, 2)), q, k, v)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_bad_kind_and_power_are_clear_errors():
    q, k, v, _ = random_qkv(7, 1, 4, 4, 2, 2, 8, jnp.float32)
    with pytest.raises(ValueError, match="unknown attention kind"):
        attention(q, k, v, kind="sigmoid")
    with pytest.raises(ValueError, match="reweight_power must be >= 1"):
        attention(q, k, v, kind="softplus", reweight_power=0.5)
    with pytest.raises(ValueError, match="kind='softplus' only"):
        attention(q, k, v, reweight_power=2.0)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_rows_of_very_negative_scores_stay_exact_and_finite(impl):
    # Scores around -100 to -400: softplus(x) ~ e^x underflows in float32, and a plain l1
    # normalisation divides by a vanishing sum; the implementations must still match the
    # formula (evaluated in float64) with finite gradients.
    q, k, v, do = random_qkv(8, 1, 21, 21, 2, 1, 16, jnp.float32)
    k = jnp.abs(k)
    q = -20.0 * jnp.abs(q)
    masks = dict(causal=True, window=None)
    fn = functools.partial(attention, impl=impl, kind="softplus", reweight_power=2.0, **masks)
    (out, grads), _ = kernel_and_reference(fn, fn, (q, k, v), do)
    want = naive_softplus_attention(q, k, v, causal=True, power=2.0)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)
