"""The transformer's MLPs: gated (SwiGLU, GeGLU) and FAN.

    mlp(x) = W_down (act(W_gate x) * (W_up x)),   act = SiLU (SwiGLU), tanh-GELU (GeGLU) or
                                                   erf-GELU (geglu_exact, as in ModernBERT)
    mlp(x) = W_down [cos(W_p x) || sin(W_p x) || GELU(W_q x + b_q)]        (fan: FAN's layer,
             :mod:`jaxlab.nn.fan`, with 2 d_p + d_q = F and d_p = F / 4)
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jaxlab.nn.linear import dense, init_dense

MlpType = Literal["swiglu", "geglu", "geglu_exact", "fan"]

_ACTIVATIONS = {
    "swiglu": jax.nn.silu,
    "geglu": lambda x: jax.nn.gelu(x, approximate=True),
    "geglu_exact": lambda x: jax.nn.gelu(x, approximate=False),
}


def init_mlp(key: jax.Array, d_model: int, mlp_dim: int, *, dtype=jnp.float32, bias: bool = False,
             out_scale: float = 1.0, kind: MlpType = "swiglu") -> dict:
    """Gated: gate, up [D, F]; fan: periodic [D, F/4], plain [D, F/2] (+ bias); then
    down: [F, D] (its init scaled by ``out_scale``)."""
    k_gate, k_up, k_down = jax.random.split(key, 3)
    if kind == "fan":
        from jaxlab.nn.fan import init_fan

        return {**init_fan(k_gate, d_model, mlp_dim, dtype=dtype),
                "down": init_dense(k_down, (mlp_dim,), (d_model,), dtype=dtype, bias=bias, scale=out_scale)}
    return {
        "gate": init_dense(k_gate, (d_model,), (mlp_dim,), dtype=dtype, bias=bias),
        "up": init_dense(k_up, (d_model,), (mlp_dim,), dtype=dtype, bias=bias),
        "down": init_dense(k_down, (mlp_dim,), (d_model,), dtype=dtype, bias=bias, scale=out_scale),
    }


def mlp_hidden(params: dict, x_BTD: jax.Array, kind: MlpType = "swiglu") -> jax.Array:
    """act(W_gate x) * (W_up x) [B, T, F] (fan: FAN's phi(x)): the input of the down projection."""
    if kind == "fan":
        from jaxlab.nn.fan import fan

        return fan(params, x_BTD)
    if kind not in _ACTIVATIONS:
        raise ValueError(f"unknown mlp type {kind!r}; expected one of {sorted(_ACTIVATIONS) + ['fan']}")
    gate_BTF = dense(params["gate"], x_BTD, "btd,df->btf")
    up_BTF = dense(params["up"], x_BTD, "btd,df->btf")
    return _ACTIVATIONS[kind](gate_BTF) * up_BTF


def mlp_down(params: dict, hidden_BTF: jax.Array) -> jax.Array:
    """W_down h [B, T, D]."""
    return dense(params["down"], hidden_BTF, "btf,fd->btd")


def mlp(params: dict, x_BTD: jax.Array, kind: MlpType = "swiglu") -> jax.Array:
    return mlp_down(params, mlp_hidden(params, x_BTD, kind))
