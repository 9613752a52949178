import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.kernels import attention as attention_eager

# One compiled program per call pattern instead of one per eager op: much faster tests.
attention = jax.jit(attention_eager, static_argnames=("causal", "window", "scale", "impl"))


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
def test_matches_naive_definition(H, K, causal, window):
    q, k, v = _qkv(0, 2, 7, 7, H, K, 8)
    out = attention(q, k, v, causal=causal, window=window)
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
