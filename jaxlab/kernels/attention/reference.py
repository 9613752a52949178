"""Plain-jnp attention: the ground truth every attention kernel is tested against.

    out_t = sum_s softmax_s(scale * <q_t, k_s> + mask_ts) v_s

with GQA handled by grouping query heads (query head h reads kv head h // G, G = H / K), never
by repeating K and V. The mask allows key s for query t when all of these hold:

    causal:       s <= t + q_offset
    window w:     t + q_offset - s < w   (causal: the w most recent keys, the query's own
                  included; non-causal: |t + q_offset - s| < w)
    segments:     q_segment_ids[t] == kv_segment_ids[s]

``q_offset`` places query t at key index t + q_offset (a decode step against a KV cache).
A query row with no allowed key returns zeros, never NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def attention_mask(T: int, S: int, *, causal: bool, window: int | None = None,
                   q_segment_ids_BT: jax.Array | None = None,
                   kv_segment_ids_BS: jax.Array | None = None,
                   q_offset: jax.Array | int = 0) -> jax.Array:
    """Boolean mask [B or 1, T, S]: True where query t may attend to key s."""
    q_idx = jnp.arange(T)[:, None] + q_offset
    k_idx = jnp.arange(S)[None, :]
    mask_TS = jnp.ones((T, S), bool)
    if causal:
        mask_TS &= k_idx <= q_idx
    if window is not None:
        dist = q_idx - k_idx
        mask_TS &= (dist < window) if causal else (jnp.abs(dist) < window)
    mask_BTS = mask_TS[None]
    if q_segment_ids_BT is not None:
        mask_BTS = mask_BTS & (q_segment_ids_BT[:, :, None] == kv_segment_ids_BS[:, None, :])
    return mask_BTS


def attention_reference(q_BTHD: jax.Array, k_BSKD: jax.Array, v_BSKD: jax.Array, *,
                        causal: bool = True, window: int | None = None,
                        q_segment_ids_BT: jax.Array | None = None,
                        kv_segment_ids_BS: jax.Array | None = None,
                        q_offset: jax.Array | int = 0,
                        scale: float | None = None) -> jax.Array:
    """Softmax attention in float32, returned in q's dtype. See the module docstring."""
    B, T, H, Dh = q_BTHD.shape
    S, K = k_BSKD.shape[1], k_BSKD.shape[2]
    G = H // K
    scale = Dh ** -0.5 if scale is None else scale
    q_BTKGD = q_BTHD.reshape(B, T, K, G, Dh)
    scores_BKGTS = jnp.einsum("btkgd,bskd->bkgts", q_BTKGD, k_BSKD,
                              preferred_element_type=jnp.float32) * scale
    mask_BTS = attention_mask(T, S, causal=causal, window=window, q_segment_ids_BT=q_segment_ids_BT,
                              kv_segment_ids_BS=kv_segment_ids_BS, q_offset=q_offset)
    mask_B11TS = mask_BTS[:, None, None]
    scores_BKGTS = jnp.where(mask_B11TS, scores_BKGTS, -jnp.inf)
    row_max = jnp.max(scores_BKGTS, axis=-1, keepdims=True)
    row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
    weights = jnp.exp(scores_BKGTS - jax.lax.stop_gradient(row_max))
    denom = jnp.sum(weights, axis=-1, keepdims=True)
    probs_BKGTS = weights / jnp.where(denom == 0.0, 1.0, denom)
    out_BTKGD = jnp.einsum("bkgts,bskd->btkgd", probs_BKGTS, v_BSKD.astype(jnp.float32))
    return out_BTKGD.reshape(B, T, H, Dh).astype(q_BTHD.dtype)


def visible_key_count(T: int, S: int, *, causal: bool, window: int | None = None,
                      q_segment_ids_BT: jax.Array | None = None,
                      kv_segment_ids_BS: jax.Array | None = None,
                      q_offset: jax.Array | int = 0) -> jax.Array:
    """n [B or 1, T]: how many keys each query may attend to (the mask's row sums)."""
    mask_BTS = attention_mask(T, S, causal=causal, window=window, q_segment_ids_BT=q_segment_ids_BT,
                              kv_segment_ids_BS=kv_segment_ids_BS, q_offset=q_offset)
    return jnp.sum(mask_BTS, axis=-1, dtype=jnp.int32)


def softplus_row_scale(n_BT: jax.Array, scale: float) -> jax.Array:
    """The length-dependent score scale of softplus attention: r_t = scale * log(n_t).

    n_t is the number of keys query t sees. Multiplying scores by log n keeps the entropy
    of the attention weights from growing with the context length (entropy invariance), so
    weights trained at one length stay as sharp at longer ones. A row with one key (or none)
    gets r = 0; its single weight is 1 whatever the score.
    """
    return scale * jnp.log(jnp.maximum(n_BT, 1).astype(jnp.float32))


def softplus_attention_reference(q_BTHD: jax.Array, k_BSKD: jax.Array, v_BSKD: jax.Array, *,
                                 causal: bool = True, window: int | None = None,
                                 q_segment_ids_BT: jax.Array | None = None,
                                 kv_segment_ids_BS: jax.Array | None = None,
                                 q_offset: jax.Array | int = 0, scale: float | None = None,
                                 power: float = 1.0) -> jax.Array:
    """Softplus attention with length scaling and re-weighting (Gao & Spratling, 2025), in
    float32, returned in q's dtype.

    Softmax is a positivity map (exp) followed by l1 normalisation. Here the map is Softplus,
    applied to scores scaled by the log of the row's length:

        x_ts = scale * log(n_t) * <q_t, k_s>       n_t = number of keys query t sees
        w_ts = softplus(x_ts) ** power            (power = 1: LSSA; power > 1: re-weighted)
        out_t = sum_s w_ts v_s / sum_s w_ts        (over the allowed keys, mask as in softmax)

    Raising the weights to ``power`` before normalising, a_ts^p / sum_s a_ts^p, sharpens the
    distribution (large weights gain, small ones fade) and can be switched on at evaluation
    time without retraining. A row with no allowed key returns zeros.

    This is the formula as written, for values. Where every score of a row is very negative
    its l1 sum vanishes (softplus(x) ~ e^x) and its gradient overflows; the implementations
    compute the same weights as a softmax over power * log(softplus(x)), which stays finite.
    """
    B, T, H, Dh = q_BTHD.shape
    S, K = k_BSKD.shape[1], k_BSKD.shape[2]
    G = H // K
    scale = Dh ** -0.5 if scale is None else scale
    mask_BTS = attention_mask(T, S, causal=causal, window=window, q_segment_ids_BT=q_segment_ids_BT,
                              kv_segment_ids_BS=kv_segment_ids_BS, q_offset=q_offset)
    r_BT = softplus_row_scale(jnp.sum(mask_BTS, axis=-1), scale)
    q_BTKGD = q_BTHD.reshape(B, T, K, G, Dh)
    scores_BKGTS = jnp.einsum("btkgd,bskd->bkgts", q_BTKGD, k_BSKD,
                              preferred_element_type=jnp.float32)
    x_BKGTS = scores_BKGTS * jnp.broadcast_to(r_BT, (B, T))[:, None, None, :, None]
    w_BKGTS = jax.nn.softplus(x_BKGTS)
    if power != 1.0:
        w_BKGTS = w_BKGTS ** power
    w_BKGTS = jnp.where(mask_BTS[:, None, None], w_BKGTS, 0.0)
    denom = jnp.sum(w_BKGTS, axis=-1, keepdims=True)
    a_BKGTS = w_BKGTS / jnp.where(denom == 0.0, 1.0, denom)
    out_BTKGD = jnp.einsum("bkgts,bskd->btkgd", a_BKGTS, v_BSKD.astype(jnp.float32))
    return out_BTKGD.reshape(B, T, H, Dh).astype(q_BTHD.dtype)
