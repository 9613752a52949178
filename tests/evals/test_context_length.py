"""Windows that score the same tokens at every context length, against hand-made values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.evals.context_length import suffix_nll_N, suffix_windows, window_ends
from jaxlab.models import transformer


def test_window_ends_known_values():
    assert window_ends(10, 3, 5) == [2, 5, 8]  # next targets 3, 6, 9 all inside 10 tokens
    assert window_ends(10, 3, 2) == [2, 5]
    assert window_ends(9, 3, 5) == [2, 5]  # end 8 would need target 9
    assert window_ends(3, 3, 5) == []
    with pytest.raises(ValueError):
        window_ends(10, 0, 1)


def test_suffix_windows_known_values_and_same_scored_targets():
    x = np.arange(100, 120)
    inputs, targets = suffix_windows(x, [9, 18], 4)
    np.testing.assert_array_equal(inputs, [[106, 107, 108, 109], [115, 116, 117, 118]])
    np.testing.assert_array_equal(targets, [[107, 108, 109, 110], [116, 117, 118, 119]])
    k = 2
    scored = [suffix_windows(x, [9, 18], c)[1][:, -k:] for c in (2, 4, 8)]
    for s in scored[1:]:
        np.testing.assert_array_equal(s, scored[0])
    with pytest.raises(ValueError, match="leaves the document"):
        suffix_windows(x, [2], 4)
    with pytest.raises(ValueError, match="leaves the document"):
        suffix_windows(x, [19], 4)


def test_suffix_nll_is_the_mean_nll_of_the_last_targets():
    cfg = transformer.Config(vocab_size=16, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2, head_dim=8,
                             mlp_dim=32)
    params = transformer.init(cfg, jax.random.key(0))
    x = np.random.default_rng(0).integers(0, 16, size=(3, 7)).astype(np.int32)
    y = np.random.default_rng(1).integers(0, 16, size=(3, 7)).astype(np.int32)
    got = np.asarray(suffix_nll_N(params, jnp.asarray(x), jnp.asarray(y), cfg, 3))
    logits = jax.jit(transformer.apply, static_argnums=2)(params, jnp.asarray(x), cfg)
    logp = np.asarray(jax.nn.log_softmax(logits, -1))
    want = [-np.mean([logp[i, t, y[i, t]] for t in range(4, 7)]) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
