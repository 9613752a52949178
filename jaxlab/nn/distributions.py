"""Quantities of categorical distributions given by logits over their last axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def categorical_entropy(logits_V: jax.Array) -> jax.Array:
    """H = - sum_v p_v log p_v with p = softmax(logits) over the last axis, float32 [...]
    (nats). A logit of -inf (a filtered token) has p = 0 and adds nothing."""
    logp_V = jax.nn.log_softmax(logits_V.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.exp(logp_V) * jnp.where(jnp.isfinite(logp_V), logp_V, 0.0), axis=-1)
