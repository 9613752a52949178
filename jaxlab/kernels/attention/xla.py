"""The XLA attention implementation: the reference's math with a memory-lean backward.

Forward (per query row, over the allowed keys):

    s = scale * q k^T,   lse = logsumexp(s),   p = exp(s - lse),   o = p v

Autodiff of the reference keeps the [B, K, G, T, S] probabilities (and more) alive for the
backward pass. Here a custom VJP saves only o and lse ([B, T, H] floats) and recomputes p:

    dv = p^T do,   dp = do v^T,   delta = rowsum(do * o),   ds = p * (dp - delta),
    dq = scale * ds k,   dk = scale * ds^T q

(the FlashAttention-2 backward, written with whole-array einsums). A row with no allowed key
outputs zeros and passes no gradient.

``kind="softplus"`` computes softplus attention (``reference.softplus_attention_reference``)
with plain autodiff, on the same query blocks.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlab.kernels.attention.reference import attention_mask, softplus_row_scale


def _scores(q_BTHD, k_BSKD, mask_BTS, scale):
    """Masked scores scale * q k^T [B, K, G, T, S] (scaling q: T*Dh products, not T*S)."""
    B, T, H, Dh = q_BTHD.shape
    K = k_BSKD.shape[2]
    q_BTKGD = (q_BTHD.astype(jnp.float32) * scale).astype(q_BTHD.dtype).reshape(B, T, K, H // K, Dh)
    s_BKGTS = jnp.einsum("btkgd,bskd->bkgts", q_BTKGD, k_BSKD, preferred_element_type=jnp.float32)
    return jnp.where(mask_BTS[:, None, None], s_BKGTS, -jnp.inf)


def _forward(q_BTHD, k_BSKD, v_BSKD, mask_BTS, scale):
    B, T, H, Dh = q_BTHD.shape
    K = k_BSKD.shape[2]
    s_BKGTS = _scores(q_BTHD, k_BSKD, mask_BTS, scale)
    row_max = jnp.max(s_BKGTS, axis=-1, keepdims=True)
    row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
    w_BKGTS = jnp.exp(s_BKGTS - row_max)
    denom = jnp.sum(w_BKGTS, axis=-1, keepdims=True)
    out_BKGTD = jnp.einsum("bkgts,bskd->bkgtd", w_BKGTS, v_BSKD.astype(jnp.float32))
    out_BKGTD = out_BKGTD / jnp.where(denom == 0.0, 1.0, denom)
    # Empty rows get lse = 0: their scores are all -inf, so the recomputed p is 0 anyway.
    lse_BKGT = jnp.where(denom[..., 0] > 0, row_max[..., 0] + jnp.log(denom[..., 0]), 0.0)
    out_BTHD = jnp.transpose(out_BKGTD, (0, 3, 1, 2, 4)).reshape(B, T, H, Dh)
    return out_BTHD.astype(q_BTHD.dtype), lse_BKGT


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attention(q_BTHD, k_BSKD, v_BSKD, mask_BTS, scale):
    return _forward(q_BTHD, k_BSKD, v_BSKD, mask_BTS, scale)[0]


def _attention_fwd(q_BTHD, k_BSKD, v_BSKD, mask_BTS, scale):
    out_BTHD, lse_BKGT = _forward(q_BTHD, k_BSKD, v_BSKD, mask_BTS, scale)
    return out_BTHD, (q_BTHD, k_BSKD, v_BSKD, mask_BTS, out_BTHD, lse_BKGT)


def _attention_bwd(scale, residuals, dout_BTHD):
    q_BTHD, k_BSKD, v_BSKD, mask_BTS, out_BTHD, lse_BKGT = residuals
    B, T, H, Dh = q_BTHD.shape
    K = k_BSKD.shape[2]
    G = H // K
    p_BKGTS = jnp.exp(_scores(q_BTHD, k_BSKD, mask_BTS, scale) - lse_BKGT[..., None])
    do_BTKGD = dout_BTHD.astype(jnp.float32).reshape(B, T, K, G, Dh)
    o_BTKGD = out_BTHD.astype(jnp.float32).reshape(B, T, K, G, Dh)
    dv_BSKD = jnp.einsum("bkgts,btkgd->bskd", p_BKGTS, do_BTKGD)
    dp_BKGTS = jnp.einsum("btkgd,bskd->bkgts", do_BTKGD, v_BSKD.astype(jnp.float32))
    delta_BKGT = jnp.einsum("btkgd,btkgd->bkgt", do_BTKGD, o_BTKGD)
    ds_BKGTS = p_BKGTS * (dp_BKGTS - delta_BKGT[..., None])  # d(scores); scale applied below
    dq_BTKGD = jnp.einsum("bkgts,bskd->btkgd", ds_BKGTS, k_BSKD.astype(jnp.float32)) * scale
    dk_BSKD = jnp.einsum("bkgts,btkgd->bskd", ds_BKGTS,
                         q_BTHD.astype(jnp.float32).reshape(B, T, K, G, Dh) * scale)
    return (dq_BTKGD.reshape(B, T, H, Dh).astype(q_BTHD.dtype), dk_BSKD.astype(k_BSKD.dtype),
            dv_BSKD.astype(v_BSKD.dtype), None)


_attention.defvjp(_attention_fwd, _attention_bwd)


_LOG_SOFTPLUS_CUT = -20.0  # below: log(softplus(x)) = x to float32 precision


def _log_softplus(x):
    """log(softplus(x)), finite with finite gradients for every finite x."""
    x_safe = jnp.maximum(x, _LOG_SOFTPLUS_CUT)
    return jnp.where(x > _LOG_SOFTPLUS_CUT, jnp.log(jax.nn.softplus(x_safe)), x)


def _softplus_attention(q_BTHD, k_BSKD, v_BSKD, mask_BTS, scale, power):
    """Softplus attention over the keys of ``mask_BTS`` (which must hold every key a query sees:
    the row length n_t is its row sum), as a softmax over power * log(softplus(x)): the same
    weights as softplus(x)^power / sum softplus(x)^power, finite also where a whole row of
    scores is very negative."""
    B, T, H, Dh = q_BTHD.shape
    mask_B11TS = mask_BTS[:, None, None]
    r_BT = softplus_row_scale(jnp.sum(mask_BTS, axis=-1), 1.0)
    x_BKGTS = jnp.where(mask_B11TS, _scores(q_BTHD, k_BSKD, mask_BTS, scale), 0.0)
    x_BKGTS = x_BKGTS * r_BT[:, None, None, :, None]
    e_BKGTS = jnp.where(mask_B11TS, power * _log_softplus(x_BKGTS), -jnp.inf)
    row_max = jax.lax.stop_gradient(jnp.max(e_BKGTS, axis=-1, keepdims=True))
    row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
    w_BKGTS = jnp.where(mask_B11TS, jnp.exp(e_BKGTS - row_max), 0.0)
    denom = jnp.sum(w_BKGTS, axis=-1, keepdims=True)
    a_BKGTS = w_BKGTS / jnp.where(denom == 0.0, 1.0, denom)
    out_BKGTD = jnp.einsum("bkgts,bskd->bkgtd", a_BKGTS, v_BSKD.astype(jnp.float32))
    out_BTHD = jnp.transpose(out_BKGTD, (0, 3, 1, 2, 4)).reshape(B, T, H, Dh)
    return out_BTHD.astype(q_BTHD.dtype)


def key_range(start: int, end: int, S: int, *, causal: bool, window: int | None,
              q_offset: int) -> tuple[int, int]:
    """The keys [lo, hi) that queries [start, end) can see at all (before segment masking)."""
    first, last = start + q_offset, end - 1 + q_offset  # key index of the first / last query
    lo = 0 if window is None else max(0, first - window + 1)
    if causal:
        hi = last + 1
    else:
        hi = S if window is None else last + window
    return min(lo, S), max(min(hi, S), 0)


def attention_xla(q_BTHD: jax.Array, k_BSKD: jax.Array, v_BSKD: jax.Array, *, causal: bool,
                  window: int | None = None, q_segment_ids_BT: jax.Array | None = None,
                  kv_segment_ids_BS: jax.Array | None = None, q_offset: jax.Array | int = 0,
                  scale: float, kind: str = "softmax", power: float = 1.0,
                  block_q: int = 128) -> jax.Array:
    """Softmax (or softplus) attention of q [B, T, H, Dh] over k, v [B, S, K, Dh] (masking as
    in ``reference.attention_mask``).

    With a causal mask or a sliding window and a static ``q_offset``, queries are taken in
    blocks of ``block_q`` and each block attends only to the keys it can see: causal training
    does about half the work of the full T x S product, and a window's cost grows with the
    window, not with S.
    """
    B, T, H, Dh = q_BTHD.shape
    S = k_BSKD.shape[1]
    if kind == "softmax":
        def block_fn(q, k, v, mask):
            return _attention(q, k, v, mask, scale)
    else:
        def block_fn(q, k, v, mask):
            return _softplus_attention(q, k, v, mask, scale, power)
    static_offset = isinstance(q_offset, int)
    if not static_offset or T <= block_q or (not causal and window is None):
        mask_BTS = attention_mask(T, S, causal=causal, window=window, q_segment_ids_BT=q_segment_ids_BT,
                                  kv_segment_ids_BS=kv_segment_ids_BS, q_offset=q_offset)
        return block_fn(q_BTHD, k_BSKD, v_BSKD, jnp.broadcast_to(mask_BTS, (B, T, S)))
    outs = []
    for start in range(0, T, block_q):
        end = min(T, start + block_q)
        lo, hi = key_range(start, end, S, causal=causal, window=window, q_offset=q_offset)
        if hi <= lo:  # no visible key: zeros, like a fully masked row
            outs.append(jnp.zeros((B, end - start, H, Dh), q_BTHD.dtype))
            continue
        segments = {} if q_segment_ids_BT is None else dict(
            q_segment_ids_BT=q_segment_ids_BT[:, start:end], kv_segment_ids_BS=kv_segment_ids_BS[:, lo:hi])
        mask_BTS = attention_mask(end - start, hi - lo, causal=causal, window=window,
                                  q_offset=q_offset + start - lo, **segments)
        outs.append(block_fn(q_BTHD[:, start:end], k_BSKD[:, lo:hi], v_BSKD[:, lo:hi],
                             jnp.broadcast_to(mask_BTS, (B, end - start, hi - lo))))
    return jnp.concatenate(outs, axis=1)
