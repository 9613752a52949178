"""The classifier-head verifier's pieces (jaxlab.losses.classifier) against known values."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.losses import classifier


def test_linear_head_is_a_dot_product_plus_bias():
    h = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]], np.float32)
    w = np.array([0.5, -1.0, 2.0], np.float32)
    chex.assert_trees_all_close(classifier.linear_head(h, w, 0.25), jnp.array([4.75, 2.25]))
    head = classifier.init_linear_head(3)
    chex.assert_trees_all_close(classifier.linear_head(h, head["kernel"], head["bias"]), jnp.zeros(2))


def test_binary_cross_entropy_known_values_and_gradient():
    z = jnp.array([0.0, 0.0, 2.0, -3.0, 100.0, -100.0])
    y = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    sig = 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))
    expected = [np.log(2.0), np.log(2.0), -np.log(sig[2]), -np.log(sig[3]), 100.0, 0.0]
    chex.assert_trees_all_close(classifier.binary_cross_entropy(z, y), jnp.array(expected, jnp.float32),
                                rtol=1e-6, atol=1e-6)
    # d l / d z = sigma(z) - y
    grad = jax.grad(lambda z_: classifier.binary_cross_entropy(z_, y).sum())(z)
    chex.assert_trees_all_close(grad, jnp.array(sig - np.asarray(y), jnp.float32), rtol=1e-6, atol=1e-6)
