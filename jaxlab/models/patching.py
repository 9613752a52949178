"""Byte patching for the Byte Latent Transformer (:mod:`jaxlab.models.blt`): where patches start.

A patching is a boolean ``starts [..., T]`` (True where a new patch begins; byte 0 always
begins one); from it, ``patch_ids`` (the index of each byte's patch) and ``patch_lengths``.

Entropy patching (Pagnoni et al. 2024, "Byte Latent Transformer: Patches Scale Better Than
Tokens"). A small causal byte LM p_e gives every byte the entropy of its own prediction,

    H(x_t) = - sum_v p_e(x_t = v | x_<t) log p_e(x_t = v | x_<t)      (nats)

which is the entropy of the next-byte distribution at position t - 1
(:func:`next_byte_entropy` at t - 1; :func:`byte_entropy` shifts it). H(x_0) has no
prediction and is +inf. A patch starts at byte t when

    global constraint:               H(x_t) > theta
    approximate monotonic constraint: H(x_t) - H(x_{t-1}) > theta_r

Both decide byte t from H(x_t) and H(x_{t-1}), which depend on x_<t only, so the patching is
incremental: patching a prefix gives the boundaries of the whole text on that prefix (the
patcher can run on streaming input).

Baselines of the paper: static patching (every ``k`` bytes) and space patching (a patch starts
at the first non-space-like byte after a space-like one; :func:`patch_starts_space`).
:func:`limit_patch_length` adds a maximum patch length to any of them (a sequential rule,
still incremental).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlab.models import transformer
from jaxlab.nn.distributions import categorical_entropy


def next_byte_entropy(params: dict, cfg: transformer.Config, bytes_BT: jax.Array, *,
                      positions_BT: jax.Array | None = None,
                      segment_ids_BT: jax.Array | None = None) -> jax.Array:
    """H [B, T] (float32, nats): the entropy of the byte LM's next-byte distribution at every
    position, H_t = - sum_v p(v | x_<=t) log p(v | x_<=t) over the model's whole vocabulary
    (``params``, ``cfg``: a :mod:`jaxlab.models.transformer`; causal, so H_t depends on x_<=t)."""
    logits_BTV = transformer.apply(params, bytes_BT, cfg, positions_BT=positions_BT,
                                   segment_ids_BT=segment_ids_BT)
    return categorical_entropy(logits_BTV)


def byte_entropy(next_H_BT: jax.Array) -> jax.Array:
    """H(x_t) [..., T] from next-byte entropies: H(x_t) = next_H[t - 1], H(x_0) = +inf."""
    first = jnp.full(next_H_BT.shape[:-1] + (1,), jnp.inf, next_H_BT.dtype)
    return jnp.concatenate([first, next_H_BT[..., :-1]], axis=-1)


def _first_starts(starts_T: jax.Array) -> jax.Array:
    return starts_T.at[..., 0].set(True)


def _check_time_axis(x: jax.Array, name: str) -> None:
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name} must have a non-empty last (time) axis, got shape {x.shape}")


def patch_starts_global(H_T: jax.Array, theta: float) -> jax.Array:
    """starts [..., T]: H(x_t) > theta (global constraint), and byte 0. ``H_T`` = H(x_t)
    (:func:`byte_entropy`)."""
    _check_time_axis(H_T, "H_T")
    return _first_starts(H_T > theta)


def patch_starts_monotonic(H_T: jax.Array, theta_r: float) -> jax.Array:
    """starts [..., T]: H(x_t) - H(x_{t-1}) > theta_r (approximate monotonic constraint), and
    byte 0. ``H_T`` = H(x_t); with H(x_0) = +inf byte 1 never starts a patch by this rule."""
    _check_time_axis(H_T, "H_T")
    rise = H_T[..., 1:] - H_T[..., :-1]
    return jnp.concatenate([jnp.ones(H_T.shape[:-1] + (1,), bool), rise > theta_r], axis=-1)


def space_like(bytes_T: jax.Array) -> jax.Array:
    """True for bytes that are not an ASCII letter or digit and not part of a multi-byte UTF-8
    character (>= 128); special ids (>= 256) are space-like."""
    b = bytes_T
    letter = ((b >= ord("a")) & (b <= ord("z"))) | ((b >= ord("A")) & (b <= ord("Z")))
    digit = (b >= ord("0")) & (b <= ord("9"))
    return ~(letter | digit | ((b >= 128) & (b < 256)))


def patch_starts_space(bytes_T: jax.Array) -> jax.Array:
    """starts [..., T]: byte t is not space-like and byte t - 1 is (a word with the spaces and
    punctuation after it is one patch), and byte 0."""
    _check_time_axis(bytes_T, "bytes_T")
    sp = space_like(bytes_T)
    starts = sp[..., :-1] & ~sp[..., 1:]
    return jnp.concatenate([jnp.ones(bytes_T.shape[:-1] + (1,), bool), starts], axis=-1)


def patch_starts_static(positions_T: jax.Array, k: int) -> jax.Array:
    """starts [..., T]: every ``k`` bytes of a sequence (position % k == 0), and byte 0."""
    if k < 1:
        raise ValueError(f"static patch size must be >= 1, got {k}")
    _check_time_axis(positions_T, "positions_T")
    return _first_starts(positions_T % k == 0)


@functools.partial(jax.jit, static_argnames="max_len")
def limit_patch_length(starts_T: jax.Array, max_len: int) -> jax.Array:
    """starts [..., T] with a patch also starting wherever the current one already has
    ``max_len`` bytes: run_t = 1 if start_t else run_{t-1} + 1, start_t |= run_{t-1} == max_len."""
    if max_len < 1:
        raise ValueError(f"max patch length must be >= 1, got {max_len}")
    _check_time_axis(starts_T, "starts_T")
    starts_TX = jnp.moveaxis(_first_starts(starts_T), -1, 0)

    def step(run, s):
        s = s | (run == max_len)
        run = jnp.where(s, 1, run + 1)
        return run, s

    _, out_TX = jax.lax.scan(step, jnp.zeros(starts_TX.shape[1:], jnp.int32), starts_TX)
    return jnp.moveaxis(out_TX, 0, -1)


def patch_ids(starts_T: jax.Array) -> jax.Array:
    """ids [..., T] (int32): the index of each byte's patch, cumsum(starts) - 1."""
    return jnp.cumsum(starts_T.astype(jnp.int32), axis=-1) - 1


def patch_lengths(starts_T: jax.Array, num_patches: int) -> jax.Array:
    """lengths [..., num_patches] (int32): bytes in each patch (0 past the last patch)."""
    ids = patch_ids(starts_T)
    return jnp.sum(ids[..., None] == jnp.arange(num_patches), axis=-2, dtype=jnp.int32)


__all__ = ["next_byte_entropy", "byte_entropy", "patch_starts_global", "patch_starts_monotonic",
           "space_like", "patch_starts_space", "patch_starts_static", "limit_patch_length", "patch_ids",
           "patch_lengths"]
