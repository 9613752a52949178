"""``attention``: the one public attention function, dispatching to an implementation.

Implementations: ``"xla"`` (``xla.py``: the math of the plain-jnp reference in
``reference.py``, with a backward pass that recomputes the probabilities instead of storing
them). ``"auto"`` picks the best implementation that supports the call. ``reference.py`` is the
ground truth the implementations are tested against.
"""

from __future__ import annotations

import jax

from jaxlab.kernels.attention.reference import attention_mask, attention_reference
from jaxlab.kernels.attention.xla import attention_xla

IMPLEMENTATIONS = ("auto", "xla")


def _split_segment_ids(segment_ids, B: int, T: int, S: int):
    if segment_ids is None:
        return None, None
    if isinstance(segment_ids, (tuple, list)):
        q_seg, kv_seg = segment_ids
    else:
        if T != S:
            raise ValueError(
                f"segment_ids of shape {segment_ids.shape} need T == S (got T={T}, S={S}); "
                "pass (q_segment_ids [B, T], kv_segment_ids [B, S]) for cross or cached attention")
        q_seg = kv_seg = segment_ids
    if q_seg.shape != (B, T) or kv_seg.shape != (B, S):
        raise ValueError(f"segment ids must be [B, T]={B, T} and [B, S]={B, S}, "
                         f"got {q_seg.shape} and {kv_seg.shape}")
    return q_seg, kv_seg


def attention(q_BTHD: jax.Array, k_BSKD: jax.Array, v_BSKD: jax.Array, *, causal: bool = True,
              window: int | None = None, segment_ids=None, q_offset: jax.Array | int = 0,
              scale: float | None = None, impl: str = "auto") -> jax.Array:
    """Multi-head attention with GQA/MQA, causal / bidirectional / sliding-window masks and
    packed-sequence segment ids.

    Args:
      q_BTHD: queries [B, T, H, Dh].
      k_BSKD, v_BSKD: keys and values [B, S, K, Dh] with H % K == 0 (K = H: MHA, K = 1: MQA).
      causal: key s is visible to query t only if s <= t + q_offset.
      window: sliding window: only the ``window`` nearest keys are visible (None: no window).
      segment_ids: [B, T] int ids for self-attention over packed sequences (tokens attend only
        within their segment; use 0 for padding), or a pair ([B, T], [B, S]).
      q_offset: key index of query 0 (decode steps against a KV cache); may be traced.
      scale: score scale, default Dh^-0.5.
      impl: "auto" | "xla".
    Returns:
      out_BTHD in q's dtype.
    """
    if q_BTHD.ndim != 4 or k_BSKD.ndim != 4 or v_BSKD.ndim != 4:
        raise ValueError(f"attention expects q [B,T,H,Dh], k/v [B,S,K,Dh]; got shapes "
                         f"{q_BTHD.shape}, {k_BSKD.shape}, {v_BSKD.shape}")
    B, T, H, Dh = q_BTHD.shape
    if k_BSKD.shape != v_BSKD.shape:
        raise ValueError(f"k and v shapes differ: {k_BSKD.shape} vs {v_BSKD.shape}")
    Bk, S, K, Dk = k_BSKD.shape
    if Bk != B or Dk != Dh:
        raise ValueError(f"q {q_BTHD.shape} and k {k_BSKD.shape} disagree on batch or head dim")
    if H % K:
        raise ValueError(f"query heads ({H}) must be a multiple of kv heads ({K})")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 or None, got {window}")
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown attention impl {impl!r}; expected one of {IMPLEMENTATIONS}")
    q_seg, kv_seg = _split_segment_ids(segment_ids, B, T, S)
    return attention_xla(q_BTHD, k_BSKD, v_BSKD, causal=causal, window=window, q_segment_ids_BT=q_seg,
                         kv_segment_ids_BS=kv_seg, q_offset=q_offset,
                         scale=Dh ** -0.5 if scale is None else scale)


__all__ = ["attention", "attention_mask", "attention_reference", "attention_xla", "IMPLEMENTATIONS"]
