"""Token embedding and the (tied or untied) unembedding to logits."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxlab.nn.linear import dense


def init_embedding(key: jax.Array, vocab_size: int, d_model: int, dtype=jnp.float32) -> dict:
    """embedding: [V, D] drawn from N(0, 1/D), so tied logits start at unit scale."""
    table = jax.random.normal(key, (vocab_size, d_model), jnp.float32) / math.sqrt(d_model)
    return {"embedding": table.astype(dtype)}


def embed(params: dict, tokens_BT: jax.Array, dtype) -> jax.Array:
    """x_BTD = E[tokens] (ids outside [0, V) are clipped into range)."""
    return jnp.take(params["embedding"], tokens_BT, axis=0, mode="clip").astype(dtype)


def unembed(params: dict, x_BTD: jax.Array, *, tied: bool) -> jax.Array:
    """logits_BTV = x E^T (tied: ``params`` is the embedding) or x W_out (untied: a dense kernel
    [D, V]), accumulated and returned in float32."""
    if tied:
        return dense({"kernel": params["embedding"]}, x_BTD, "btd,vd->btv", out_dtype=jnp.float32)
    return dense(params, x_BTD, "btd,dv->btv", out_dtype=jnp.float32).astype(jnp.float32)
