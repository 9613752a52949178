"""The one dense/einsum function through which every weight matmul goes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def init_dense(key: jax.Array, in_shape: tuple[int, ...], out_shape: tuple[int, ...], *,
               dtype=jnp.float32, bias: bool = False, scale: float = 1.0) -> dict:
    """Kernel of shape ``in_shape + out_shape`` drawn from N(0, scale^2 / fan_in).

    fan_in = prod(in_shape); ``bias=True`` adds a zero bias of shape ``out_shape``.
    """
    fan_in = math.prod(in_shape)
    kernel = jax.random.normal(key, in_shape + out_shape, jnp.float32) * (scale / math.sqrt(fan_in))
    params = {"kernel": kernel.astype(dtype)}
    if bias:
        params["bias"] = jnp.zeros(out_shape, dtype)
    return params


def dense(params: dict, x: jax.Array, eqn: str, *, out_dtype=None) -> jax.Array:
    """y = einsum(eqn, x, W) + b, computed in x's dtype (accumulated in ``out_dtype`` if given).

    ``params`` holds ``kernel`` (any rank, contracted by ``eqn``) and optionally ``bias`` (the
    output's trailing dims). Adapters (LoRA and kin) add entries beside ``kernel``; this is the
    single place that reads weights, so an adapter needs to change nothing else.
    """
    y = jnp.einsum(eqn, x, params["kernel"].astype(x.dtype), preferred_element_type=out_dtype)
    if "bias" in params:
        y = y + params["bias"].astype(y.dtype)
    return y
