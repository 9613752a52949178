"""RMSNorm and LayerNorm, computed in float32 and cast back to the input dtype."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

NormType = Literal["rms", "layer"]


def init_norm(dim: int, kind: NormType = "rms", dtype=jnp.float32) -> dict:
    """``scale`` = 1 (and ``bias`` = 0 for LayerNorm)."""
    params = {"scale": jnp.ones((dim,), dtype)}
    if kind == "layer":
        params["bias"] = jnp.zeros((dim,), dtype)
    return params


def rms_norm(params: dict, x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """y = x / sqrt(mean(x^2) + eps) * scale, over the last axis."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (y * params["scale"].astype(jnp.float32)).astype(x.dtype)


def layer_norm(params: dict, x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """y = (x - mean(x)) / sqrt(var(x) + eps) * scale + bias, over the last axis."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    centred = x32 - mean
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    y = centred * jax.lax.rsqrt(var + eps) * params["scale"].astype(jnp.float32)
    if "bias" in params:
        y = y + params["bias"].astype(jnp.float32)
    return y.astype(x.dtype)


def norm(params: dict, x: jax.Array, kind: NormType, eps: float) -> jax.Array:
    """RMSNorm or LayerNorm by name."""
    if kind == "rms":
        return rms_norm(params, x, eps)
    if kind == "layer":
        return layer_norm(params, x, eps)
    raise ValueError(f"unknown norm {kind!r}; expected 'rms' or 'layer'")
