"""The hidden attention of a Mamba layer (Ali, Zimerman and Wolf 2024, "The Hidden Attention of
Mamba Models"): the selective scan written as a causal, data-dependent attention matrix per
channel.

Unrolling h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t from h_{-1} = 0, channel e of the scan
output is y_t = sum_{s <= t} alpha[t, s] u_s + D u_t with

    alpha[b, e, t, s] = sum_n C_t[n] exp(sum_{k=s+1..t} delta_k[e] A[e, n]) delta_s[e] B_s[n]   (s <= t)
                      = 0                                                                    (s > t)

and the layer's gated output y_t * silu(z_t). ``delta = softplus(dt + dt_bias)``. The exponent is
computed as a difference of cumulative sums, masked above the diagonal before ``exp`` (so no
overflow). Memory is [B, E, T, T, N] per layer: meant for short analysis sequences.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlab.models import mamba


def hidden_attention(delta_BTE: jax.Array, A_EN: jax.Array, B_BTN: jax.Array, C_BTN: jax.Array) -> jax.Array:
    """alpha [B, E, T, T] (module docstring) from the scan's step sizes (after softplus), A, B, C."""
    if delta_BTE.ndim != 3 or B_BTN.shape != C_BTN.shape or B_BTN.shape[:2] != delta_BTE.shape[:2]:
        raise ValueError(f"need delta [B, T, E] and B, C [B, T, N] of one B and T, got {delta_BTE.shape}, "
                         f"{B_BTN.shape}, {C_BTN.shape}")
    if A_EN.shape != (delta_BTE.shape[2], B_BTN.shape[2]):
        raise ValueError(f"A must be [E, N]={(delta_BTE.shape[2], B_BTN.shape[2])}, got {A_EN.shape}")
    delta = delta_BTE.astype(jnp.float32)
    cum_BTEN = jnp.cumsum(delta[..., None] * A_EN.astype(jnp.float32), axis=1)  # sum_{k<=t} delta_k A
    T = delta.shape[1]
    causal_TS = jnp.tril(jnp.ones((T, T), bool))
    # exponent[b, e, t, s, n] = cum_t - cum_s = sum_{k=s+1..t} delta_k A   (s <= t)
    diff_BETSN = (jnp.transpose(cum_BTEN, (0, 2, 1, 3))[:, :, :, None, :]
                  - jnp.transpose(cum_BTEN, (0, 2, 1, 3))[:, :, None, :, :])
    decay_BETSN = jnp.exp(jnp.where(causal_TS[None, None, :, :, None], diff_BETSN, -jnp.inf))
    return jnp.einsum("btn,betsn,bse,bsn->bets", C_BTN.astype(jnp.float32), decay_BETSN, delta,
                      B_BTN.astype(jnp.float32))


def layer_hidden_attention(layer: dict, x_BTD: jax.Array, cfg: mamba.Config) -> tuple[jax.Array, dict]:
    """(alpha [B, E, T, T], the scan inputs of :func:`jaxlab.models.mamba.ssm_inputs`) of one
    layer (params without the [L] axis) for its input residual stream x [B, T, D], from a zero
    state (one sequence per row, no packing)."""
    conv = jnp.zeros((x_BTD.shape[0], cfg.d_conv - 1, cfg.d_inner), jnp.float32)
    s = mamba.ssm_inputs(layer, x_BTD, cfg, conv)
    delta_BTE = jax.nn.softplus(s["dt"].astype(jnp.float32) + s["dt_bias"].astype(jnp.float32))
    return hidden_attention(delta_BTE, s["A"], s["B"], s["C"]), s


def attention_output(alpha_BETS: jax.Array, s: dict) -> jax.Array:
    """The scan's gated output y [B, T, E] from alpha: (alpha u + D u) * silu(z)."""
    u_BTE = s["u"].astype(jnp.float32)
    y_BTE = jnp.einsum("bets,bse->bte", alpha_BETS, u_BTE) + s["D"].astype(jnp.float32) * u_BTE
    return y_BTE * jax.nn.silu(s["z"].astype(jnp.float32))


def model_hidden_attention(params: dict, tokens_BT: jax.Array, cfg: mamba.Config) -> jax.Array:
    """alpha of every layer of a Mamba LM, [L, B, E, T, T], on token rows from a zero state."""
    _, hidden_LBTD = mamba.apply(params, tokens_BT, cfg, return_hidden=True)
    return jnp.stack([layer_hidden_attention(jax.tree.map(lambda p: p[l], params["layers"]), hidden_LBTD[l], cfg)[0]
                      for l in range(cfg.n_layers)])
