"""Rotary position embeddings with a configurable base and fraction of rotated dimensions.

For a head vector x of size Dh, the first R = rotary_dim(Dh, fraction) dimensions are split
into halves (x1, x2) of size R/2 and rotated by the angle theta_i(p) = p * base^(-2i/R):

    x1' = x1 cos(theta) - x2 sin(theta),     x2' = x2 cos(theta) + x1 sin(theta),

the remaining Dh - R dimensions pass through unchanged (partial RoPE; fraction 0 is NoPE).
This is the "rotate half" layout of Llama-family checkpoints. The score <q'_m, k'_n> then
depends on the positions only through m - n.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rotary_dim(head_dim: int, fraction: float) -> int:
    """R = the even number of rotated dimensions: 2 * floor(fraction * head_dim / 2)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"rope fraction must be in [0, 1], got {fraction}")
    return 2 * int(fraction * head_dim // 2)


def inv_frequencies(rot_dim: int, base: float) -> jax.Array:
    """inv_freq_i = base^(-2i / R) for i in [0, R/2), float32."""
    return 1.0 / (base ** (jnp.arange(0, rot_dim, 2, dtype=jnp.float32) / rot_dim))


def apply_rope(x_BTHD: jax.Array, positions_BT: jax.Array, *, base: float = 10000.0,
               fraction: float = 1.0) -> jax.Array:
    """Rotates the first R dims of every head of ``x_BTHD`` by its token's position."""
    head_dim = x_BTHD.shape[-1]
    rot = rotary_dim(head_dim, fraction)
    if rot == 0:
        return x_BTHD
    angles_BTR = positions_BT[..., None].astype(jnp.float32) * inv_frequencies(rot, base)
    cos_BT1R = jnp.cos(angles_BTR)[:, :, None, :]
    sin_BT1R = jnp.sin(angles_BTR)[:, :, None, :]
    x32 = x_BTHD.astype(jnp.float32)
    x1, x2, rest = x32[..., : rot // 2], x32[..., rot // 2 : rot], x32[..., rot:]
    rotated = [x1 * cos_BT1R - x2 * sin_BT1R, x2 * cos_BT1R + x1 * sin_BT1R]
    return jnp.concatenate(rotated + [rest], axis=-1).astype(x_BTHD.dtype)
