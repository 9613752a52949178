"""A discriminative verifier: a linear head on a hidden state, trained with binary
cross-entropy (the "classifier-head reward model" GenRM is compared with).

    z_B   = h_BD . w_D + b                                  (:func:`linear_head`)
    l(z, y) = -[y log sigma(z) + (1 - y) log sigma(-z)]      (:func:`binary_cross_entropy`)

with y in [0, 1] the label (1 = correct). d l / d z = sigma(z) - y. The score of a candidate is
z (or sigma(z); both rank alike).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def linear_head(h_BD: jax.Array, kernel_D: jax.Array, bias: jax.Array) -> jax.Array:
    """z_B = h_BD . w_D + b in float32 (any leading shape: [..., D] -> [...])."""
    return jnp.asarray(h_BD, jnp.float32) @ jnp.asarray(kernel_D, jnp.float32) + jnp.asarray(bias, jnp.float32)


def binary_cross_entropy(z: jax.Array, y: jax.Array) -> jax.Array:
    """-[y log sigma(z) + (1 - y) log sigma(-z)] elementwise, stable for large |z|
    (``jax.nn.log_sigmoid``)."""
    z = jnp.asarray(z, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    return -(y * jax.nn.log_sigmoid(z) + (1.0 - y) * jax.nn.log_sigmoid(-z))


def init_linear_head(d_model: int) -> dict:
    """A zero head {"kernel": [D], "bias": []}: z = 0, sigma(z) = 1/2 for every input."""
    return {"kernel": jnp.zeros((d_model,), jnp.float32), "bias": jnp.zeros((), jnp.float32)}
