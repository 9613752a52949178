"""FAN and KAN layers: FAN's periodic outputs, B-spline partition of unity and Cox-de Boor
values, KAN as a sum of edge functions, grid extension that keeps the function, and both
fitting a 1-D target."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.nn.fan import fan, fan_split, init_fan
from jaxlab.nn.kan import KANGrid, bspline_bases, extend_grid, init_kan, kan


def test_fan_is_cos_sin_and_a_plain_part():
    params = init_fan(jax.random.key(0), 3, 16)
    assert fan_split(16) == (4, 8)
    x = jax.random.normal(jax.random.key(1), (5, 3))
    y = fan(params, x)
    p = x @ params["periodic"]["kernel"]
    np.testing.assert_allclose(y[:, :4], jnp.cos(p), rtol=1e-6)
    np.testing.assert_allclose(y[:, 4:8], jnp.sin(p), rtol=1e-6)
    np.testing.assert_allclose(y[:, 8:], jax.nn.gelu(x @ params["plain"]["kernel"] + params["plain"]["bias"]), rtol=1e-5)
    # the periodic part repeats when x moves by a period of every unit: 2 pi for W = I
    params["periodic"]["kernel"] = jnp.eye(3)[:, :1].repeat(4, 1)
    shifted = fan(params, x + 2 * jnp.pi * jnp.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(shifted[:, :8], fan(params, x)[:, :8], atol=1e-5)
    with pytest.raises(ValueError, match="no room"):
        fan_split(4, 0.75)


def test_bsplines_sum_to_one_and_match_cox_de_boor():
    grid = KANGrid(intervals=4, order=2)
    x = jnp.linspace(-1, 0.999, 101)
    b = bspline_bases(x, grid)
    assert b.shape == (101, 6)
    np.testing.assert_allclose(b.sum(-1), 1.0, atol=1e-6)
    # quadratic B-spline on uniform knots: at a knot its values are (1/2, 1/2, 0)
    at_zero = bspline_bases(jnp.array(0.0), grid)
    np.testing.assert_allclose(np.sort(np.asarray(at_zero))[-2:], [0.5, 0.5], atol=1e-6)


def test_kan_sums_edges_and_grid_extension_keeps_the_function():
    grid = KANGrid(intervals=5, order=3)
    params = init_kan(jax.random.key(2), 2, 3, grid, noise=1.0)
    x = jax.random.uniform(jax.random.key(3), (7, 2), minval=-1, maxval=1)
    y = kan(params, x, grid)
    one = {k: v[:1] for k, v in params.items()}
    two = {k: v[1:] for k, v in params.items()}
    np.testing.assert_allclose(y, kan(one, x[:, :1], grid) + kan(two, x[:, 1:], grid), rtol=1e-5, atol=1e-6)
    finer, new_grid = extend_grid(params, grid, 10)
    assert finer["coef"].shape == (2, 3, 13)
    np.testing.assert_allclose(kan(finer, x, new_grid), y, atol=1e-4)  # a cubic on 5 cells lies in the 10-cell space


def test_kan_and_fan_fit_a_one_dimensional_target():
    xs = jnp.linspace(-1, 1, 64)[:, None]
    ys = jnp.sin(3 * xs) + 0.5 * xs

    def fit(apply, params, steps=300):
        opt = optax.adam(3e-2)
        state = opt.init(params)
        loss = jax.jit(lambda p: jnp.mean((apply(p, xs) - ys) ** 2))
        grad = jax.jit(jax.grad(lambda p: jnp.mean((apply(p, xs) - ys) ** 2)))
        first = float(loss(params))
        for _ in range(steps):
            updates, state = opt.update(grad(params), state)
            params = optax.apply_updates(params, updates)
        return first, float(loss(params))

    grid = KANGrid(intervals=8, order=3)
    first, last = fit(lambda p, x: kan(p, x, grid), init_kan(jax.random.key(4), 1, 1, grid))
    assert last < 0.05 * first
    fan_params = {"fan": init_fan(jax.random.key(5), 1, 16), "out": jnp.zeros((16, 1))}
    first, last = fit(lambda p, x: fan(p["fan"], x) @ p["out"], fan_params)
    assert last < 0.05 * first
