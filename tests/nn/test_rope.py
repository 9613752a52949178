import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxlab.nn.rope import apply_rope, inv_frequencies, rotary_dim


def _qk(seed, dh=16):
    kq, kk = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kq, (1, 1, 1, dh)), jax.random.normal(kk, (1, 1, 1, dh))


@given(m=st.integers(0, 500), n=st.integers(0, 500), shift=st.integers(-200, 200),
       fraction=st.sampled_from([1.0, 0.5, 0.25]))
def test_score_depends_only_on_relative_position(m, n, shift, fraction):
    q, k = _qk(0)
    shift = max(shift, -min(m, n))

    def score(pm, pn):
        qr = apply_rope(q, jnp.array([[pm]]), base=10000.0, fraction=fraction)
        kr = apply_rope(k, jnp.array([[pn]]), base=10000.0, fraction=fraction)
        return float(jnp.sum(qr * kr))

    np.testing.assert_allclose(score(m, n), score(m + shift, n + shift), rtol=2e-4, atol=2e-4)


def test_rotation_preserves_norm_and_changes_vectors():
    q, _ = _qk(1, dh=32)
    pos = jnp.array([[7]])
    out = apply_rope(q, pos, base=500.0)
    np.testing.assert_allclose(jnp.linalg.norm(out), jnp.linalg.norm(q), rtol=1e-6)
    assert float(jnp.max(jnp.abs(out - q))) > 1e-2
    np.testing.assert_array_equal(apply_rope(q, jnp.array([[0]])), q)  # position 0: identity


def test_partial_rope_passes_the_rest_through_and_nope_is_identity():
    x = jax.random.normal(jax.random.key(2), (2, 5, 3, 16))
    pos = jnp.broadcast_to(jnp.arange(5), (2, 5)) + 3
    out = apply_rope(x, pos, fraction=0.25)
    assert rotary_dim(16, 0.25) == 4
    np.testing.assert_array_equal(out[..., 4:], x[..., 4:])
    assert float(jnp.max(jnp.abs(out[..., :4] - x[..., :4]))) > 1e-3
    np.testing.assert_array_equal(apply_rope(x, pos, fraction=0.0), x)


def test_matches_hand_computed_rotation():
    # Dh = 4, R = 4: pairs (x0, x2) and (x1, x3) rotate by p * base^0 and p * base^(-1/2).
    x = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    p, base = 2.0, 100.0
    t0, t1 = p * 1.0, p * base ** -0.5
    expected = [1 * np.cos(t0) - 3 * np.sin(t0), 2 * np.cos(t1) - 4 * np.sin(t1),
                3 * np.cos(t0) + 1 * np.sin(t0), 4 * np.cos(t1) + 2 * np.sin(t1)]
    out = apply_rope(x, jnp.array([[p]]), base=base)
    np.testing.assert_allclose(out.reshape(-1), expected, rtol=1e-6)
    np.testing.assert_allclose(inv_frequencies(4, base), [1.0, 0.1], rtol=1e-6)


def test_dtype_is_kept_and_bad_fraction_is_refused():
    x = jnp.ones((1, 2, 1, 8), jnp.bfloat16)
    chex.assert_type(apply_rope(x, jnp.zeros((1, 2), jnp.int32)), jnp.bfloat16)
    with pytest.raises(ValueError, match="fraction"):
        apply_rope(x, jnp.zeros((1, 2), jnp.int32), fraction=1.5)
