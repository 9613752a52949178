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


def test_linear_and_llama3_frequency_scaling_by_hand():
    from jaxlab.nn.rope import RopeScaling
    # R = 4, base 1e4: inv_freq = [1, 0.01], wavelengths 2pi and 200pi.
    np.testing.assert_allclose(inv_frequencies(4, 1e4), [1.0, 0.01], rtol=1e-6)
    np.testing.assert_allclose(inv_frequencies(4, 1e4, RopeScaling("linear", factor=4.0)),
                               [0.25, 0.0025], rtol=1e-6)
    # C = 1000: short wavelength kept; 200pi lies between C/4 and C/1, so it is blended with
    # s = (1000 / (200 pi) - 1) / 3.
    s = (1000 / (200 * np.pi) - 1) / 3
    llama3 = RopeScaling("llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                         original_max_len=1000)
    np.testing.assert_allclose(inv_frequencies(4, 1e4, llama3),
                               [1.0, (1 - s) * 0.01 / 8 + s * 0.01], rtol=1e-5)
    # C = 100: 200pi is longer than C / low_freq_factor, so it is divided by the factor.
    llama3_short = RopeScaling("llama3", factor=8.0, original_max_len=100)
    np.testing.assert_allclose(inv_frequencies(4, 1e4, llama3_short), [1.0, 0.00125], rtol=1e-5)
    with pytest.raises(ValueError, match="factor"):
        RopeScaling("linear", factor=0.0)
