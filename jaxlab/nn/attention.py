"""The attention block: projections, optional QK-norm, RoPE, attention and output projection.

    q = x W_q,  k = x W_k,  v = x W_v       (W_q: [D, H, Dh], W_k, W_v: [D, K, Dh])
    q, k = rope(norm(q)), rope(norm(k))     (QK-norm optional, per head over Dh)
    out = attention(q, k, v) W_o            (W_o: [H, Dh, D])

The attention math goes through :func:`jaxlab.kernels.attention`: ``kind="softmax"``, or
``kind="softplus"`` (softplus attention with a log-length score scale and re-weighting power
``reweight_power``, see ``jaxlab.kernels.attention.reference``). With a KV cache the block
writes this call's keys and values at ``cache_index`` and attends over the whole cache.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxlab.kernels import attention
from jaxlab.nn.linear import dense, init_dense
from jaxlab.nn.norms import init_norm, rms_norm
from jaxlab.nn.rope import RopeScaling, rope_tables, rotate


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    qk_norm: bool = False
    norm_eps: float = 1e-6
    rope_base: float = 10000.0
    rope_fraction: float = 1.0
    rope_scaling: RopeScaling = RopeScaling()
    causal: bool = True
    window: int | None = None
    bias: bool = False
    impl: str = "auto"
    kind: str = "softmax"
    reweight_power: float = 1.0


def init_attention(key: jax.Array, cfg: AttentionConfig, *, dtype=jnp.float32,
                   out_scale: float = 1.0) -> dict:
    kq, kk, kv, ko = jax.random.split(key, 4)
    D, H, K, Dh = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    params = {
        "q": init_dense(kq, (D,), (H, Dh), dtype=dtype, bias=cfg.bias),
        "k": init_dense(kk, (D,), (K, Dh), dtype=dtype, bias=cfg.bias),
        "v": init_dense(kv, (D,), (K, Dh), dtype=dtype, bias=cfg.bias),
        "o": init_dense(ko, (H, Dh), (D,), dtype=dtype, scale=out_scale),
    }
    if cfg.qk_norm:
        params["q_norm"] = init_norm(Dh, "rms", dtype)
        params["k_norm"] = init_norm(Dh, "rms", dtype)
    return params


def rope_for(cfg: AttentionConfig, positions_BT: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The (cos, sin) tables the block rotates q and k with; compute once, reuse in all layers."""
    return rope_tables(positions_BT, cfg.head_dim, base=cfg.rope_base, fraction=cfg.rope_fraction,
                       scaling=cfg.rope_scaling)


def attention_block(params: dict, x_BTD: jax.Array, cfg: AttentionConfig, *,
                    rope: tuple[jax.Array, jax.Array], segment_ids_BT: jax.Array | None = None,
                    cache: dict | None = None, cache_index: jax.Array | int = 0,
                    kv_segment_ids_BS: jax.Array | None = None,
                    head_scale_H: jax.Array | None = None):
    """Returns (out_BTD, new_cache). ``rope`` = ``rope_for(cfg, positions_BT)``; ``cache`` =
    {"k", "v": [B, S, K, Dh]} or None.

    With a cache, ``kv_segment_ids_BS`` are the segment ids of all S cache slots (this call's
    slots included) and ``segment_ids_BT`` those of the queries. ``head_scale_H`` multiplies
    each head's output before W_o (an intervention: 0 ablates a head).
    """
    q_BTHD = dense(params["q"], x_BTD, "btd,dhk->bthk")
    k_BTKD = dense(params["k"], x_BTD, "btd,dhk->bthk")
    v_BTKD = dense(params["v"], x_BTD, "btd,dhk->bthk")
    if cfg.qk_norm:
        q_BTHD = rms_norm(params["q_norm"], q_BTHD, cfg.norm_eps)
        k_BTKD = rms_norm(params["k_norm"], k_BTKD, cfg.norm_eps)
    q_BTHD = rotate(q_BTHD, *rope)
    k_BTKD = rotate(k_BTKD, *rope)

    if cache is None:
        out_BTHD = attention(q_BTHD, k_BTKD, v_BTKD, causal=cfg.causal, window=cfg.window,
                             segment_ids=segment_ids_BT, impl=cfg.impl, kind=cfg.kind,
                             reweight_power=cfg.reweight_power)
        new_cache = None
    else:
        k_BSKD = jax.lax.dynamic_update_slice_in_dim(
            cache["k"], k_BTKD.astype(cache["k"].dtype), cache_index, axis=1)
        v_BSKD = jax.lax.dynamic_update_slice_in_dim(
            cache["v"], v_BTKD.astype(cache["v"].dtype), cache_index, axis=1)
        segments = None if segment_ids_BT is None else (segment_ids_BT, kv_segment_ids_BS)
        out_BTHD = attention(q_BTHD, k_BSKD.astype(q_BTHD.dtype), v_BSKD.astype(q_BTHD.dtype),
                             causal=cfg.causal, window=cfg.window, segment_ids=segments,
                             q_offset=cache_index, impl=cfg.impl, kind=cfg.kind,
                             reweight_power=cfg.reweight_power)
        new_cache = {"k": k_BSKD, "v": v_BSKD}
    if head_scale_H is not None:
        out_BTHD = out_BTHD * head_scale_H.astype(out_BTHD.dtype)[:, None]
    return dense(params["o"], out_BTHD, "bthk,hkd->btd"), new_cache
