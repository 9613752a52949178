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
        regression.init_net("square", jax.random.key(0), width=8, depth=1)
    with pytest.raises(ValueError, match="width >= 4"):
        regression.init_net("mlp", jax.random.key(0), width=2, depth=1)
    np.testing.assert_allclose(float(jnp.mean((regression.net("fan", params, x) - y) ** 2)),
                               float(losses[-1]), rtol=0.5)  # the last step's loss is the fit's


def test_kan_network_size_by_hand_and_a_grid_that_does_not_match_is_refused():
    from jaxlab.nn.kan import KANGrid

    grid = KANGrid(intervals=5, order=3)  # 8 bases: each edge holds 8 coefficients, w_base, w_spline
    kan = jax.eval_shape(lambda: regression.init_net("kan", jax.random.key(0), width=4, depth=1, grid=grid))
    assert regression.count_params(kan) == (1 * 4 + 4 * 1) * (8 + 2)
    assert jax.eval_shape(lambda p: regression.net("kan", p, jnp.zeros((3, 1)), grid), kan).shape == (3, 1)
    with pytest.raises(ValueError, match="spline bases"):
        jax.eval_shape(lambda p: regression.net("kan", p, jnp.zeros((3, 1)), KANGrid(intervals=7)), kan)


def test_fit_logged_is_fit_step_for_step_with_its_predictions():
    x = jnp.linspace(-1, 1, 32)[:, None]
    y = jnp.sin(3 * x)
    params = regression.init_net("mlp", jax.random.key(2), width=8, depth=2)
    end, losses = regression.fit("mlp", params, x, y, steps=12, lr=1e-2)
    end_l, losses_l, preds = regression.fit_logged("mlp", params, x, y, steps=12, lr=1e-2, log_every=4)
    np.testing.assert_allclose(np.asarray(losses_l), np.asarray(losses), rtol=1e-6)
    assert preds.shape == (4, 32, 1)
    np.testing.assert_allclose(preds[0], regression.net("mlp", params, x), rtol=1e-6)
    np.testing.assert_allclose(preds[-1], regression.net("mlp", end, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(preds[-1], regression.net("mlp", end_l, x), rtol=1e-6)
    # the loss of step 4 (index 4) is the mean squared error of the prediction logged after 4 steps
    np.testing.assert_allclose(float(jnp.mean((preds[1] - y) ** 2)), float(losses[4]), rtol=1e-5)
    with pytest.raises(ValueError, match="log_every must divide"):
        regression.fit_logged("mlp", params, x, y, steps=10, lr=1e-2, log_every=4)


def test_spectral_residual_of_a_known_signal():
    N = 64
    n = np.arange(N)
    low, high = np.sin(2 * np.pi * 3 * n / N), 0.5 * np.cos(2 * np.pi * 7 * n / N + 1.0)
    y = low + high
    # the prediction holds all of frequency 7 and three quarters of frequency 3
    pred_KN = np.stack([np.zeros(N), y - 0.25 * low, y, high])
    r = regression.spectral_residual(pred_KN, y, (3, 7))
    np.testing.assert_allclose(r, [[1, 1], [0.25, 0], [0, 0], [1, 0]], atol=1e-12)
    # an error at a frequency the target does not weigh leaves the residual there alone
    r = regression.spectral_residual((y + np.sin(2 * np.pi * 11 * n / N))[None], y, (3, 7))
    np.testing.assert_allclose(r, [[0, 0]], atol=1e-12)
    with pytest.raises(ValueError, match="freqs must be"):
        regression.spectral_residual(pred_KN, y, (32,))
    with pytest.raises(ValueError, match="holds \\(almost\\) none"):
        regression.spectral_residual(pred_KN, y, (3, 5))
    with pytest.raises(ValueError, match="predictions"):
        regression.spectral_residual(y, y, (3,))
