import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.kernels import attention as attention_eager
from jaxlab.kernels.attention import attention_reference

# One compiled program per call pattern instead of one per eager op: much faster tests.
attention = jax.jit(attention_eager, static_argnames=("causal", "window", "scale", "impl"))
REFERENCE = jax.jit(attention_reference, static_argnames=("causal", "window", "scale"))


def naive_attention(q, k, v, *, causal, window=None, q_seg=None, kv_seg=None, q_offset=0):
    """Loops over batch, head, query and key: the definition, with K/V repeated per group."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    B, T, H, Dh = q.shape
    S, K = k.shape[1], k.shape[2]
    out = np.zeros_like(q)
    for b in range(B):
        for h in range(H):
            kh = h // (H // K)
            for t in range(T):
                qi = t + q_offset
                allowed = []
                for s in range(S):
                    ok = True
                    if causal:
                        ok &= s <= qi
                    if window is not None:
                        ok &= (qi - s < window) if causal else (abs(qi - s) < window)
                    if q_seg is not None:
                        ok &= q_seg[b, t] == kv_seg[b, s]
                    allowed.append(ok)
                allowed = np.array(allowed)
                if not allowed.any():
                    continue
                scores = k[b, :, kh] @ q[b, t, h] / np.sqrt(Dh)
                scores = np.where(allowed, scores, -np.inf)
                p = np.exp(scores - scores.max())
                p /= p.sum()
                out[b, t, h] = p @ v[b, :, kh]
    return out


def _qkv(seed, B, T, S, H, K, Dh, dtype=jnp.float32):
    kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(kq, (B, T, H, Dh), dtype), jax.random.normal(kk, (B, S, K, Dh), dtype),
            jax.random.normal(kv, (B, S, K, Dh), dtype))


@pytest.mark.parametrize("H,K", [(4, 4), (4, 1), (8, 2)])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("fn", ["dispatch", "reference"])
def test_matches_naive_definition(H, K, causal, window, fn):
    q, k, v = _qkv(0, 2, 7, 7, H, K, 8)
    out = {"dispatch": attention, "reference": REFERENCE}[fn](q, k, v, causal=causal, window=window)
    chex.assert_shape(out, q.shape)
    np.testing.assert_allclose(out, naive_attention(q, k, v, causal=causal, window=window),
                               rtol=1e-5, atol=1e-5)


def test_segment_ids_and_offset_match_naive_definition():
    q, k, v = _qkv(1, 2, 3, 9, 4, 2, 8)
    q_seg = jnp.array([[1, 1, 2], [1, 1, 1]])
    kv_seg = jnp.array([[0, 1, 1, 1, 2, 2, 2, 0, 0], [0, 0, 1, 1, 1, 1, 1, 1, 1]])
    out = attention(q, k, v, causal=True, segment_ids=(q_seg, kv_seg), q_offset=4)
    expected = naive_attention(q, k, v, causal=True, q_seg=np.asarray(q_seg),
                               kv_seg=np.asarray(kv_seg), q_offset=4)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_packed_segments_equal_separate_sequences():
    q, k, v = _qkv(2, 1, 10, 10, 4, 2, 8)
    seg = jnp.array([[1] * 6 + [2] * 4])
    packed = attention(q, k, v, segment_ids=seg)
    first = attention(q[:, :6], k[:, :6], v[:, :6])
    second = attention(q[:, 6:], k[:, 6:], v[:, 6:])
    np.testing.assert_allclose(packed, jnp.concatenate([first, second], 1), rtol=1e-5, atol=1e-6)


def test_fully_masked_rows_are_zero_with_finite_gradients():
    q, k, v = _qkv(3, 1, 4, 4, 2, 2, 8)
    q_seg = jnp.array([[1, 1, 3, 3]])
    kv_seg = jnp.array([[1, 1, 2, 2]])
    out = attention(q, k, v, causal=False, segment_ids=(q_seg, kv_seg))
    np.testing.assert_array_equal(out[0, 2:], 0.0)
    grads = jax.grad(lambda q, k, v: jnp.sum(attention(q, k, v, causal=False,
                                                       segment_ids=(q_seg, kv_seg)) ** 2),
                     argnums=(0, 1, 2))(q, k, v)
    chex.assert_tree_all_finite(grads)


def test_gradients_match_naive_definition_by_finite_differences():
    q, k, v = _qkv(4, 1, 5, 5, 4, 2, 4)
    f = lambda q, k, v: jnp.sum(jnp.sin(attention(q, k, v, window=2)))
    jax.test_util.check_grads(f, (q, k, v), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_bf16_inputs_return_bf16_close_to_f32():
    q, k, v = _qkv(5, 2, 6, 6, 4, 2, 16)
    out16 = attention(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16))
    chex.assert_type(out16, jnp.bfloat16)
    np.testing.assert_allclose(np.float32(out16), attention(q, k, v), atol=3e-2)


@pytest.mark.parametrize("shapes,match", [
    (((1, 4, 3, 8), (1, 4, 2, 8), (1, 4, 2, 8)), "multiple of kv heads"),
    (((1, 4, 2, 8), (1, 4, 2, 4), (1, 4, 2, 4)), "disagree"),
    (((1, 4, 8), (1, 4, 2, 8), (1, 4, 2, 8)), "expects"),
    (((1, 4, 2, 8), (1, 4, 2, 8), (1, 5, 2, 8)), "shapes differ"),
])
def test_bad_shapes_are_clear_errors(shapes, match):
    arrays = [jnp.zeros(s) for s in shapes]
    with pytest.raises(ValueError, match=match):
        attention(*arrays)


def test_bad_impl_window_and_segments_are_clear_errors():
    q, k, v = _qkv(6, 1, 4, 4, 2, 2, 8)
    with pytest.raises(ValueError, match="unknown attention impl"):
        attention(q, k, v, impl="tpu-magic")
    with pytest.raises(ValueError, match="window"):
        attention(q, k, v, window=0)
    with pytest.raises(ValueError, match="segment ids"):
        attention(q, k, v, segment_ids=jnp.zeros((1, 3), jnp.int32))


@pytest.mark.parametrize("H,K,causal,window,segments", [
    (4, 4, True, None, False), (8, 2, True, 3, True), (4, 1, False, None, True), (8, 8, False, 2, False)])
def test_xla_impl_values_and_gradients_equal_the_reference(H, K, causal, window, segments):
    q, k, v = _qkv(7, 2, 9, 9, H, K, 16)
    seg = jnp.array([[1] * 4 + [2] * 5, [1] * 9]) if segments else None
    cot = jax.random.normal(jax.random.key(8), q.shape)

    def loss(fn, q, k, v):
        kwargs = dict(causal=causal, window=window)
        if fn is REFERENCE:
            kwargs.update(q_segment_ids_BT=seg, kv_segment_ids_BS=seg)
        else:
            kwargs.update(segment_ids=seg)
        return jnp.sum(fn(q, k, v, **kwargs) * cot)

    vg = jax.jit(jax.value_and_grad(loss, argnums=(1, 2, 3)), static_argnums=0)
    (val, grads), (ref_val, ref_grads) = vg(attention, q, k, v), vg(REFERENCE, q, k, v)
    np.testing.assert_allclose(val, ref_val, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_xla_impl_gradient_of_fully_masked_rows_is_zero_and_finite():
    q, k, v = _qkv(9, 1, 4, 4, 2, 2, 8)
    seg = (jnp.array([[1, 1, 3, 3]]), jnp.array([[1, 1, 2, 2]]))
    dq, dk, dv = jax.grad(lambda q, k, v: jnp.sum(attention(q, k, v, causal=False, segment_ids=seg)),
                          argnums=(0, 1, 2))(q, k, v)
    chex.assert_tree_all_finite((dq, dk, dv))
    np.testing.assert_array_equal(dq[0, 2:], 0.0)
    np.testing.assert_array_equal(dk[0, 2:], 0.0)


@pytest.mark.parametrize("causal,window,q_offset,segments", [
    (True, None, 0, False), (True, 3, 0, True), (False, 2, 0, False), (True, None, 5, True),
    (True, 4, 3, False)])
def test_query_blocks_skip_invisible_keys_without_changing_values_or_gradients(
        causal, window, q_offset, segments):
    from jaxlab.kernels.attention.xla import attention_xla
    T, S = 11, 11 + q_offset
    q, k, v = _qkv(10, 2, T, S, 4, 2, 8)
    q_seg = jnp.array([[1] * 6 + [2] * 5, [1] * T]) if segments else None
    kv_seg = jnp.concatenate([jnp.ones((2, q_offset), jnp.int32), q_seg], 1) if segments else None
    cot = jax.random.normal(jax.random.key(11), q.shape)

    def blocked(q, k, v):
        return jnp.sum(attention_xla(q, k, v, causal=causal, window=window, q_segment_ids_BT=q_seg,
                                     kv_segment_ids_BS=kv_seg, q_offset=q_offset, scale=0.3,
                                     block_q=4) * cot)

    def reference(q, k, v):
        return jnp.sum(attention_reference(q, k, v, causal=causal, window=window, q_segment_ids_BT=q_seg,
                                           kv_segment_ids_BS=kv_seg, q_offset=q_offset, scale=0.3) * cot)

    (val, grads), (ref_val, ref_grads) = [jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))(q, k, v)
                                          for f in (blocked, reference)]
    np.testing.assert_allclose(val, ref_val, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_key_ranges_of_query_blocks():
    from jaxlab.kernels.attention.xla import key_range
    assert key_range(0, 4, 12, causal=True, window=None, q_offset=0) == (0, 4)
    assert key_range(8, 12, 12, causal=True, window=3, q_offset=0) == (6, 12)
    assert key_range(0, 4, 12, causal=False, window=2, q_offset=0) == (0, 5)
    assert key_range(4, 8, 20, causal=True, window=None, q_offset=10) == (0, 18)
