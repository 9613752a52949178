"""Rotary position embeddings with a configurable base and fraction of rotated dimensions.

For a head vector x of size Dh, the first R = rotary_dim(Dh, fraction) dimensions are split
into halves (x1, x2) of size R/2 and rotated by the angle theta_i(p) = p * base^(-2i/R):

    x1' = x1 cos(theta) - x2 sin(theta),     x2' = x2 cos(theta) + x1 sin(theta),

the remaining Dh - R dimensions pass through unchanged (partial RoPE; fraction 0 is NoPE).
This is the "rotate half" layout of Llama-family checkpoints. The score <q'_m, k'_n> then
depends on the positions only through m - n.

Context extension rescales the inverse frequencies f_i = base^(-2i/R):
  linear (position interpolation):  f_i / factor
  llama3: with wavelength w_i = 2 pi / f_i and the original context C,
          w_i < C / high_freq_factor  -> f_i                  (high frequencies kept)
          w_i > C / low_freq_factor   -> f_i / factor         (low frequencies interpolated)
          otherwise (1 - s) f_i / factor + s f_i,  s = (C / w_i - low) / (high - low)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """How inverse frequencies are rescaled for a longer context (module docstring)."""

    kind: Literal["none", "linear", "llama3"] = "none"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_len: int = 8192

    def __post_init__(self):
        if self.factor <= 0:
            raise ValueError(f"rope scaling factor must be > 0, got {self.factor}")
        if self.kind == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise ValueError("llama3 rope scaling needs high_freq_factor > low_freq_factor")


def scale_frequencies(inv_freq: jax.Array, scaling: RopeScaling) -> jax.Array:
    """Applies ``scaling`` to inverse frequencies (module docstring)."""
    if scaling.kind == "none":
        return inv_freq
    if scaling.kind == "linear":
        return inv_freq / scaling.factor
    wavelen = 2 * math.pi / inv_freq
    low_wavelen = scaling.original_max_len / scaling.low_freq_factor
    high_wavelen = scaling.original_max_len / scaling.high_freq_factor
    smooth = ((scaling.original_max_len / wavelen - scaling.low_freq_factor)
              / (scaling.high_freq_factor - scaling.low_freq_factor))
    blended = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq
    out = jnp.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    return jnp.where((wavelen >= high_wavelen) & (wavelen <= low_wavelen), blended, out)


def rotary_dim(head_dim: int, fraction: float) -> int:
    """R = the even number of rotated dimensions: 2 * floor(fraction * head_dim / 2)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"rope fraction must be in [0, 1], got {fraction}")
    return 2 * int(fraction * head_dim // 2)


def inv_frequencies(rot_dim: int, base: float, scaling: RopeScaling = RopeScaling()) -> jax.Array:
    """inv_freq_i = base^(-2i / R) for i in [0, R/2), float32, then ``scaling``."""
    inv_freq = 1.0 / (base ** (jnp.arange(0, rot_dim, 2, dtype=jnp.float32) / rot_dim))
    return scale_frequencies(inv_freq, scaling)


def rope_tables(positions_BT: jax.Array, head_dim: int, *, base: float = 10000.0,
                fraction: float = 1.0, scaling: RopeScaling = RopeScaling()) -> tuple[jax.Array, jax.Array]:
    """cos and sin of theta_i(p) for every token: two float32 [B, T, R/2] arrays.

    A model computes them once per forward pass and every layer reuses them (computing them
    inside each layer's fused rotation costs a sine and cosine per head and layer).
    """
    rot = rotary_dim(head_dim, fraction)
    angles_BTR = positions_BT[..., None].astype(jnp.float32) * inv_frequencies(rot, base, scaling)
    return jnp.cos(angles_BTR), jnp.sin(angles_BTR)


def rotate(x_BTHD: jax.Array, cos_BTR: jax.Array, sin_BTR: jax.Array) -> jax.Array:
    """Rotates the first R = 2 * cos_BTR.shape[-1] dims of every head (module docstring).

    Written as x * cos + swap(x) * sin on a [..., 2, R/2] view, where swap exchanges the two
    halves (negating the second), so the rotation is one elementwise pass with no concatenation
    when the whole head is rotated.
    """
    half = cos_BTR.shape[-1]
    if half == 0:
        return x_BTHD
    *lead, head_dim = x_BTHD.shape
    x32 = x_BTHD.astype(jnp.float32)
    pairs = x32[..., : 2 * half].reshape(*lead, 2, half)  # (x1, x2)
    cos = cos_BTR[:, :, None, None, :]
    sin = sin_BTR[:, :, None, None, :] * jnp.array([-1.0, 1.0])[:, None]
    rotated = (pairs * cos + jnp.flip(pairs, axis=-2) * sin).reshape(*lead, 2 * half)
    if 2 * half < head_dim:
        rotated = jnp.concatenate([rotated, x32[..., 2 * half:]], axis=-1)
    return rotated.astype(x_BTHD.dtype)


def apply_rope(x_BTHD: jax.Array, positions_BT: jax.Array, *, base: float = 10000.0,
               fraction: float = 1.0) -> jax.Array:
    """Rotates the first R dims of every head of ``x_BTHD`` by its token's position."""
    return rotate(x_BTHD, *rope_tables(positions_BT, x_BTHD.shape[-1], base=base, fraction=fraction))
