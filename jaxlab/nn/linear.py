"""The one dense/einsum function through which every weight matmul goes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxlab.nn.quant import QuantizedKernel


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
    output's trailing dims). This is the single place that reads weights, so:

    - a :class:`jaxlab.nn.quant.QuantizedKernel` is dequantized here (inside the layer scan,
      so one layer's weights at a time);
    - a LoRA adapter beside the kernel (``lora_a`` [n, r] with its scale folded in, ``lora_b``
      [r, m], n and m the kernel's input and output sizes; :func:`jaxlab.peft.inline`) adds
      W = W0 + lora_a lora_b.
    """
    kernel = params["kernel"]
    if isinstance(kernel, QuantizedKernel):  # dequantized here, one layer at a time
        kernel = kernel.dequantize(jnp.float32)
    if "lora_a" in params:  # an adapter kept beside its (frozen, maybe quantized) kernel
        kernel = kernel + jnp.matmul(params["lora_a"], params["lora_b"]).reshape(kernel.shape).astype(kernel.dtype)
    y = jnp.einsum(eqn, x, kernel.astype(x.dtype), preferred_element_type=out_dtype)
    if "bias" in params:
        y = y + params["bias"].astype(y.dtype)
    return y
