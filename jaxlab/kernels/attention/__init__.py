"""``attention``: the one public attention function, dispatching to an implementation.

Implementations:
  "xla"     ``xla.py``: the reference's math in XLA ops, with a backward pass that recomputes
            the probabilities instead of storing them, and causal / window block skipping.
  "pallas"  ``pallas.py``: flash-attention kernels (forward and backward); on CPU they run in
            interpret mode (slow: for tests).
  "cudnn"   ``jax.nn.dot_product_attention(implementation="cudnn")`` on an NVIDIA GPU (softmax
            attention only, bf16/f16, no segment ids, no query offset).
  "auto"    the kernel on a GPU when it supports the call, else "xla" (logging why, once);
            "xla" on CPU and TPU.

An explicit implementation that cannot run a call raises ``UnsupportedError`` (a ValueError)
saying why. ``reference.py`` is the ground truth every implementation is tested against.

Kinds: ``kind="softmax"`` (the default) and ``kind="softplus"``, softplus attention with a
length-dependent scale and re-weighting exponent ``reweight_power``
(``reference.softplus_attention_reference``).

On a mesh (a context mesh set with ``jax.set_mesh``, as the trainers' steps run) the Pallas
kernel runs under ``shard_map`` over the batch and head axes (:mod:`jaxlab.kernels._mesh`);
the XLA and cuDNN paths are partitioned by XLA itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jaxlab.kernels import _mesh, _pallas
from jaxlab.kernels._pallas import UnsupportedError
from jaxlab.kernels.attention import pallas as pallas_impl
from jaxlab.kernels.attention.pallas import BlockSizes, flash_attention
from jaxlab.kernels.attention.reference import (attention_mask, attention_reference,
                                                softplus_attention_reference, softplus_row_scale,
                                                visible_key_count)
from jaxlab.kernels.attention.xla import attention_xla

IMPLEMENTATIONS = ("auto", "xla", "pallas", "cudnn")
KINDS = pallas_impl.KINDS


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


def _cudnn_unsupported(q_BTHD, k_BSKD, *, kind, window, causal, q_seg, q_offset) -> str | None:
    if _pallas.backend() != "gpu":
        return f"cuDNN attention needs a GPU backend, not {_pallas.backend()}"
    if kind != "softmax":
        return f"cuDNN computes softmax attention only, not kind={kind!r}"
    if q_BTHD.dtype not in (jnp.bfloat16, jnp.float16) or k_BSKD.dtype != q_BTHD.dtype:
        return f"cuDNN attention takes bfloat16 or float16 inputs, got {q_BTHD.dtype}/{k_BSKD.dtype}"
    Dh = q_BTHD.shape[-1]
    if Dh % 8 or Dh > 256:
        return f"cuDNN attention needs a head dim that is a multiple of 8 and <= 256, got {Dh}"
    if q_seg is not None:
        return "cuDNN attention here takes no segment ids"
    if not (isinstance(q_offset, int) and q_offset == 0):
        return "cuDNN attention here takes no query offset"
    if q_BTHD.shape[1] != k_BSKD.shape[1]:
        return "cuDNN attention here needs T == S"
    if window is not None and not causal:
        return "cuDNN attention here takes a window only with causal=True"
    return None


def _cudnn(q_BTHD, k_BSKD, v_BSKD, *, causal, window, scale):
    local = None if window is None else (window - 1, 0)
    return jax.nn.dot_product_attention(q_BTHD, k_BSKD, v_BSKD, scale=scale, is_causal=causal,
                                        local_window_size=local, implementation="cudnn")


def _flash_on_mesh(q_BTHD, k_BSKD, v_BSKD, q_seg, kv_seg, q_offset, **kw):
    """The Pallas kernel, under ``shard_map`` over the context mesh's batch and head axes when
    there is one (:mod:`jaxlab.kernels._mesh`): rows and heads stay on their devices."""
    mesh = _mesh.context_mesh()
    if mesh is None:
        return flash_attention(q_BTHD, k_BSKD, v_BSKD, q_segment_ids_BT=q_seg, kv_segment_ids_BS=kv_seg,
                               q_offset=q_offset, **kw)
    _mesh.check_sequence_axes(mesh, "attention(impl='pallas')")
    B, _, H, _ = q_BTHD.shape
    K = k_BSKD.shape[2]
    b = _mesh.batch_axes(mesh, B)
    h = _mesh.split_axis(mesh, H, K)  # GQA groups stay whole: H/t query heads over K/t kv heads
    args, specs = [q_BTHD, k_BSKD, v_BSKD], [P(b, None, h, None), P(b, None, h, None), P(b, None, h, None)]
    for seg in (q_seg, kv_seg):
        if seg is not None:
            args.append(seg)
            specs.append(P(b, None))
    traced_offset = isinstance(q_offset, jax.Array)
    if traced_offset:
        args.append(q_offset)
        specs.append(P())

    def local(q, k, v, *rest):
        rest = list(rest)
        qs = rest.pop(0) if q_seg is not None else None
        ks = rest.pop(0) if kv_seg is not None else None
        off = rest.pop(0) if traced_offset else q_offset
        return flash_attention(q, k, v, q_segment_ids_BT=qs, kv_segment_ids_BS=ks, q_offset=off, **kw)

    return _mesh.shard_kernel(local, mesh, args, specs, P(b, None, h, None))


def attention(q_BTHD: jax.Array, k_BSKD: jax.Array, v_BSKD: jax.Array, *, causal: bool = True,
              window: int | None = None, segment_ids=None, q_offset: jax.Array | int = 0,
              scale: float | None = None, impl: str = "auto", kind: str = "softmax",
              reweight_power: float = 1.0) -> jax.Array:
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
      impl: "auto" | "xla" | "pallas" | "cudnn" (see the module docstring).
      kind: "softmax" | "softplus".
      reweight_power: softplus only: the re-weighting exponent p >= 1 (1: none).
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
    if kind not in KINDS:
        raise ValueError(f"unknown attention kind {kind!r}; expected one of {KINDS}")
    if kind == "softplus" and not reweight_power >= 1.0:
        raise ValueError(f"reweight_power must be >= 1, got {reweight_power}")
    if kind == "softmax" and reweight_power != 1.0:
        raise ValueError(f"reweight_power applies to kind='softplus' only, got {reweight_power} "
                         "with kind='softmax'")
    q_seg, kv_seg = _split_segment_ids(segment_ids, B, T, S)
    scale = Dh ** -0.5 if scale is None else scale

    if impl == "auto":
        if _pallas.backend() == "gpu":
            reason = pallas_impl.unsupported_reason(q_BTHD, k_BSKD, v_BSKD, q_offset=q_offset)
            if reason is None:
                impl = "pallas"
            else:
                _pallas.note_fallback("attention", "xla", reason)
                impl = "xla"
        else:
            impl = "xla"
    if impl == "cudnn":
        reason = _cudnn_unsupported(q_BTHD, k_BSKD, kind=kind, window=window, causal=causal,
                                    q_seg=q_seg, q_offset=q_offset)
        if reason is not None:
            raise UnsupportedError(f"attention(impl='cudnn'): {reason}")
        return _cudnn(q_BTHD, k_BSKD, v_BSKD, causal=causal, window=window, scale=scale)
    if impl == "pallas":
        return _flash_on_mesh(q_BTHD, k_BSKD, v_BSKD, q_seg, kv_seg, q_offset, causal=causal, window=window,
                              scale=scale, kind=kind, power=reweight_power)
    return attention_xla(q_BTHD, k_BSKD, v_BSKD, causal=causal, window=window, q_segment_ids_BT=q_seg,
                         kv_segment_ids_BS=kv_seg, q_offset=q_offset, scale=scale, kind=kind,
                         power=reweight_power)


__all__ = ["attention", "attention_mask", "attention_reference", "attention_xla", "flash_attention",
           "softplus_attention_reference", "softplus_row_scale", "visible_key_count", "BlockSizes",
           "IMPLEMENTATIONS", "KINDS", "UnsupportedError"]
