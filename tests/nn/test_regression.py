"""The layer papers' regression harness: network sizes, budget matching and fitting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.nn import regression


def test_parameter_counts_by_hand():
    mlp = jax.eval_shape(lambda: regression.init_net("mlp", jax.random.key(0), width=8, depth=2))
    # 1 -> 8 (16) -> 8 (72) -> 1 (9)
    assert regression.count_params(mlp) == 16 + 72 + 9
    fan = jax.eval_shape(lambda: regression.init_net("fan", jax.random.key(0), width=8, depth=2))
    # FAN layer d -> 8: periodic [d, 2], plain [d, 4] + bias 4; then the read-out 8 -> 1
    assert regression.count_params(fan) == (2 + 4 + 4) + (16 + 32 + 4) + 9
    assert jax.eval_shape(lambda p: regression.net("fan", p, jnp.zeros((5, 1))), fan).shape == (5, 1)


def test_width_for_budget_is_the_closest_multiple_of_four():
    budget = regression.count_params(regression.init_net("mlp", jax.random.key(0), width=64, depth=3))
    w = regression.width_for_budget("fan", budget, 3)
    size = lambda w: regression.count_params(jax.eval_shape(  # noqa: E731
        lambda: regression.init_net("fan", jax.random.key(0), width=w, depth=3)))
    assert w % 4 == 0
    assert abs(size(w) - budget) <= min(abs(size(w - 4) - budget), abs(size(w + 4) - budget))


def test_fit_lowers_the_error_and_bad_settings_are_refused():
    x = jnp.linspace(-3, 3, 64)[:, None]
    y = jnp.sin(x)
    params = regression.init_net("fan", jax.random.key(1), width=16, depth=1)
    before = float(jnp.mean((regression.net("fan", params, x) - y) ** 2))
    params, losses = regression.fit("fan", params, x, y, steps=200, lr=1e-2)
    assert losses.shape == (200,) and float(losses[-1]) < 0.05 * before
    with pytest.raises(ValueError, match="unknown network kind"):
        regression.init_net("kan", jax.random.key(0), width=8, depth=1)
    with pytest.raises(ValueError, match="width >= 4"):
        regression.init_net("mlp", jax.random.key(0), width=2, depth=1)
    np.testing.assert_allclose(float(jnp.mean((regression.net("fan", params, x) - y) ** 2)),
                               float(losses[-1]), rtol=0.5)  # the last step's loss is the fit's
