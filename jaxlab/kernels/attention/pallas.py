"""Flash attention as Pallas kernels: a forward pass, and a backward pass for training.

Notation: B batch, T queries, S keys, H query heads, K kv heads (G = H / K), Dh head dim;
bq, bk the query and key block sizes.

One kernel skeleton serves two kinds of attention. For query row t over the keys s it may see
(the mask of ``reference.attention_mask``), with r_t the row's score scale:

    softmax:   x_ts = r_t <q_t, k_s>,  e_ts = x_ts
    softplus:  x_ts = r_t <q_t, k_s>,  e_ts = power * log(softplus(x_ts))
    p_ts = exp(e_ts - lse_t),  lse_t = log sum_s exp(e_ts),  o_t = sum_s p_ts v_s

with r_t = scale for softmax and r_t = scale * log(n_t) for softplus (``reference.py``).
Softplus attention's l1-normalised weights softplus(x)^power / sum_s softplus(x)^power are
exactly a softmax over e = power * log(softplus(x)); computing them that way keeps them
exact and finite where every score of a row is very negative (softplus(x) ~ e^x underflows,
and a plain l1 normalisation would divide by a vanishing sum), at the cost of two more
transcendental functions per score (log1p, log). The forward pass walks the key blocks of
each query block once with the online softmax (running max and sums on chip) and stores o
and lse. The backward pass recomputes p from lse:

    dv_s = sum_t p_ts do_t
    ds_ts = c_ts (do_t . v_s - delta_t),          delta_t = do_t . o_t
        softmax:  c_ts = p_ts
        softplus: c_ts = p_ts * power * sigmoid(x_ts) / softplus(x_ts)
    dq_t = r_t sum_s ds_ts k_s,                   dk_s = sum_t ds_ts r_t q_t

in two kernels: one per key block (dk and dv; it loops over the G query heads of its kv head,
so K and V are never repeated in memory) and one per query block (dq).

Block skipping: a query block visits only the key blocks its rows can see (causal: up to the
diagonal; with a window: the blocks inside the window, so the cost grows with the window, not
with S), and builds the mask only in the blocks that the causal or window boundary or the
padding cut (in every block when segment ids are given).

Any T and S (padded inside to the block sizes), any head dim (zero-padded to a power of two,
at least 16), float32, bfloat16 and float16 inputs (matmuls accumulate in float32).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from jaxlab.kernels import _pallas
from jaxlab.kernels.attention.reference import softplus_row_scale, visible_key_count

KINDS = ("softmax", "softplus")
_NEG = -1e30  # finite "minus infinity" for masked scores (keeps exp(m_old - m_new) finite)


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile sizes and Triton launch settings (tune per GPU with scripts/bench_kernels.py)."""

    block_q: int = 128
    block_k: int = 64
    block_q_bwd: int = 64
    block_k_bwd: int = 64
    num_warps: int = 4
    num_warps_bwd: int = 4
    num_stages: int = 2

    def __post_init__(self):
        for name in ("block_q", "block_k", "block_q_bwd", "block_k_bwd"):
            b = getattr(self, name)
            if b < 1 or b & (b - 1):
                raise ValueError(f"BlockSizes.{name} must be a power of two, got {b}")


def default_block_sizes(head_dim: int, itemsize: int, interpret: bool) -> BlockSizes:
    """Small tiles in interpret mode (tests); on a GPU, tiles sized for the head dim and the
    input width (float32 tiles take twice the registers and shared memory of bf16 ones)."""
    if interpret:
        return BlockSizes(block_q=32, block_k=32, block_q_bwd=32, block_k_bwd=32)
    if itemsize >= 4:
        return BlockSizes(block_q=64, block_k=32, block_q_bwd=32, block_k_bwd=32,
                          num_warps=4, num_warps_bwd=4, num_stages=2)
    if head_dim <= 64:
        return BlockSizes(block_q=128, block_k=64, block_q_bwd=64, block_k_bwd=64,
                          num_warps=4, num_warps_bwd=4, num_stages=3)
    return BlockSizes(block_q=128, block_k=64, block_q_bwd=64, block_k_bwd=64,
                      num_warps=8, num_warps_bwd=8, num_stages=2)


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything the kernels are specialised on (hashable: a custom_vjp static argument)."""

    kind: str
    causal: bool
    window: int | None
    q_offset: int
    T: int  # true (unpadded) lengths
    S: int
    G: int
    scale: float  # softmax row scale (softplus takes a per-row array instead)
    power: float
    segments: bool
    bq: int
    bk: int
    bq_bwd: int
    bk_bwd: int
    num_warps: int
    num_warps_bwd: int
    num_stages: int
    interpret: bool


# ----------------------------------------------------------------------------- block ranges


def _cdiv(x, b: int):
    """ceil(x / b) for x >= 0 (traced int32)."""
    return lax.div(x + (b - 1), jnp.int32(b))


def _fdiv(x, b: int):
    """floor(x / b) for x >= 0 (traced int32)."""
    return lax.div(x, jnp.int32(b))


def _clip(x, lo, hi):
    return jnp.minimum(jnp.maximum(x, lo), hi)


def _key_block_ranges(st: _Static, p_first, p_last, bk: int, *, pad_is_masked: bool):
    """Key blocks for queries at key positions [p_first, p_last]: (lo, full_lo, full_hi, hi).

    Blocks [lo, hi) hold every key some query can see; inside, [full_lo, full_hi) are the
    blocks where every (query, key) pair is allowed, which need no mask (without segment ids).
    ``pad_is_masked``: blocks holding padded keys (s >= S) need the mask too (forward only:
    in the backward a padded key has k = v = 0 and its gradients are dropped).
    """
    S, w = st.S, st.window
    zero = jnp.int32(0)
    lo_key = zero if w is None else jnp.maximum(p_first - (w - 1), 0)
    if st.causal:
        hi_key = jnp.minimum(p_last + 1, S)
    elif w is None:
        hi_key = jnp.int32(S)
    else:
        hi_key = jnp.minimum(p_last + w, S)
    lo = _fdiv(lo_key, bk)
    hi = jnp.maximum(_cdiv(jnp.maximum(hi_key, 0), bk), lo)
    if st.segments:
        return lo, hi, hi, hi
    full_lo, full_hi = lo, hi
    if w is not None:  # every key of the block within the window of the last query
        full_lo = jnp.maximum(full_lo, _cdiv(jnp.maximum(p_last - (w - 1), 0), bk))
    if st.causal:  # every key of the block at or before the first query
        full_hi = jnp.minimum(full_hi, _fdiv(p_first + 1, bk))
    elif w is not None:
        full_hi = jnp.minimum(full_hi, _fdiv(p_first + w, bk))
    if pad_is_masked:
        full_hi = jnp.minimum(full_hi, S // bk)
    full_lo = _clip(full_lo, lo, hi)
    full_hi = _clip(full_hi, full_lo, hi)
    return lo, full_lo, full_hi, hi


def _query_block_ranges(st: _Static, s_first, s_last, bq: int):
    """Query blocks whose rows see some key in [s_first, s_last]: (lo, full_lo, full_hi, hi),
    as in ``_key_block_ranges`` (padded queries have zero gradients and need no mask)."""
    T, w, off = st.T, st.window, st.q_offset
    # key positions p = t + q_offset of the queries that see a key of the block
    if st.causal:
        p_lo = s_first
    elif w is None:
        p_lo = jnp.int32(off)
    else:
        p_lo = s_first - (w - 1)
    p_hi = jnp.int32(T - 1 + off) if w is None else jnp.minimum(s_last + (w - 1), T - 1 + off)
    t_lo = jnp.maximum(p_lo - off, 0)
    t_hi = jnp.maximum(p_hi - off + 1, t_lo)  # exclusive
    lo = _fdiv(t_lo, bq)
    hi = jnp.maximum(_cdiv(t_hi, bq), lo)
    if st.segments:
        return lo, hi, hi, hi
    full_lo, full_hi = lo, hi
    if st.causal:  # every query of the block at or after the last key
        full_lo = jnp.maximum(full_lo, _cdiv(jnp.maximum(s_last - off, 0), bq))
    elif w is not None:
        full_lo = jnp.maximum(full_lo, _cdiv(jnp.maximum(s_last - (w - 1) - off, 0), bq))
    if w is not None:  # every query of the block within the window of the first key
        full_hi = jnp.minimum(full_hi, _fdiv(jnp.maximum(s_first + w - off, 0), bq))
    full_lo = _clip(full_lo, lo, hi)
    full_hi = _clip(full_hi, full_lo, hi)
    return lo, full_lo, full_hi, hi


def _mask(st: _Static, p_Q1, s_1K, qseg_Q, kseg_K, *, check_keys: bool):
    """Boolean [bq, bk] mask (None: everything allowed) for query positions p and keys s."""
    conds = []
    if st.causal:
        conds.append(s_1K <= p_Q1)
    if st.window is not None:
        d = p_Q1 - s_1K
        conds.append(d < st.window)
        if not st.causal:
            conds.append(d > -st.window)
    if check_keys:
        conds.append(s_1K < st.S)
    if st.segments:
        conds.append(qseg_Q[:, None] == kseg_K[None, :])
    if not conds:
        return None
    mask = conds[0]
    for c in conds[1:]:
        mask = mask & c
    return mask


def _three_loops(ranges, body, carry):
    """Runs body(j, carry, masked) over [lo, full_lo) masked, [full_lo, full_hi) unmasked,
    [full_hi, hi) masked."""
    lo, full_lo, full_hi, hi = ranges
    carry = lax.fori_loop(lo, full_lo, functools.partial(body, masked=True), carry)
    carry = lax.fori_loop(full_lo, full_hi, functools.partial(body, masked=False), carry)
    return lax.fori_loop(full_hi, hi, functools.partial(body, masked=True), carry)


# ----------------------------------------------------------------------------- pointwise math


_LOG_SOFTPLUS_CUT = -20.0  # below: log(softplus(x)) = x to float32 precision


def _log_softplus(x, with_grad: bool = False):
    """log(softplus(x)) (= x below the cut, where softplus(x) = e^x may underflow) and, with
    ``with_grad``, its derivative sigmoid(x) / softplus(x) (= 1 below the cut)."""
    e = jnp.exp(-jnp.abs(x))
    sp = jnp.maximum(x, 0.0) + jnp.log1p(e)
    above = x > _LOG_SOFTPLUS_CUT
    lsp = jnp.where(above, jnp.log(sp), x)
    if not with_grad:
        return lsp
    sig = jnp.where(x >= 0, 1.0, e) / (1.0 + e)
    return lsp, jnp.where(above, sig / sp, 1.0)


def _dot(a, b):
    """a [m, k] @ b [k, n] with float32 accumulation."""
    return lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def _dot_t(a, b):
    """a [m, k] @ b[n, k]^T."""
    return lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)


def _t_dot(a, b):
    """a[k, m]^T @ b [k, n]."""
    return lax.dot_general(a, b, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)


# ----------------------------------------------------------------------------- forward kernel


def _fwd_kernel(*refs, st: _Static):
    it = iter(refs)
    q_ref, k_ref, v_ref = next(it), next(it), next(it)
    r_ref = next(it) if st.kind == "softplus" else None
    qseg_ref, kseg_ref = (next(it), next(it)) if st.segments else (None, None)
    o_ref, lse_ref = next(it), next(it)
    bq, bk = st.bq, st.bk

    i = pl.program_id(0)
    q_start = i * bq
    q = q_ref[...]
    r_Q = r_ref[...] if r_ref is not None else jnp.full((bq,), st.scale, jnp.float32)
    q = (q.astype(jnp.float32) * r_Q[:, None]).astype(q.dtype)
    qseg = qseg_ref[...] if st.segments else None
    p_Q1 = q_start + st.q_offset + lax.broadcasted_iota(jnp.int32, (bq, 1), 0)
    p_first = q_start + st.q_offset
    p_last = jnp.minimum(q_start + bq, st.T) - 1 + st.q_offset
    ranges = _key_block_ranges(st, p_first, p_last, bk, pad_is_masked=True)

    def body(j, carry, masked):
        k_start = j * bk
        k = k_ref[pl.ds(k_start, bk), :]
        v = v_ref[pl.ds(k_start, bk), :]
        s = _dot_t(q, k)  # [bq, bk]
        if st.kind == "softplus":
            s = st.power * _log_softplus(s)
        mask = None
        if masked:
            s_1K = k_start + lax.broadcasted_iota(jnp.int32, (1, bk), 1)
            kseg = kseg_ref[pl.ds(k_start, bk)] if st.segments else None
            mask = _mask(st, p_Q1, s_1K, qseg, kseg, check_keys=True)
        m, l, acc = carry
        if mask is not None:
            s = jnp.where(mask, s, _NEG)
        m_new = jnp.maximum(m, jnp.max(s, axis=1))
        alpha = jnp.exp(m - m_new)
        p = jnp.exp(s - m_new[:, None])
        if mask is not None:
            p = jnp.where(mask, p, 0.0)
        l = l * alpha + jnp.sum(p, axis=1)
        acc = acc * alpha[:, None] + _dot(p.astype(v.dtype), v)
        return m_new, l, acc

    init = (jnp.full((bq,), _NEG, jnp.float32), jnp.zeros((bq,), jnp.float32),
            jnp.zeros((bq, q.shape[-1]), jnp.float32))
    m, l, acc = _three_loops(ranges, body, init)
    nonempty = l > 0.0
    inv_l = jnp.where(nonempty, 1.0 / jnp.where(nonempty, l, 1.0), 0.0)
    o_ref[...] = (acc * inv_l[:, None]).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(nonempty, m + jnp.log(jnp.where(nonempty, l, 1.0)), 0.0)


# ----------------------------------------------------------------------------- backward kernels


def _weights_and_coef(st: _Static, x, lse_Q, mask):
    """(p, c): the weights p_ts and the ds coefficient c_ts (module docstring) of the scaled
    scores x."""
    if st.kind == "softmax":
        p = jnp.exp(x - lse_Q[:, None])
        if mask is not None:
            p = jnp.where(mask, p, 0.0)
        return p, p
    lsp, dlsp = _log_softplus(x, with_grad=True)
    p = jnp.exp(st.power * lsp - lse_Q[:, None])
    if mask is not None:
        p = jnp.where(mask, p, 0.0)
    return p, p * (st.power * dlsp)


def _dkv_kernel(*refs, st: _Static):
    it = iter(refs)
    q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref = (next(it) for _ in range(6))
    r_ref = next(it) if st.kind == "softplus" else None
    qseg_ref, kseg_ref = (next(it), next(it)) if st.segments else (None, None)
    dk_ref, dv_ref = next(it), next(it)
    bq, bk = st.bq_bwd, st.bk_bwd

    j = pl.program_id(0)
    k_start = j * bk
    k = k_ref[...]
    v = v_ref[...]
    kseg = kseg_ref[...] if st.segments else None
    s_1K = k_start + lax.broadcasted_iota(jnp.int32, (1, bk), 1)
    ranges = _query_block_ranges(st, k_start, jnp.minimum(k_start + bk, st.S) - 1, bq)

    def per_head(g, carry):
        def body(i, carry, masked):
            dk, dv = carry
            q_start = i * bq
            q = q_ref[pl.ds(q_start, bq), g, :]
            do = do_ref[pl.ds(q_start, bq), g, :]
            lse = lse_ref[g, pl.ds(q_start, bq)]
            delta = delta_ref[g, pl.ds(q_start, bq)]
            if r_ref is not None:
                r_Q = r_ref[pl.ds(q_start, bq)]
            else:
                r_Q = jnp.full((bq,), st.scale, jnp.float32)
            q = (q.astype(jnp.float32) * r_Q[:, None]).astype(q.dtype)
            s = _dot_t(q, k)
            mask = None
            if masked:
                p_Q1 = q_start + st.q_offset + lax.broadcasted_iota(jnp.int32, (bq, 1), 0)
                qseg = qseg_ref[pl.ds(q_start, bq)] if st.segments else None
                mask = _mask(st, p_Q1, s_1K, qseg, kseg, check_keys=False)
            a, c = _weights_and_coef(st, s, lse, mask)
            dv = dv + _t_dot(a.astype(do.dtype), do)
            dp = _dot_t(do, v)
            ds = c * (dp - delta[:, None])
            dk = dk + _t_dot(ds.astype(q.dtype), q)
            return dk, dv

        return _three_loops(ranges, body, carry)

    zeros = jnp.zeros((bk, k.shape[-1]), jnp.float32)
    dk, dv = lax.fori_loop(0, st.G, per_head, (zeros, zeros))
    dk_ref[...] = dk.astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _dq_kernel(*refs, st: _Static):
    it = iter(refs)
    q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref = (next(it) for _ in range(6))
    r_ref = next(it) if st.kind == "softplus" else None
    qseg_ref, kseg_ref = (next(it), next(it)) if st.segments else (None, None)
    dq_ref = next(it)
    bq, bk = st.bq_bwd, st.bk_bwd

    i = pl.program_id(0)
    q_start = i * bq
    r_Q = r_ref[...] if r_ref is not None else jnp.full((bq,), st.scale, jnp.float32)
    q = q_ref[...]
    q = (q.astype(jnp.float32) * r_Q[:, None]).astype(q.dtype)
    do = do_ref[...]
    lse = lse_ref[...]
    delta = delta_ref[...]
    qseg = qseg_ref[...] if st.segments else None
    p_Q1 = q_start + st.q_offset + lax.broadcasted_iota(jnp.int32, (bq, 1), 0)
    p_first = q_start + st.q_offset
    p_last = jnp.minimum(q_start + bq, st.T) - 1 + st.q_offset
    ranges = _key_block_ranges(st, p_first, p_last, bk, pad_is_masked=False)

    def body(j, dq, masked):
        k_start = j * bk
        k = k_ref[pl.ds(k_start, bk), :]
        v = v_ref[pl.ds(k_start, bk), :]
        s = _dot_t(q, k)
        mask = None
        if masked:
            s_1K = k_start + lax.broadcasted_iota(jnp.int32, (1, bk), 1)
            kseg = kseg_ref[pl.ds(k_start, bk)] if st.segments else None
            mask = _mask(st, p_Q1, s_1K, qseg, kseg, check_keys=False)
        _, c = _weights_and_coef(st, s, lse, mask)
        ds = c * (_dot_t(do, v) - delta[:, None])
        return dq + _dot(ds.astype(k.dtype), k)

    dq = _three_loops(ranges, body, jnp.zeros((bq, q.shape[-1]), jnp.float32))
    dq_ref[...] = (dq * r_Q[:, None]).astype(dq_ref.dtype)


# ----------------------------------------------------------------------------- pallas_calls


def _fwd_call(st: _Static, q, k, v, r, qseg, kseg):
    B, Tp, H, Dp = q.shape
    Sp, K = k.shape[1], k.shape[2]
    G = st.G
    in_specs = [
        pl.BlockSpec((None, st.bq, None, Dp), lambda i, b, h: (b, i, h, 0)),
        pl.BlockSpec((None, Sp, None, Dp), lambda i, b, h: (b, 0, h // G, 0)),
        pl.BlockSpec((None, Sp, None, Dp), lambda i, b, h: (b, 0, h // G, 0)),
    ]
    args = [q, k, v]
    if st.kind == "softplus":
        in_specs.append(pl.BlockSpec((None, st.bq), lambda i, b, h: (b, i)))
        args.append(r)
    if st.segments:
        in_specs += [pl.BlockSpec((None, st.bq), lambda i, b, h: (b, i)),
                     pl.BlockSpec((None, Sp), lambda i, b, h: (b, 0))]
        args += [qseg, kseg]
    out_shape = [jax.ShapeDtypeStruct(q.shape, q.dtype),
                 jax.ShapeDtypeStruct((B, H, Tp), jnp.float32)]
    out_specs = [pl.BlockSpec((None, st.bq, None, Dp), lambda i, b, h: (b, i, h, 0)),
                 pl.BlockSpec((None, None, st.bq), lambda i, b, h: (b, h, i))]
    return pl.pallas_call(
        functools.partial(_fwd_kernel, st=st), out_shape=out_shape, grid=(Tp // st.bq, B, H),
        in_specs=in_specs, out_specs=out_specs, interpret=st.interpret,
        compiler_params=_pallas.compiler_params(st.num_warps, st.num_stages),
        name=f"flash_{st.kind}_fwd")(*args)


def _bwd_call(st: _Static, q, k, v, r, qseg, kseg, o, lse, do):
    B, Tp, H, Dp = q.shape
    Sp, K = k.shape[1], k.shape[2]
    G = st.G
    delta = jnp.einsum("bthd,bthd->bht", do.astype(jnp.float32), o.astype(jnp.float32))
    extra_args = ([r] if st.kind == "softplus" else []) + ([qseg, kseg] if st.segments else [])
    params = _pallas.compiler_params(st.num_warps_bwd, st.num_stages)

    # dk, dv: one program per (key block, batch, kv head), looping over the group's heads.
    q_g = q.reshape(B, Tp, K, G, Dp)
    do_g = do.reshape(B, Tp, K, G, Dp)
    lse_g = lse.reshape(B, K, G, Tp)
    delta_g = delta.reshape(B, K, G, Tp)
    kv_specs = [
        pl.BlockSpec((None, Tp, None, G, Dp), lambda j, b, kh: (b, 0, kh, 0, 0)),
        pl.BlockSpec((None, st.bk_bwd, None, Dp), lambda j, b, kh: (b, j, kh, 0)),
        pl.BlockSpec((None, st.bk_bwd, None, Dp), lambda j, b, kh: (b, j, kh, 0)),
        pl.BlockSpec((None, Tp, None, G, Dp), lambda j, b, kh: (b, 0, kh, 0, 0)),
        pl.BlockSpec((None, None, G, Tp), lambda j, b, kh: (b, kh, 0, 0)),
        pl.BlockSpec((None, None, G, Tp), lambda j, b, kh: (b, kh, 0, 0)),
    ]
    if st.kind == "softplus":
        kv_specs.append(pl.BlockSpec((None, Tp), lambda j, b, kh: (b, 0)))
    if st.segments:
        kv_specs += [pl.BlockSpec((None, Tp), lambda j, b, kh: (b, 0)),
                     pl.BlockSpec((None, st.bk_bwd), lambda j, b, kh: (b, j))]
    dk, dv = pl.pallas_call(
        functools.partial(_dkv_kernel, st=st),
        out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
        grid=(Sp // st.bk_bwd, B, K), in_specs=kv_specs,
        out_specs=[pl.BlockSpec((None, st.bk_bwd, None, Dp), lambda j, b, kh: (b, j, kh, 0))] * 2,
        interpret=st.interpret, compiler_params=params, name=f"flash_{st.kind}_bwd_dkv",
    )(q_g, k, v, do_g, lse_g, delta_g, *extra_args)

    # dq: one program per (query block, batch, head).
    q_specs = [
        pl.BlockSpec((None, st.bq_bwd, None, Dp), lambda i, b, h: (b, i, h, 0)),
        pl.BlockSpec((None, Sp, None, Dp), lambda i, b, h: (b, 0, h // G, 0)),
        pl.BlockSpec((None, Sp, None, Dp), lambda i, b, h: (b, 0, h // G, 0)),
        pl.BlockSpec((None, st.bq_bwd, None, Dp), lambda i, b, h: (b, i, h, 0)),
        pl.BlockSpec((None, None, st.bq_bwd), lambda i, b, h: (b, h, i)),
        pl.BlockSpec((None, None, st.bq_bwd), lambda i, b, h: (b, h, i)),
    ]
    if st.kind == "softplus":
        q_specs.append(pl.BlockSpec((None, st.bq_bwd), lambda i, b, h: (b, i)))
    if st.segments:
        q_specs += [pl.BlockSpec((None, st.bq_bwd), lambda i, b, h: (b, i)),
                    pl.BlockSpec((None, Sp), lambda i, b, h: (b, 0))]
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, st=st), out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        grid=(Tp // st.bq_bwd, B, H), in_specs=q_specs,
        out_specs=pl.BlockSpec((None, st.bq_bwd, None, Dp), lambda i, b, h: (b, i, h, 0)),
        interpret=st.interpret, compiler_params=params, name=f"flash_{st.kind}_bwd_dq",
    )(q, k, v, do, lse, delta, *extra_args)
    return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(st: _Static, q, k, v, r, qseg, kseg):
    return _fwd_call(st, q, k, v, r, qseg, kseg)[0]


def _flash_fwd(st, q, k, v, r, qseg, kseg):
    o, lse = _fwd_call(st, q, k, v, r, qseg, kseg)
    return o, (q, k, v, r, qseg, kseg, o, lse)


def _flash_bwd(st, residuals, do):
    q, k, v, r, qseg, kseg, o, lse = residuals
    dq, dk, dv = _bwd_call(st, q, k, v, r, qseg, kseg, o, lse, do)
    return dq, dk, dv, None, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


# ----------------------------------------------------------------------------- entry point


def _pad_axis(x, axis: int, size: int, value=0):
    if x.shape[axis] == size:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, widths, constant_values=value)


def unsupported_reason(q_BTHD, k_BSKD, v_BSKD, *, q_offset) -> str | None:
    """Why the kernel cannot run this call, or None when it can."""
    if not isinstance(q_offset, int):
        return "q_offset must be a static int for the Pallas kernel (a traced offset is not)"
    if q_offset < 0:
        return f"q_offset must be >= 0, got {q_offset}"
    dtypes = {q_BTHD.dtype, k_BSKD.dtype, v_BSKD.dtype}
    if len(dtypes) != 1:
        return f"q, k and v must share one dtype, got {sorted(str(d) for d in dtypes)}"
    if q_BTHD.dtype not in (jnp.float32, jnp.bfloat16, jnp.float16):
        return f"dtype {q_BTHD.dtype} is not supported (float32, bfloat16, float16 are)"
    if q_BTHD.shape[-1] > 256:
        return f"head dim {q_BTHD.shape[-1]} > 256 is not supported"
    return _pallas.platform_reason()


def flash_attention(q_BTHD: jax.Array, k_BSKD: jax.Array, v_BSKD: jax.Array, *, causal: bool,
                    window: int | None = None, q_segment_ids_BT: jax.Array | None = None,
                    kv_segment_ids_BS: jax.Array | None = None, q_offset: int = 0,
                    scale: float, kind: str = "softmax", power: float = 1.0,
                    block_sizes: BlockSizes | None = None,
                    interpret: bool | None = None) -> jax.Array:
    """Attention of q [B, T, H, Dh] over k, v [B, S, K, Dh] with the Pallas kernels (see the
    module docstring); differentiable in q, k and v.

    ``kind="softplus"`` computes ``reference.softplus_attention_reference`` (``power`` is its
    re-weighting exponent); ``interpret=None`` interprets on CPU.
    """
    reason = unsupported_reason(q_BTHD, k_BSKD, v_BSKD, q_offset=q_offset)
    if reason is not None:
        raise _pallas.UnsupportedError(f"flash_attention: {reason}")
    if kind not in KINDS:
        raise ValueError(f"unknown attention kind {kind!r}; expected one of {KINDS}")
    if kind == "softplus" and power < 1.0:
        raise ValueError(f"softplus re-weighting power must be >= 1, got {power}")
    B, T, H, Dh = q_BTHD.shape
    S, K = k_BSKD.shape[1], k_BSKD.shape[2]
    interpret = _pallas.resolve_interpret(interpret)
    Dp = max(16, _pallas.next_power_of_2(Dh))
    bs = block_sizes or default_block_sizes(Dp, jnp.dtype(q_BTHD.dtype).itemsize, interpret)
    # Blocks no larger than the (power-of-two rounded) lengths; Triton needs >= 16 for dots.
    t_cap = max(16, _pallas.next_power_of_2(T))
    s_cap = max(16, _pallas.next_power_of_2(S))
    bq, bq_bwd = min(bs.block_q, t_cap), min(bs.block_q_bwd, t_cap)
    bk, bk_bwd = min(bs.block_k, s_cap), min(bs.block_k_bwd, s_cap)
    Tp = _pallas.round_up(T, max(bq, bq_bwd))
    Sp = _pallas.round_up(S, max(bk, bk_bwd))
    segments = q_segment_ids_BT is not None
    st = _Static(kind=kind, causal=causal, window=window, q_offset=q_offset, T=T, S=S, G=H // K,
                 scale=float(scale), power=float(power), segments=segments, bq=bq, bk=bk,
                 bq_bwd=bq_bwd, bk_bwd=bk_bwd, num_warps=bs.num_warps,
                 num_warps_bwd=bs.num_warps_bwd, num_stages=bs.num_stages, interpret=interpret)

    q = _pad_axis(_pad_axis(q_BTHD, 3, Dp), 1, Tp)
    k = _pad_axis(_pad_axis(k_BSKD, 3, Dp), 1, Sp)
    v = _pad_axis(_pad_axis(v_BSKD, 3, Dp), 1, Sp)
    r = qseg = kseg = None
    if segments:
        qseg = _pad_axis(jnp.broadcast_to(q_segment_ids_BT, (B, T)).astype(jnp.int32), 1, Tp, -1)
        kseg = _pad_axis(jnp.broadcast_to(kv_segment_ids_BS, (B, S)).astype(jnp.int32), 1, Sp, -2)
    if kind == "softplus":
        n_BT = visible_key_count(T, S, causal=causal, window=window, q_segment_ids_BT=q_segment_ids_BT,
                                 kv_segment_ids_BS=kv_segment_ids_BS, q_offset=q_offset)
        r = _pad_axis(jnp.broadcast_to(softplus_row_scale(n_BT, scale), (B, T)), 1, Tp)
    out = _flash(st, q, k, v, r, qseg, kseg)
    return out[:, :T, :, :Dh]
