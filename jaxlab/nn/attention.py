"""The attention block: projections, optional QK-norm, RoPE, attention and output projection.

    q = x W_q,  k = x W_k,  v = x W_v       (W_q: [D, H, Dh], W_k, W_v: [D, K, Dh])
    q, k = rope(norm(q)), rope(norm(k))     (QK-norm optional, per head over Dh)
    out = attention(q, k, v) W_o            (W_o: [H, Dh, D])

The attention math goes through :func:`jaxlab.kernels.attention`: ``kind="softmax"``, or
``kind="softplus"`` (softplus attention with a log-length score scale and re-weighting power
``reweight_power``, see ``jaxlab.kernels.attention.reference``). With a KV cache the block
writes this call's keys and values at ``cache_index`` and attends over the whole cache.

:func:`explicit_attention` is the same math written out in plain jnp, materialising the
attention probabilities [B, H, T, S]: the block takes it instead of the kernels when the
probabilities are asked for (``return_probs``) or when the two products of attention, q.k and
probs.v, use another multiplier than exact float32 (``products``, e.g. L-Mul,
``jaxlab.analysis.lmul.products_einsum``). Otherwise the kernels' path is unchanged.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxlab.kernels import attention
from jaxlab.kernels.attention.reference import attention_mask, softplus_row_scale
from jaxlab.nn.linear import dense, init_dense
from jaxlab.nn.norms import init_norm, rms_norm
from jaxlab.nn.partitioning import constrain
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
    products: str = "exact"  # the multiplier of q.k and probs.v (explicit path unless "exact")


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


def explicit_attention(q_BTHD: jax.Array, k_BSKD: jax.Array, v_BSKD: jax.Array, *, causal: bool = True,
                       window: int | None = None, q_segment_ids_BT: jax.Array | None = None,
                       kv_segment_ids_BS: jax.Array | None = None, q_offset: jax.Array | int = 0,
                       kind: str = "softmax", reweight_power: float = 1.0,
                       products: str = "exact") -> tuple[jax.Array, jax.Array]:
    """(out_BTHD in q's dtype, probs_BHTS float32): attention with its probabilities written out.

        softmax:   a_ts = softmax_s(<q_t Dh^-1/2, k_s> over the allowed keys)
        softplus:  a_ts = w_ts / sum_s w_ts,  w_ts = softplus(Dh^-1/2 log(n_t) <q_t, k_s>)^p
        out_t = sum_s a_ts v_s

    The mask (causal, window, segments, ``q_offset``) is the kernels' (``attention_mask``);
    a masked key gets a_ts = 0 and a row with no allowed key is all zeros. Query head h reads
    kv head h // (H / K) (GQA). ``products``: the multiplier of both contractions
    (``jaxlab.analysis.lmul.products_einsum``; "exact": float32 products)."""
    B, T, H, Dh = q_BTHD.shape
    S, K = k_BSKD.shape[1], k_BSKD.shape[2]
    G = H // K
    if products == "exact":
        def ein(spec, a, b):
            return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
    else:
        from jaxlab.analysis.lmul import products_einsum

        def ein(spec, a, b):
            return products_einsum(spec, a, b, products)
    mask_BTS = attention_mask(T, S, causal=causal, window=window, q_segment_ids_BT=q_segment_ids_BT,
                              kv_segment_ids_BS=kv_segment_ids_BS, q_offset=q_offset)
    mask_B11TS = mask_BTS[:, None, None]
    scale = Dh ** -0.5
    q_BTKGD = q_BTHD.astype(jnp.float32).reshape(B, T, K, G, Dh)
    if kind == "softmax":
        s_BKGTS = ein("btkgd,bskd->bkgts", q_BTKGD * scale, k_BSKD.astype(jnp.float32))
        s_BKGTS = jnp.where(mask_B11TS, s_BKGTS, -jnp.inf)
        row_max = jnp.max(s_BKGTS, axis=-1, keepdims=True)
        w_BKGTS = jnp.exp(s_BKGTS - jnp.where(jnp.isfinite(row_max), row_max, 0.0))
    elif kind == "softplus":
        r_BT = jnp.broadcast_to(softplus_row_scale(jnp.sum(mask_BTS, axis=-1), scale), (B, T))
        s_BKGTS = ein("btkgd,bskd->bkgts", q_BTKGD, k_BSKD.astype(jnp.float32))
        w_BKGTS = jax.nn.softplus(s_BKGTS * r_BT[:, None, None, :, None]) ** reweight_power
        w_BKGTS = jnp.where(mask_B11TS, w_BKGTS, 0.0)
    else:
        raise ValueError(f"unknown attention kind {kind!r}; expected 'softmax' or 'softplus'")
    denom = jnp.sum(w_BKGTS, axis=-1, keepdims=True)
    probs_BKGTS = w_BKGTS / jnp.where(denom == 0.0, 1.0, denom)
    out_BTKGD = ein("bkgts,bskd->btkgd", probs_BKGTS, v_BSKD.astype(jnp.float32))
    return out_BTKGD.reshape(B, T, H, Dh).astype(q_BTHD.dtype), probs_BKGTS.reshape(B, H, T, S)


def attention_block(params: dict, x_BTD: jax.Array, cfg: AttentionConfig, *,
                    rope: tuple[jax.Array, jax.Array], segment_ids_BT: jax.Array | None = None,
                    cache: dict | None = None, cache_index: jax.Array | int = 0,
                    kv_segment_ids_BS: jax.Array | None = None,
                    head_scale_H: jax.Array | None = None, return_probs: bool = False):
    """Returns (out_BTD, new_cache), and the attention probabilities probs_BHTS (float32) third
    with ``return_probs``. ``rope`` = ``rope_for(cfg, positions_BT)``; ``cache`` =
    {"k", "v": [B, S, K, Dh]} or None.

    With a cache, ``kv_segment_ids_BS`` are the segment ids of all S cache slots (this call's
    slots included) and ``segment_ids_BT`` those of the queries. ``head_scale_H`` multiplies
    each head's output before W_o (an intervention: 0 ablates a head). ``return_probs`` or
    ``cfg.products != "exact"`` computes attention with :func:`explicit_attention` instead of
    the kernels (``cfg.impl`` is then not used).
    """
    q_BTHD = dense(params["q"], x_BTD, "btd,dhk->bthk")
    k_BTKD = dense(params["k"], x_BTD, "btd,dhk->bthk")
    v_BTKD = dense(params["v"], x_BTD, "btd,dhk->bthk")
    if cfg.qk_norm:
        q_BTHD = rms_norm(params["q_norm"], q_BTHD, cfg.norm_eps)
        k_BTKD = rms_norm(params["k_norm"], k_BTKD, cfg.norm_eps)
    q_BTHD = constrain(rotate(q_BTHD, *rope), "attn_q")
    k_BTKD = constrain(rotate(k_BTKD, *rope), "attn_kv")
    v_BTKD = constrain(v_BTKD, "attn_kv")

    explicit = return_probs or cfg.products != "exact"
    probs_BHTS = None
    if explicit:
        if cache is None:
            k_all, v_all, q_offset = k_BTKD, v_BTKD, 0
            kv_seg = segment_ids_BT
            new_cache = None
        else:
            k_all, v_all = (jax.lax.dynamic_update_slice_in_dim(
                cache[name], new.astype(cache[name].dtype), cache_index, axis=1)
                for name, new in (("k", k_BTKD), ("v", v_BTKD)))
            q_offset = cache_index
            kv_seg = None if segment_ids_BT is None else kv_segment_ids_BS
            new_cache = {"k": k_all, "v": v_all}
        out_BTHD, probs_BHTS = explicit_attention(
            q_BTHD, k_all.astype(q_BTHD.dtype), v_all.astype(q_BTHD.dtype), causal=cfg.causal,
            window=cfg.window, q_segment_ids_BT=segment_ids_BT, kv_segment_ids_BS=kv_seg, q_offset=q_offset,
            kind=cfg.kind, reweight_power=cfg.reweight_power, products=cfg.products)
    elif cache is None:
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
    out_BTHD = constrain(out_BTHD, "attn_heads")
    if head_scale_H is not None:
        out_BTHD = out_BTHD * head_scale_H.astype(out_BTHD.dtype)[:, None]
    out_BTD = dense(params["o"], out_BTHD, "bthk,hkd->btd")
    return (out_BTD, new_cache, probs_BHTS) if return_probs else (out_BTD, new_cache)
