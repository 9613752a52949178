"""Shared by the interop tests: random params of a config and a bitwise tree comparison."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.models import transformer


def random_params(cfg, seed=0):
    """Params shaped as ``transformer.init(cfg)`` builds them, every leaf random (init sets
    biases and norm scales to constants, which would hide a mix-up between them)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda key: transformer.init(cfg, key), jax.random.key(0))
    return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape, np.float32), s.dtype), shapes)


def assert_bitwise_equal(a, b):
    flat_a, flat_b = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
    assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
    for (path, x), (_, y) in zip(flat_a, flat_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, path
        assert x.tobytes() == y.tobytes(), path
