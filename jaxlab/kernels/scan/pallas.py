"""Linear-recurrence scans as Pallas kernels (forward, and backward for training).

Diagonal scan, h_t = a_t h_{t-1} + b_t over [B, T, D] (``reference.linear_scan_sequential``).
The grid is (batch, channel block, time chunk); each program walks its chunk step by step,
reading a_t and b_t once and keeping the float32 state on chip. With one chunk that is a
single pass (read a, b; write h). With C chunks (more programs, for GPUs with few batch rows
or channels) it takes two passes and a tiny combine:

    1. per chunk, from h = 0: its end state e_c and the product P_c of its a_t
    2. carries: h_in[0] = h0,  h_in[c+1] = P_c h_in[c] + e_c      (a scan over C, in XLA)
    3. per chunk, from h_in[c]: every h_t

The backward pass is the same recurrence run backwards in time, g_t = dh_t + a_{t+1} g_{t+1}
(carried as c = a_t g_t), giving db_t = g_t, da_t = g_t h_{t-1} (h_{-1} = h0) and
dh0 = a_0 g_0; the chunked form splits it as the forward pass does.

Mamba-1 selective scan (``reference.selective_scan_reference``). The grid is (batch, channel
block); a program keeps the [block_d, N] state on chip for its whole sequence and writes only
y [B, T, D]: the [B, T, D, N] states never reach memory. It saves the state at the start of
every chunk of ``chunk`` steps, and the backward pass walks the chunks in reverse,
recomputing the chunk's states from the saved one (unrolled, on chip) and then running the
adjoint recurrence dh_{t-1} = exp(delta_t A) dh_t (+ C_{t-1} dy_{t-1}):

    dx_t     = delta_t sum_n dh_t B_t + D dy_t
    ddelta_t = sum_n dh_t (A exp(delta_t A) h_{t-1} + x_t B_t)
    dB_t     = sum_d dh_t delta_t x_t,      dC_t = sum_d h_t dy_t
    dA       = sum_t dh_t delta_t exp(delta_t A) h_{t-1},      dD = sum_t dy_t x_t

(dB, dC are summed over channel blocks, dA, dD over the batch, in XLA.)
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from jaxlab.kernels import _pallas
from jaxlab.kernels.scan.reference import linear_scan_associative

F32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class ScanBlocks:
    """Tile settings: ``block_d`` channels per program (a power of two), ``chunk`` time steps
    per program (None: chosen from the shape), Triton warps and pipeline stages."""

    block_d: int = 256
    chunk: int | None = None
    num_warps: int = 2
    num_stages: int = 4

    def __post_init__(self):
        if self.block_d < 1 or self.block_d & (self.block_d - 1):
            raise ValueError(f"ScanBlocks.block_d must be a power of two, got {self.block_d}")
        if self.chunk is not None and self.chunk < 1:
            raise ValueError(f"ScanBlocks.chunk must be >= 1, got {self.chunk}")


def default_scan_blocks(interpret: bool) -> ScanBlocks:
    return ScanBlocks(block_d=128) if interpret else ScanBlocks(block_d=256, num_warps=2)


def default_selective_blocks(interpret: bool) -> ScanBlocks:
    return ScanBlocks(block_d=16, chunk=4) if interpret else ScanBlocks(block_d=32, chunk=16,
                                                                        num_warps=4, num_stages=2)


def _chunk_len(T: int, programs: int, chunk: int | None, interpret: bool) -> int:
    """Steps per chunk: as asked, else one chunk when the (batch x channel-block) programs
    already fill a GPU, else enough chunks for about 2048 programs (at least 64 steps each)."""
    if chunk is not None:
        return min(chunk, T)
    if interpret or programs >= 1024:
        return T
    n_chunks = -(-2048 // programs)
    return min(T, max(64, _pallas.round_up(-(-T // n_chunks), 16)))


@dataclasses.dataclass(frozen=True)
class _ScanStatic:
    chunk: int
    n_chunks: int
    block_d: int
    num_warps: int
    num_stages: int
    interpret: bool
    a_dtype: str = "float32"  # linear scan: dtypes of a and b (of the gradients da, db)
    b_dtype: str = "float32"


def _pad(x, axis: int, size: int):
    if x.shape[axis] == size:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, widths)


# ----------------------------------------------------------------------------- diagonal scan


def _lscan_kernel(*refs, st: _ScanStatic, mode: str):
    """One program: chunk ``pl.program_id(2)`` of channel block ``pl.program_id(1)``.

    modes: "summary" / "final" run forwards (h = a h + b); "rsummary" / "rfinal" run
    backwards (g = b + c, c = a g, with b = dh). Summaries write the end state and the product
    of the a's; "final" writes h; "rfinal" writes db = g, da = g h_{t-1} and the carry out.
    """
    L = st.chunk
    reverse = mode.startswith("r")
    if mode in ("summary", "rsummary"):
        a_ref, b_ref, end_ref, prod_ref = refs
        carry_ref = None
    elif mode == "final":
        a_ref, b_ref, carry_ref, h_ref = refs
    else:
        a_ref, b_ref, carry_ref, hfull_ref, h0_ref, db_ref, da_ref, cout_ref = refs

    c_id = pl.program_id(2)
    shape = (st.block_d,)
    state0 = jnp.zeros(shape, F32) if carry_ref is None else carry_ref[...].astype(F32)
    if mode == "rfinal":
        h0 = h0_ref[...].astype(F32)

    def step(i, carry):
        state, prod = carry
        t = L - 1 - i if reverse else i
        a = a_ref[t, :].astype(F32)
        b = b_ref[t, :].astype(F32)
        if not reverse:
            state = a * state + b
            if mode == "final":
                h_ref[t, :] = state.astype(h_ref.dtype)
        else:
            g = b + state
            if mode == "rfinal":
                t_glob = c_id * L + t
                h_prev = hfull_ref[jnp.maximum(t_glob - 1, 0), :].astype(F32)
                h_prev = jnp.where(t_glob == 0, h0, h_prev)
                db_ref[t, :] = g.astype(db_ref.dtype)
                da_ref[t, :] = (g * h_prev).astype(da_ref.dtype)
            state = a * g
        if mode in ("summary", "rsummary"):
            prod = prod * a
        return state, prod

    state, prod = lax.fori_loop(0, L, step, (state0, jnp.ones(shape, F32)))
    if mode in ("summary", "rsummary"):
        end_ref[...] = state
        prod_ref[...] = prod
    elif mode == "rfinal":
        cout_ref[...] = state


def _lscan_call(st: _ScanStatic, mode: str, *args):
    a = args[0]
    B, Tp, Dp = a.shape
    L, bd, nC = st.chunk, st.block_d, st.n_chunks
    grid = (B, Dp // bd, nC)
    chunk_spec = pl.BlockSpec((None, L, bd), lambda b, d, c: (b, c, d))
    per_chunk_spec = pl.BlockSpec((None, None, bd), lambda b, d, c: (b, c, d))
    summary_shape = jax.ShapeDtypeStruct((B, nC, Dp), F32)
    if mode in ("summary", "rsummary"):
        in_specs = [chunk_spec, chunk_spec]
        out_shape = [summary_shape, summary_shape]
        out_specs = [per_chunk_spec, per_chunk_spec]
    elif mode == "final":
        in_specs = [chunk_spec, chunk_spec, per_chunk_spec]
        out_shape = jax.ShapeDtypeStruct((B, Tp, Dp), jnp.result_type(args[0], args[1]))
        out_specs = chunk_spec
    else:  # rfinal: a, dh, carry, h, h0 -> db, da, carry out
        in_specs = [chunk_spec, chunk_spec, per_chunk_spec,
                    pl.BlockSpec((None, Tp, bd), lambda b, d, c: (b, 0, d)),
                    pl.BlockSpec((None, bd), lambda b, d, c: (b, d))]
        out_shape = [jax.ShapeDtypeStruct((B, Tp, Dp), jnp.dtype(st.b_dtype)),
                     jax.ShapeDtypeStruct((B, Tp, Dp), jnp.dtype(st.a_dtype)), summary_shape]
        out_specs = [chunk_spec, chunk_spec, per_chunk_spec]
    return pl.pallas_call(
        functools.partial(_lscan_kernel, st=st, mode=mode), out_shape=out_shape, grid=grid,
        in_specs=in_specs, out_specs=out_specs, interpret=st.interpret,
        compiler_params=_pallas.compiler_params(st.num_warps, st.num_stages),
        name=f"linear_scan_{mode}")(*args)


def _forward_carries(end_BCD, prod_BCD, h0_BD):
    """h_in[0] = h0, h_in[c+1] = P_c h_in[c] + e_c."""
    h_in = linear_scan_associative(prod_BCD[:, :-1], end_BCD[:, :-1], h0_BD)
    return jnp.concatenate([h0_BD[:, None], h_in], axis=1)


def _backward_carries(start_BCD, prod_BCD):
    """c_in[C-1] = 0, c_in[c-1] = P_c c_in[c] + s_c (the carry entering chunk c from the right)."""
    rev = linear_scan_associative(prod_BCD[:, :0:-1], start_BCD[:, :0:-1])
    zeros = jnp.zeros_like(start_BCD[:, :1])
    return jnp.concatenate([zeros, rev], axis=1)[:, ::-1]


def _lscan_forward(st, a, b, h0):
    if st.n_chunks == 1:
        carries = h0[:, None]
    else:
        end, prod = _lscan_call(st, "summary", a, b)
        carries = _forward_carries(end, prod, h0)
    return _lscan_call(st, "final", a, b, carries)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lscan(st: _ScanStatic, a, b, h0):
    return _lscan_forward(st, a, b, h0)


def _lscan_fwd(st, a, b, h0):
    h = _lscan_forward(st, a, b, h0)
    return h, (a, h0, h)


def _lscan_bwd(st, residuals, dh):
    a, h0, h = residuals
    if st.n_chunks == 1:
        carries = jnp.zeros((a.shape[0], 1, a.shape[2]), F32)
    else:
        start, prod = _lscan_call(st, "rsummary", a, dh)
        carries = _backward_carries(start, prod)
    db, da, cout = _lscan_call(st, "rfinal", a, dh, carries, h, h0)
    return da, db, cout[:, 0].astype(h0.dtype)


_lscan.defvjp(_lscan_fwd, _lscan_bwd)


def scan_unsupported_reason(*arrays) -> str | None:
    for x in arrays:
        if x is not None and x.dtype not in (jnp.float32, jnp.bfloat16, jnp.float16):
            return f"dtype {x.dtype} is not supported (float32, bfloat16, float16 are)"
    return _pallas.platform_reason()


def linear_scan_pallas(a_BTD: jax.Array, b_BTD: jax.Array, h0_BD: jax.Array | None = None, *,
                       blocks: ScanBlocks | None = None,
                       interpret: bool | None = None) -> jax.Array:
    """h [B, T, D] of h_t = a_t h_{t-1} + b_t with the chunked kernel; differentiable in a, b
    and h0. ``interpret=None`` interprets on CPU."""
    reason = scan_unsupported_reason(a_BTD, b_BTD, h0_BD)
    if reason is not None:
        raise _pallas.UnsupportedError(f"linear_scan_pallas: {reason}")
    interpret = _pallas.resolve_interpret(interpret)
    blocks = blocks or default_scan_blocks(interpret)
    B, T, D = b_BTD.shape
    bd = min(blocks.block_d, _pallas.next_power_of_2(D))
    Dp = _pallas.round_up(D, bd)
    L = _chunk_len(T, B * (Dp // bd), blocks.chunk, interpret)
    Tp = _pallas.round_up(T, L)
    st = _ScanStatic(chunk=L, n_chunks=Tp // L, block_d=bd, num_warps=blocks.num_warps,
                     num_stages=blocks.num_stages, interpret=interpret,
                     a_dtype=jnp.dtype(a_BTD.dtype).name, b_dtype=jnp.dtype(b_BTD.dtype).name)
    a = _pad(_pad(a_BTD, 1, Tp), 2, Dp)
    b = _pad(_pad(b_BTD, 1, Tp), 2, Dp)
    h0 = jnp.zeros((B, Dp), F32) if h0_BD is None else _pad(h0_BD.astype(F32), 1, Dp)
    return _lscan(st, a, b, h0)[:, :T, :D]


# ----------------------------------------------------------------------------- selective scan


def _ss_fwd_kernel(x_ref, dt_ref, A_ref, B_ref, C_ref, D_ref, y_ref, hs_ref, *, st: _ScanStatic):
    L = st.chunk
    A = A_ref[...].astype(F32)
    Dk = D_ref[...].astype(F32)

    def chunk(c, h):
        hs_ref[c] = h

        def step(i, h):
            t = c * L + i
            x = x_ref[t, :].astype(F32)
            dt = dt_ref[t, :].astype(F32)
            b = B_ref[t, :].astype(F32)
            cc = C_ref[t, :].astype(F32)
            h = jnp.exp(dt[:, None] * A) * h + (dt * x)[:, None] * b[None, :]
            y_ref[t, :] = (jnp.sum(h * cc[None, :], axis=1) + Dk * x).astype(y_ref.dtype)
            return h

        return lax.fori_loop(0, L, step, h)

    lax.fori_loop(0, st.n_chunks, chunk, jnp.zeros(A.shape, F32))


def _ss_bwd_kernel(x_ref, dt_ref, A_ref, B_ref, C_ref, D_ref, hs_ref, dy_ref,
                   dx_ref, ddt_ref, dA_ref, dB_ref, dC_ref, dD_ref, *, st: _ScanStatic):
    L = st.chunk
    A = A_ref[...].astype(F32)
    Dk = D_ref[...].astype(F32)

    def chunk(ci, carry):
        dh, dA_acc, dD_acc = carry
        c = st.n_chunks - 1 - ci
        h = hs_ref[c]
        states, inputs = [h], []
        for i in range(L):  # recompute the chunk's states (unrolled: they stay on chip)
            t = c * L + i
            x = x_ref[t, :].astype(F32)
            dt = dt_ref[t, :].astype(F32)
            b = B_ref[t, :].astype(F32)
            cc = C_ref[t, :].astype(F32)
            h = jnp.exp(dt[:, None] * A) * h + (dt * x)[:, None] * b[None, :]
            states.append(h)
            inputs.append((x, dt, b, cc))
        for i in reversed(range(L)):
            t = c * L + i
            x, dt, b, cc = inputs[i]
            dy = dy_ref[t, :].astype(F32)
            dC_ref[t, :] = jnp.sum(states[i + 1] * dy[:, None], axis=0)
            dh = dh + cc[None, :] * dy[:, None]
            decay = jnp.exp(dt[:, None] * A)
            dh_decay_hprev = dh * decay * states[i]
            ddt_ref[t, :] = jnp.sum(dh_decay_hprev * A + dh * x[:, None] * b[None, :],
                                    axis=1).astype(ddt_ref.dtype)
            dx_ref[t, :] = (dt * jnp.sum(dh * b[None, :], axis=1) + Dk * dy).astype(dx_ref.dtype)
            dB_ref[t, :] = jnp.sum(dh * (dt * x)[:, None], axis=0)
            dA_acc = dA_acc + dh_decay_hprev * dt[:, None]
            dD_acc = dD_acc + dy * x
            dh = dh * decay
        return dh, dA_acc, dD_acc

    zeros = jnp.zeros(A.shape, F32)
    _, dA_acc, dD_acc = lax.fori_loop(0, st.n_chunks, chunk,
                                      (zeros, zeros, jnp.zeros(Dk.shape, F32)))
    dA_ref[...] = dA_acc
    dD_ref[...] = dD_acc


def _ss_specs(st: _ScanStatic, Tp: int, Np: int):
    bd = st.block_d
    seq = pl.BlockSpec((None, Tp, bd), lambda b, d: (b, 0, d))
    bc = pl.BlockSpec((None, Tp, Np), lambda b, d: (b, 0, 0))
    return dict(
        seq=seq, bc=bc,
        A=pl.BlockSpec((bd, Np), lambda b, d: (d, 0)),
        D=pl.BlockSpec((bd,), lambda b, d: (d,)),
        hs=pl.BlockSpec((None, st.n_chunks, bd, Np), lambda b, d: (b, 0, d, 0)),
    )


def _ss_forward(st, x, dt, A, Bm, Cm, Dk):
    Bsz, Tp, Dp = x.shape
    Np = A.shape[1]
    sp = _ss_specs(st, Tp, Np)
    return pl.pallas_call(
        functools.partial(_ss_fwd_kernel, st=st),
        out_shape=[jax.ShapeDtypeStruct(x.shape, x.dtype),
                   jax.ShapeDtypeStruct((Bsz, st.n_chunks, Dp, Np), F32)],
        grid=(Bsz, Dp // st.block_d),
        in_specs=[sp["seq"], sp["seq"], sp["A"], sp["bc"], sp["bc"], sp["D"]],
        out_specs=[sp["seq"], sp["hs"]], interpret=st.interpret,
        compiler_params=_pallas.compiler_params(st.num_warps, st.num_stages),
        name="selective_scan_fwd")(x, dt, A, Bm, Cm, Dk)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _sscan(st: _ScanStatic, x, dt, A, Bm, Cm, Dk):
    return _ss_forward(st, x, dt, A, Bm, Cm, Dk)[0]


def _sscan_fwd(st, x, dt, A, Bm, Cm, Dk):
    y, hs = _ss_forward(st, x, dt, A, Bm, Cm, Dk)
    return y, (x, dt, A, Bm, Cm, Dk, hs)


def _sscan_bwd(st, residuals, dy):
    x, dt, A, Bm, Cm, Dk, hs = residuals
    Bsz, Tp, Dp = x.shape
    Np = A.shape[1]
    nD = Dp // st.block_d
    sp = _ss_specs(st, Tp, Np)
    part_bc = pl.BlockSpec((None, None, Tp, Np), lambda b, d: (b, d, 0, 0))
    dx, ddt, dA_B, dB_p, dC_p, dD_B = pl.pallas_call(
        functools.partial(_ss_bwd_kernel, st=st),
        out_shape=[jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(dt.shape, dt.dtype),
                   jax.ShapeDtypeStruct((Bsz, Dp, Np), F32),
                   jax.ShapeDtypeStruct((Bsz, nD, Tp, Np), F32),
                   jax.ShapeDtypeStruct((Bsz, nD, Tp, Np), F32),
                   jax.ShapeDtypeStruct((Bsz, Dp), F32)],
        grid=(Bsz, nD),
        in_specs=[sp["seq"], sp["seq"], sp["A"], sp["bc"], sp["bc"], sp["D"], sp["hs"], sp["seq"]],
        out_specs=[sp["seq"], sp["seq"], pl.BlockSpec((None, st.block_d, Np), lambda b, d: (b, d, 0)),
                   part_bc, part_bc, pl.BlockSpec((None, st.block_d), lambda b, d: (b, d))],
        interpret=st.interpret,
        compiler_params=_pallas.compiler_params(st.num_warps, st.num_stages),
        name="selective_scan_bwd")(x, dt, A, Bm, Cm, Dk, hs, dy)
    return (dx, ddt, jnp.sum(dA_B, 0).astype(A.dtype), jnp.sum(dB_p, 1).astype(Bm.dtype),
            jnp.sum(dC_p, 1).astype(Cm.dtype), jnp.sum(dD_B, 0).astype(Dk.dtype))


_sscan.defvjp(_sscan_fwd, _sscan_bwd)


def selective_scan_pallas(x_BTD: jax.Array, delta_BTD: jax.Array, A_DN: jax.Array,
                          B_BTN: jax.Array, C_BTN: jax.Array, D_D: jax.Array | None = None, *,
                          blocks: ScanBlocks | None = None,
                          interpret: bool | None = None) -> jax.Array:
    """y [B, T, D] of the Mamba-1 selective scan with the state kept on chip; differentiable
    in every input. ``blocks.chunk`` is the checkpoint interval of the saved states."""
    reason = scan_unsupported_reason(x_BTD, delta_BTD, A_DN, B_BTN, C_BTN, D_D)
    if reason is not None:
        raise _pallas.UnsupportedError(f"selective_scan_pallas: {reason}")
    interpret = _pallas.resolve_interpret(interpret)
    blocks = blocks or default_selective_blocks(interpret)
    Bsz, T, D = x_BTD.shape
    N = A_DN.shape[1]
    bd = min(blocks.block_d, _pallas.next_power_of_2(D))
    Dp = _pallas.round_up(D, bd)
    Np = _pallas.next_power_of_2(N)
    L = min(blocks.chunk or 16, T)
    Tp = _pallas.round_up(T, L)
    st = _ScanStatic(chunk=L, n_chunks=Tp // L, block_d=bd, num_warps=blocks.num_warps,
                     num_stages=blocks.num_stages, interpret=interpret)
    x = _pad(_pad(x_BTD, 1, Tp), 2, Dp)
    dt = _pad(_pad(delta_BTD, 1, Tp), 2, Dp)
    A = _pad(_pad(A_DN, 0, Dp), 1, Np)
    Bm = _pad(_pad(B_BTN, 1, Tp), 2, Np)
    Cm = _pad(_pad(C_BTN, 1, Tp), 2, Np)
    Dk = jnp.zeros((Dp,), x_BTD.dtype) if D_D is None else _pad(D_D, 0, Dp)
    return _sscan(st, x, dt, A, Bm, Cm, Dk)[:, :T, :D]
