#!/usr/bin/env python
"""Kernel benchmark on one GPU: the Pallas kernels against cuDNN, XLA and associative_scan,
measured in the same run, with the machine's measured ceilings.

    python scripts/bench_kernels.py                     # on a GPU: the default set
    python scripts/bench_kernels.py --sweep             # also try several tile settings
    python scripts/bench_kernels.py --only attention,window --iters 20 --out bench.json
    python scripts/bench_kernels.py --interpret         # CPU smoke run: tiny shapes, same table

Method
  * Ceilings first: copy bandwidth (x + 1 over a large bf16 array, read + write bytes) and the
    bf16 matmul rate (8192^3, random data). Every rate is also shown as a fraction of these.
  * Timing: compile, warm up, then the median of ``--iters`` timings; each timing runs the
    function back to back enough times to last about 5 ms and ends with
    ``jax.block_until_ready``, so dispatch and sync overheads are amortised.
  * Correctness before speed: every kernel's output is compared with a reference computed
    in the same run (cuDNN or XLA attention, ``associative_scan``); the relative error
    ||out - ref|| / ||ref|| is printed beside its time.
  * FLOPs count only the allowed (query, key) pairs: forward 4 * B * H * pairs * Dh, forward
    + backward 3.5x that. Scans count the minimum bytes (each input read once, each output
    written once). Columns: rate (TF/s or GB/s), ceil (that rate as a fraction of the
    measured matmul rate or copy bandwidth), ratio (the time of the implementation named in
    "vs" divided by this one's: above 1 is faster), rel err (against cuDNN, XLA or lax.scan).
  * ``--sweep`` times the kernels under several tile settings (``BlockSizes``,
    ``ScanBlocks``) so that the defaults in ``jaxlab/kernels`` can be tuned from one run.
  * Goals on an H100 (printed with the results): flash forward >= 0.5x cuDNN (stretch 0.8x),
    forward + backward >= 0.45x (stretch 0.7x), >= 4x XLA forward; sliding-window time
    proportional to the window, not the length; the diagonal scan >= 3x associative_scan
    and >= 50% of copy bandwidth.

Speed is never asserted; numbers from one machine compare only with numbers of the same run.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxlab.kernels.attention import attention_xla, flash_attention  # noqa: E402
from jaxlab.kernels.attention.pallas import BlockSizes  # noqa: E402
from jaxlab.kernels.scan import (ScanBlocks, linear_scan_associative,  # noqa: E402
                                 linear_scan_pallas, linear_scan_sequential,
                                 selective_scan_pallas, selective_scan_reference)

GROUPS = ("ceilings", "attention", "window", "softplus", "scan", "selective")


# ----------------------------------------------------------------------------- timing


def time_fn(fn, *args, iters: int, target_s: float = 5e-3) -> tuple[float, object]:
    """(median seconds per call, output) of ``jax.jit(fn)(*args)`` after compile and warm-up."""
    jitted = jax.jit(fn)
    out = jax.block_until_ready(jitted(*args))
    t0 = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    single = time.perf_counter() - t0
    reps = max(1, min(100, int(target_s / max(single, 1e-6))))
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        for _ in range(reps):
            res = jitted(*args)
        jax.block_until_ready(res)
        times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times), out


def rel_err(out, ref) -> float:
    out = np.asarray(jax.device_get(out), np.float64)
    ref = np.asarray(jax.device_get(ref), np.float64)
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


def tree_rel_err(out, ref) -> float:
    return max(rel_err(o, r) for o, r in zip(jax.tree.leaves(out), jax.tree.leaves(ref)))


class Table:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, **row):
        self.rows.append(row)
        print(self.format(row), flush=True)

    @staticmethod
    def format(r: dict) -> str:
        def f(key, spec, width):
            v = r.get(key)
            return (format(v, spec) if isinstance(v, (int, float)) else str(v or "")).rjust(width)
        return (f"{r['case']:<34} {r['impl']:<22} {f('ms', '.3f', 9)} {f('rate', '.1f', 9)} "
                f"{r.get('unit', ''):<5} {f('ceiling_frac', '.1%', 7)} {f('ratio', '.2f', 7)} "
                f"{r.get('ratio_vs', ''):<14} {f('err', '.1e', 8)}")

    @staticmethod
    def header() -> str:
        return (f"{'case':<34} {'impl':<22} {'ms':>9} {'rate':>9} {'unit':<5} {'ceil':>7} "
                f"{'ratio':>7} {'vs':<14} {'rel err':>8}")


# ----------------------------------------------------------------------------- environment


def environment() -> dict:
    import jax.extend  # noqa: F401
    dev = jax.devices()[0]
    try:
        from jaxlib import version as jaxlib_version
        jaxlib = jaxlib_version.__version__
    except ImportError:  # pragma: no cover
        jaxlib = None
    info = {"jax": jax.__version__, "jaxlib": jaxlib,
            "backend": jax.default_backend(), "device": getattr(dev, "device_kind", str(dev)),
            "device_count": jax.device_count(), "python": platform.python_version()}
    try:
        info["platform_version"] = jax.extend.backend.get_backend().platform_version
    except Exception as e:  # pragma: no cover - depends on the plugin
        info["platform_version"] = f"unknown ({type(e).__name__})"
    try:
        from jax._src.lib import cuda_versions
        if cuda_versions is not None:
            info["cuda_runtime"] = cuda_versions.cuda_runtime_get_version()
            info["cudnn"] = cuda_versions.cudnn_get_version()
    except Exception:
        pass
    return info


# ----------------------------------------------------------------------------- ceilings


def measure_ceilings(table: Table, small: bool, iters: int) -> dict:
    n = (1 << 22) if small else (1 << 29)  # bf16 elements: 8 MiB / 1 GiB
    x = jax.random.normal(jax.random.key(0), (n,), jnp.bfloat16)
    t, _ = time_fn(lambda x: x + 1, x, iters=iters)
    copy_bw = 2 * n * 2 / t
    table.add(case=f"copy {n * 2 / 2**20:.0f} MiB bf16", impl="xla", ms=t * 1e3, rate=copy_bw / 1e9,
              unit="GB/s")
    m = 512 if small else 8192
    a = jax.random.normal(jax.random.key(1), (m, m), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(2), (m, m), jnp.bfloat16)
    t, _ = time_fn(lambda a, b: a @ b, a, b, iters=iters)
    mm = 2 * m ** 3 / t
    table.add(case=f"matmul {m}^3 bf16", impl="xla", ms=t * 1e3, rate=mm / 1e12, unit="TF/s")
    return {"copy_bytes_per_s": copy_bw, "matmul_flops_per_s": mm}


# ----------------------------------------------------------------------------- attention


def allowed_pairs(T: int, S: int, causal: bool, window: int | None) -> int:
    t = np.arange(T)[:, None]
    total = 0
    for start in range(0, S, 4096):  # row blocks keep memory small
        s = np.arange(start, min(S, start + 4096))[None, :]
        ok = np.ones((T, s.shape[1]), bool)
        if causal:
            ok &= s <= t
        if window is not None:
            ok &= (t - s < window) if causal else (np.abs(t - s) < window)
        total += int(ok.sum())
    return total


def _qkv(B, T, S, H, K, Dh, dtype=jnp.bfloat16, seed=0):
    kq, kk, kv, kd = jax.random.split(jax.random.key(seed), 4)
    return (jax.random.normal(kq, (B, T, H, Dh), dtype), jax.random.normal(kk, (B, S, K, Dh), dtype),
            jax.random.normal(kv, (B, S, K, Dh), dtype), jax.random.normal(kd, (B, T, H, Dh), dtype))


def _fwd_bwd(fn):
    def run(q, k, v, do):
        out, vjp = jax.vjp(fn, q, k, v)
        return out, vjp(do)
    return run


def _cudnn(causal, window):
    local = None if window is None else (window - 1, 0)
    return lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal, local_window_size=local,
                                                        implementation="cudnn")


def _xla_dpa(causal):
    return lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation="xla")


def _try(fn, *args, iters):
    try:
        return time_fn(fn, *args, iters=iters)
    except Exception as e:  # an implementation that cannot run this call: reported, not fatal
        print(f"    ({type(e).__name__}: {str(e).splitlines()[0][:150]})", flush=True)
        return None, None


def bench_attention_case(table: Table, ceil: dict, name: str, B, T, S, H, K, Dh, *, causal: bool,
                         window: int | None, iters: int, interpret: bool,
                         blocks: BlockSizes | None = None, with_xla: bool = True,
                         kind: str = "softmax") -> dict:
    q, k, v, do = _qkv(B, T, S, H, K, Dh)
    flops_fwd = 4 * B * H * allowed_pairs(T, S, causal, window) * Dh
    mm = ceil["matmul_flops_per_s"]
    pallas = functools.partial(flash_attention, causal=causal, window=window, scale=Dh ** -0.5,
                               kind=kind, power=1.0, block_sizes=blocks, interpret=interpret)
    impls = {"pallas": pallas}
    if kind == "softmax":
        if jax.default_backend() == "gpu":
            impls["cudnn"] = _cudnn(causal, window)
        if with_xla:
            impls["xla (jax.nn)"] = _xla_dpa(causal) if window is None else None
            impls["xla (jaxlab)"] = functools.partial(attention_xla, causal=causal, window=window,
                                                      scale=Dh ** -0.5)
    else:
        impls["pallas softmax"] = functools.partial(flash_attention, causal=causal, window=window,
                                                    scale=Dh ** -0.5, block_sizes=blocks,
                                                    interpret=interpret)
        impls["xla (jaxlab)"] = functools.partial(attention_xla, causal=causal, window=window,
                                                  scale=Dh ** -0.5, kind="softplus")
    impls = {n: f for n, f in impls.items() if f is not None}
    baseline = "cudnn" if "cudnn" in impls else ("pallas softmax" if kind != "softmax" else "xla (jaxlab)")
    res = {"fwd": {}, "fwd+bwd": {}}
    outs = {"fwd": {}, "fwd+bwd": {}}
    for mode, flops in (("fwd", flops_fwd), ("fwd+bwd", 3.5 * flops_fwd)):
        for impl, fn in impls.items():
            run = fn if mode == "fwd" else _fwd_bwd(fn)
            args = (q, k, v) if mode == "fwd" else (q, k, v, do)
            t, out = _try(run, *args, iters=iters)
            res[mode][impl] = t
            outs[mode][impl] = out
        ref_impl = "cudnn" if "cudnn" in outs[mode] and outs[mode]["cudnn"] is not None else (
            "xla (jaxlab)" if outs[mode].get("xla (jaxlab)") is not None else None)
        for impl in impls:
            t = res[mode][impl]
            if t is None:
                continue
            base_t = res[mode].get(baseline)
            err = None
            if ref_impl and impl != ref_impl and outs[mode][ref_impl] is not None and kind == "softmax":
                err = tree_rel_err(outs[mode][impl], outs[mode][ref_impl])
            elif kind != "softmax" and impl == "pallas" and outs[mode].get("xla (jaxlab)") is not None:
                err = tree_rel_err(outs[mode][impl], outs[mode]["xla (jaxlab)"])
            table.add(case=f"{name} {mode}", impl=impl, ms=t * 1e3, rate=flops / t / 1e12, unit="TF/s",
                      ceiling_frac=flops / t / mm, ratio=(base_t / t) if base_t else None,
                      ratio_vs=f"x {baseline}" if base_t else "", err=err)
    return res


def goals_attention(res: dict) -> list[str]:
    lines = []
    fwd, fb = res["fwd"], res["fwd+bwd"]
    if fwd.get("cudnn") and fwd.get("pallas"):
        r = fwd["cudnn"] / fwd["pallas"]
        lines.append(f"flash fwd = {r:.2f}x cuDNN (goal >= 0.5, stretch 0.8): "
                     f"{'met' if r >= 0.5 else 'NOT met'}{', stretch met' if r >= 0.8 else ''}")
    if fb.get("cudnn") and fb.get("pallas"):
        r = fb["cudnn"] / fb["pallas"]
        lines.append(f"flash fwd+bwd = {r:.2f}x cuDNN (goal >= 0.45, stretch 0.7): "
                     f"{'met' if r >= 0.45 else 'NOT met'}{', stretch met' if r >= 0.7 else ''}")
    if fwd.get("xla (jax.nn)") and fwd.get("pallas"):
        r = fwd["xla (jax.nn)"] / fwd["pallas"]
        lines.append(f"flash fwd = {r:.2f}x XLA (jax.nn) (goal >= 4): {'met' if r >= 4 else 'NOT met'}")
    return lines


# ----------------------------------------------------------------------------- scans


def _add_scan_rows(table: Table, ceil: dict, case: str, times: dict, outs: dict, nbytes: int, *,
                   ref: str) -> None:
    """One table row per implementation that ran: GB/s, share of the copy bandwidth, speed-up
    over associative_scan, and relative error against the ``ref`` implementation's output."""
    base = times.get("associative_scan")
    for impl, t in times.items():
        if t is None:
            continue
        err = (tree_rel_err(outs[impl], outs[ref])
               if impl != ref and outs.get(ref) is not None else None)
        table.add(case=case, impl=impl, ms=t * 1e3, rate=nbytes / t / 1e9, unit="GB/s",
                  ceiling_frac=nbytes / t / ceil["copy_bytes_per_s"],
                  ratio=base / t if base else None, ratio_vs="x assoc_scan" if base else "", err=err)


def bench_linear_scan(table: Table, ceil: dict, name: str, B, T, D, dtype, *, iters: int,
                      interpret: bool, blocks: ScanBlocks | None = None,
                      with_sequential: bool = False) -> dict:
    ka, kb, kd = jax.random.split(jax.random.key(3), 3)
    a = jax.random.uniform(ka, (B, T, D), minval=0.5, maxval=1.0).astype(dtype)
    b = jax.random.normal(kb, (B, T, D)).astype(dtype)
    dh = jax.random.normal(kd, (B, T, D)).astype(dtype)
    item = jnp.dtype(dtype).itemsize
    impls = {"pallas": functools.partial(linear_scan_pallas, blocks=blocks, interpret=interpret),
             "associative_scan": linear_scan_associative}
    if with_sequential:
        impls["lax.scan"] = linear_scan_sequential
    res = {"fwd": {}, "fwd+bwd": {}}
    for mode, nbytes in (("fwd", 3 * B * T * D * item), ("fwd+bwd", 8 * B * T * D * item)):
        outs = {}
        for impl, fn in impls.items():
            if mode == "fwd":
                run, args = fn, (a, b)
            else:
                def run(a, b, dh, fn=fn):
                    h, vjp = jax.vjp(fn, a, b)
                    return h, vjp(dh)
                args = (a, b, dh)
            t, out = _try(run, *args, iters=iters)
            res[mode][impl], outs[impl] = t, out
        _add_scan_rows(table, ceil, f"{name} {mode}", res[mode], outs, nbytes, ref="associative_scan")
    return res


def _selective_associative(x, delta, A, Bm, Cm, D):
    """The selective scan through ``associative_scan`` over the [B, T, D, N] states (the
    memory-hungry parallel baseline)."""
    f32 = jnp.float32
    dA = jnp.exp(delta.astype(f32)[..., None] * A.astype(f32))
    dBx = (delta.astype(f32) * x.astype(f32))[..., None] * Bm.astype(f32)[:, :, None, :]

    def compose(first, second):
        return first[0] * second[0], second[0] * first[1] + second[1]

    _, h = jax.lax.associative_scan(compose, (dA, dBx), axis=1)
    y = jnp.einsum("btdn,btn->btd", h, Cm.astype(f32)) + D.astype(f32) * x.astype(f32)
    return y.astype(x.dtype)


def bench_selective(table: Table, ceil: dict, name: str, B, T, D, N, dtype, *, iters: int,
                    interpret: bool, blocks: ScanBlocks | None = None) -> dict:
    ks = jax.random.split(jax.random.key(4), 7)
    x = jax.random.normal(ks[0], (B, T, D)).astype(dtype)
    delta = jax.nn.softplus(jax.random.normal(ks[1], (B, T, D)) - 2).astype(dtype)
    A = -jnp.exp(jax.random.normal(ks[2], (D, N)) * 0.5)
    Bm = jax.random.normal(ks[3], (B, T, N)).astype(dtype)
    Cm = jax.random.normal(ks[4], (B, T, N)).astype(dtype)
    Dk = jax.random.normal(ks[5], (D,))
    dy = jax.random.normal(ks[6], (B, T, D)).astype(dtype)
    item = jnp.dtype(dtype).itemsize
    impls = {"pallas": functools.partial(selective_scan_pallas, blocks=blocks, interpret=interpret),
             "associative_scan": _selective_associative, "lax.scan": selective_scan_reference}
    args = (x, delta, A, Bm, Cm, Dk)
    res = {"fwd": {}, "fwd+bwd": {}}
    for mode, nbytes in (("fwd", (3 * B * T * D + 2 * B * T * N) * item),
                         ("fwd+bwd", (7 * B * T * D + 4 * B * T * N) * item)):
        outs = {}
        for impl, fn in impls.items():
            if mode == "fwd":
                t, out = _try(fn, *args, iters=iters)
            else:
                def run(dy, *args, fn=fn):
                    y, vjp = jax.vjp(fn, *args)
                    return y, vjp(dy)
                t, out = _try(run, dy, *args, iters=iters)
            res[mode][impl], outs[impl] = t, out
        _add_scan_rows(table, ceil, f"{name} {mode}", res[mode], outs, nbytes, ref="lax.scan")
    return res


# ----------------------------------------------------------------------------- main


ATTENTION_SWEEP = [
    BlockSizes(128, 64, 64, 64, num_warps=4, num_warps_bwd=4, num_stages=3),
    BlockSizes(128, 64, 64, 64, num_warps=8, num_warps_bwd=8, num_stages=2),
    BlockSizes(128, 128, 64, 128, num_warps=8, num_warps_bwd=8, num_stages=2),
    BlockSizes(64, 64, 32, 64, num_warps=4, num_warps_bwd=4, num_stages=3),
    BlockSizes(128, 32, 128, 32, num_warps=4, num_warps_bwd=8, num_stages=3),
    BlockSizes(64, 128, 128, 64, num_warps=4, num_warps_bwd=8, num_stages=2),
]
SCAN_SWEEP = [ScanBlocks(block_d=bd, chunk=c, num_warps=w, num_stages=s)
              for bd, w in ((128, 1), (256, 2), (512, 4), (1024, 4))
              for c in (None, 512, 4096) for s in (3,)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interpret", action="store_true",
                   help="run the kernels in interpret mode with tiny shapes (CPU smoke run)")
    p.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated subset of {GROUPS}")
    p.add_argument("--iters", type=int, default=10, help="timed repetitions (median reported)")
    p.add_argument("--sweep", action="store_true", help="also time several tile settings")
    p.add_argument("--out", help="write all rows and the environment as JSON here")
    args = p.parse_args(argv)
    groups = [g for g in args.only.split(",") if g]
    for g in groups:
        if g not in GROUPS:
            p.error(f"unknown group {g!r}; choose from {GROUPS}")
    on_gpu = jax.default_backend() == "gpu"
    if not on_gpu and not args.interpret:
        print(f"bench_kernels: no GPU (JAX backend is {jax.default_backend()!r}). Run it on a "
              "machine with an NVIDIA GPU, or pass --interpret for a CPU smoke run with tiny "
              "shapes.", file=sys.stderr)
        return 2
    small = args.interpret
    env = environment()
    print("environment:", json.dumps(env))
    table = Table()
    print(Table.header())
    ceil = measure_ceilings(table, small, args.iters)
    goals = []
    results: dict = {"environment": env, "ceilings": ceil}
    it = args.iters

    if "attention" in groups:
        shapes = ([("causal B1 H2 T256 D64", 1, 256, 256, 2, 2, 64, True),
                   ("gqa4 causal B1 H4 T256 D64", 1, 256, 256, 4, 1, 64, True)] if small else
                  [("causal B2 H32 T4096 D128", 2, 4096, 4096, 32, 32, 128, True),
                   ("causal B2 H32 T4096 D64", 2, 4096, 4096, 32, 32, 64, True),
                   ("gqa4 causal B2 H32 K8 T4096 D128", 2, 4096, 4096, 32, 8, 128, True),
                   ("full B2 H16 T4096 D128", 2, 4096, 4096, 16, 16, 128, False)])
        for i, (name, B, T, S, H, K, Dh, causal) in enumerate(shapes):
            res = bench_attention_case(table, ceil, name, B, T, S, H, K, Dh, causal=causal, window=None,
                                       iters=it, interpret=args.interpret)
            results[name] = res
            if i == 0:
                goals += [f"[{name}] {g}" for g in goals_attention(res)]
        if args.sweep:
            name, B, T, S, H, K, Dh, causal = shapes[0]
            for bs in ATTENTION_SWEEP:
                tag = (f"bq{bs.block_q} bk{bs.block_k} w{bs.num_warps} s{bs.num_stages} | bwd "
                       f"bq{bs.block_q_bwd} bk{bs.block_k_bwd} w{bs.num_warps_bwd}")
                q, k, v, do = _qkv(B, T, S, H, K, Dh)
                fn = functools.partial(flash_attention, causal=causal, scale=Dh ** -0.5, block_sizes=bs,
                                       interpret=args.interpret)
                flops = 4 * B * H * allowed_pairs(T, S, causal, None) * Dh
                t, _ = _try(fn, q, k, v, iters=it)
                t2, _ = _try(_fwd_bwd(fn), q, k, v, do, iters=it)
                for mode, tt, fl in (("fwd", t, flops), ("fwd+bwd", t2, 3.5 * flops)):
                    if tt:
                        table.add(case=f"sweep {mode} {name}", impl=tag, ms=tt * 1e3, rate=fl / tt / 1e12,
                                  unit="TF/s", ceiling_frac=fl / tt / ceil["matmul_flops_per_s"])

    if "window" in groups:
        cases = ([(512, 64), (1024, 64), (1024, 128)] if small else
                 [(8192, 1024), (32768, 1024), (32768, 512), (32768, 2048)])
        times = {}
        Dh = 64 if small else 128
        for S, w in cases:
            name = f"window{w} causal B1 H4 T{S} D{Dh}"
            res = bench_attention_case(table, ceil, name, 1, S, S, 4, 4, Dh,
                                       causal=True, window=w, iters=it, interpret=args.interpret,
                                       with_xla=small)
            times[(S, w)] = res["fwd"].get("pallas")
            results[name] = res
        (s0, w0), (s1, _) = cases[0], cases[1]
        if times.get((s0, w0)) and times.get((s1, w0)):
            per_token = [times[(s, w0)] / s for s in (s0, s1)]
            goals.append(f"sliding window {w0}: time per query at T={s1} / at T={s0} = "
                         f"{per_token[1] / per_token[0]:.2f} (1.0 = proportional to the window, "
                         f"{s1 / s0:.0f} = proportional to the length)")
        if not small and all(times.get(c) for c in cases[1:]):
            (_, wa), (_, wb), (_, wc) = cases[1:]
            goals.append("sliding window at T=32768: time ratios for windows "
                         f"{wb}/{wa}/{wc}: " + " / ".join(
                             f"{times[(32768, w)] / times[(32768, wa)]:.2f}" for w in (wb, wa, wc))
                         + " (proportional: 0.50 / 1.00 / 2.00)")

    if "softplus" in groups:
        name, B, T, H, Dh = (("softplus causal B1 H2 T256 D64", 1, 256, 2, 64) if small else
                             ("softplus causal B2 H32 T4096 D128", 2, 4096, 32, 128))
        results[name] = bench_attention_case(table, ceil, name, B, T, T, H, H, Dh, causal=True,
                                             window=None, iters=it, interpret=args.interpret,
                                             kind="softplus")

    if "scan" in groups:
        shapes = ([("lscan B1 T256 D256", 1, 256, 256)] if small else
                  [("lscan B8 T4096 D4096", 8, 4096, 4096), ("lscan B1 T65536 D1024", 1, 65536, 1024)])
        for i, (name, B, T, D) in enumerate(shapes):
            for dtype in (jnp.bfloat16, jnp.float32):
                label = f"{name} {jnp.dtype(dtype).name}"
                res = bench_linear_scan(table, ceil, label, B, T, D, dtype, iters=it,
                                        interpret=args.interpret, with_sequential=small)
                results[label] = res
                if i == 0 and dtype == jnp.bfloat16 and res["fwd"].get("pallas"):
                    r = res["fwd"]["associative_scan"] / res["fwd"]["pallas"]
                    frac = 3 * B * T * D * 2 / res["fwd"]["pallas"] / ceil["copy_bytes_per_s"]
                    goals.append(f"[{label}] diagonal scan fwd = {r:.2f}x associative_scan (goal >= 3): "
                                 f"{'met' if r >= 3 else 'NOT met'}; {frac:.0%} of copy bandwidth "
                                 f"(goal >= 50%): {'met' if frac >= 0.5 else 'NOT met'}")
            if args.sweep:
                for sb in SCAN_SWEEP:
                    a = jax.random.uniform(jax.random.key(5), (B, T, D), minval=0.5, maxval=1.0).astype(jnp.bfloat16)
                    b = jax.random.normal(jax.random.key(6), (B, T, D), jnp.bfloat16)
                    t, _ = _try(functools.partial(linear_scan_pallas, blocks=sb, interpret=args.interpret),
                                a, b, iters=it)
                    if t:
                        nbytes = 3 * B * T * D * 2
                        table.add(case=f"sweep fwd {name} bf16",
                                  impl=f"bd{sb.block_d} c{sb.chunk} w{sb.num_warps} s{sb.num_stages}",
                                  ms=t * 1e3, rate=nbytes / t / 1e9, unit="GB/s",
                                  ceiling_frac=nbytes / t / ceil["copy_bytes_per_s"])

    if "selective" in groups:
        shapes = ([(1, 64, 32, 8)] if small else [(8, 2048, 1536, 16), (8, 8192, 1536, 16)])
        for B, T, D, N in shapes:
            name = f"selective B{B} T{T} D{D} N{N}"
            results[name] = bench_selective(table, ceil, name, B, T, D, N, jnp.bfloat16, iters=it,
                                            interpret=args.interpret)

    print("\ngoals" + (" (interpret mode: meaningless, shown for the format)" if small else "") + ":")
    for g in goals:
        print("  " + g)
    if args.out:
        payload = {"environment": env, "ceilings": ceil, "rows": table.rows, "goals": goals}
        Path(args.out).write_text(json.dumps(payload, indent=1, default=str) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
