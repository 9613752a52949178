"""jaxlab.analysis.state_collapse: the written-out recurrence is the model's, and each
training-free fix does what its formula says."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.analysis.state_collapse import StateFix, position_nll, run_with_fix, scan_states
from jaxlab.models import mamba

CFG = mamba.Config(vocab_size=40, d_model=16, n_layers=2, d_state=4, expand=2)


@pytest.fixture(scope="module")
def model():
    params = mamba.init(CFG, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 24), 0, CFG.vocab_size)
    return params, tokens


def _inputs(T=20, E=6, N=3, seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    u = jax.random.normal(k[0], (2, T, E))
    delta = jax.nn.softplus(jax.random.normal(k[1], (2, T, E)))
    A = -jnp.exp(jax.random.normal(k[2], (E, N)) * 0.5)
    B = jax.random.normal(k[3], (2, T, N))
    return u, delta, A, B


def test_without_a_fix_the_logits_are_the_models(model):
    params, tokens = model
    logits, norms = run_with_fix(params, tokens, CFG)
    np.testing.assert_allclose(logits, mamba.apply(params, tokens, CFG), rtol=1e-4, atol=1e-4)
    assert norms.shape == (CFG.n_layers, 2, 24, CFG.d_inner)
    nll = position_nll(logits, tokens)
    assert nll.shape == (2, 23) and bool(jnp.all(nll > 0))
    # a window longer than the sequence and a cap no state reaches change nothing
    for fix in (StateFix("window", window=24), StateFix("normalize", max_norm=1e9), StateFix("forget", decay_scale=1.0)):
        np.testing.assert_allclose(run_with_fix(params, tokens, CFG, fix)[0], logits, rtol=1e-6, atol=1e-6)


def test_the_window_state_is_the_state_of_the_last_r_inputs():
    u, delta, A, B = _inputs()
    r = 5
    carried, window = scan_states(u, delta, A, B, StateFix("window", window=r))
    plain, _ = scan_states(u, delta, A, B)
    np.testing.assert_allclose(carried, plain)
    for t in (2, 4, 5, 11, 19):  # restart the plain recurrence at t - r + 1 (or 0)
        lo = max(0, t - r + 1)
        restarted, _ = scan_states(u[:, lo:t + 1], delta[:, lo:t + 1], A, B[:, lo:t + 1])
        np.testing.assert_allclose(window[:, t], restarted[:, -1], rtol=1e-4, atol=1e-5)


def test_normalisation_caps_every_channel_and_forgetting_scales_the_decay():
    u, delta, A, B = _inputs(seed=1)
    plain, _ = scan_states(u, delta, A, B)
    cap = 0.5 * float(jnp.max(jnp.linalg.norm(plain, axis=-1)))
    capped, read = scan_states(u, delta, A, B, StateFix("normalize", max_norm=cap))
    assert float(jnp.max(jnp.linalg.norm(capped, axis=-1))) <= cap * (1 + 1e-5)
    assert not np.allclose(capped, plain) and np.array_equal(capped, read)
    forget, _ = scan_states(u, delta, A, B, StateFix("forget", decay_scale=2.0))
    # alpha ** 2 in the decay only: the insertion delta B u is unchanged
    by_hand = plain[:, 0]
    for t in range(1, 20):
        by_hand = jnp.exp(2 * delta[:, t, :, None] * A) * by_hand + (delta[:, t] * u[:, t])[..., None] * B[:, t, None]
    np.testing.assert_allclose(forget[:, -1], by_hand, rtol=1e-5, atol=1e-6)


def test_bad_fixes_are_refused():
    for kwargs, match in (({"kind": "clip"}, "not one of"), ({"kind": "forget", "decay_scale": 0.5}, ">= 1"),
                          ({"kind": "normalize", "max_norm": 0.0}, "> 0"), ({"kind": "window"}, ">= 1 token")):
        with pytest.raises(ValueError, match=match):
            StateFix(**kwargs)
