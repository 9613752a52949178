"""FAN, the Fourier Analysis Network layer (Dong et al. 2024):

    phi(x) = [ cos(x W_p) || sin(x W_p) || act(x W_q + b_q) ]

with W_p [d_in, d_p] (no bias: the phase is carried by having both cos and sin), W_q
[d_in, d_q], b_q [d_q], and d_out = 2 d_p + d_q; the paper takes d_p = d_out / 4, so a
quarter of the outputs are periodic in x by construction (two quarters counting cos and
sin). As an MLP: h = phi(x), out = h W_down.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlab.nn.linear import dense, init_dense


def fan_split(d_out: int, periodic_fraction: float = 0.25) -> tuple[int, int]:
    """(d_p, d_q) with d_p = round(periodic_fraction * d_out) and 2 d_p + d_q = d_out."""
    d_p = max(1, round(periodic_fraction * d_out))
    d_q = d_out - 2 * d_p
    if d_q < 0:
        raise ValueError(f"periodic_fraction={periodic_fraction} leaves no room in d_out={d_out}")
    return d_p, d_q


def init_fan(key: jax.Array, d_in: int, d_out: int, *, periodic_fraction: float = 0.25,
             dtype=jnp.float32) -> dict:
    d_p, d_q = fan_split(d_out, periodic_fraction)
    k_p, k_q = jax.random.split(key)
    return {"periodic": init_dense(k_p, (d_in,), (d_p,), dtype=dtype),
            "plain": init_dense(k_q, (d_in,), (d_q,), dtype=dtype, bias=True)}


def fan(params: dict, x: jax.Array, activation=jax.nn.gelu) -> jax.Array:
    """phi(x) [..., d_out] of x [..., d_in] (module docstring)."""
    p = dense(params["periodic"], x, "...i,io->...o")
    q = activation(dense(params["plain"], x, "...i,io->...o"))
    return jnp.concatenate([jnp.cos(p), jnp.sin(p), q], axis=-1)
