#!/usr/bin/env python
"""Training-step throughput and memory: jaxlab against the same model in PyTorch, same run.

For each model (the quickstart model at its batch size and sequence length, and a model of
about 25M parameters at sequence length 512) the script times the real jaxlab training step
(``jit_train_step`` on a 1-device mesh: forward, token-mean cross-entropy, backward, clipping,
AdamW) and the same step written in PyTorch (``scripts/_torch_twin.py``, eager and
``torch.compile``), with the same initial params, the same batch and the same optimizer
settings, and prints tokens/s, peak memory and the ratio jaxlab / PyTorch.

    python scripts/bench_train.py --quick                  # smoke run: a few steps
    python scripts/bench_train.py                          # both models, all variants
    python scripts/bench_train.py --models 25m --steps 20 --threads 1 --out bench.json
    python scripts/bench_train.py --variants jaxlab,jaxlab_xla_defaults,torch_eager,torch_compile

On a GPU or TPU, ``--mfu`` measures model FLOPs utilisation instead: the jaxlab training step of
the ~350M-parameter preset (configs/models.py "350m", bf16 compute, f32 master params) at
sequence length 2048, tokens/s converted to FLOP/s by ``jaxlab.train.mfu`` and divided by the
device's dense bf16 peak:

    python scripts/bench_train.py --mfu                              # 350m, batch 8 x 2048
    python scripts/bench_train.py --mfu --mfu-batch 16 --remat none

``jaxlab_xla_defaults`` is the same jaxlab step without the XLA flags jaxlab sets on CPU
(``jaxlab/_xla_flags.py``), to show what they are worth.

Method
  * Every variant runs in a fresh subprocess of its own (``--variant``), one after the other,
    so each has its own peak memory and no variant warms caches or thread pools for another.
    A first ``prepare`` subprocess draws the params with ``jaxlab.models.transformer.init``
    and a batch of random byte tokens, and saves them; every variant loads those.
  * Timing: ``--warmup`` steps first (jit / torch.compile compilation happens there and is
    excluded), then ``--steps`` timed steps; tokens/s = batch * seq_len / median step time.
    ``--rounds`` runs all variants that many times, interleaved, and reports each variant's
    median round, so slow drifts of the machine's load hit every variant alike.
    jaxlab steps end with ``jax.block_until_ready``; PyTorch on CPU is synchronous.
  * Memory: RSS after imports (``base``), the process's peak during the timed steps (the
    kernel's high-water mark is reset after warm-up through ``/proc/self/clear_refs``), and
    the peak over the whole process, compilation included (``ru_maxrss``).
  * Threads: ``--threads N`` (default: every core this process may run on) pins each
    subprocess to N cores with ``sched_setaffinity`` before JAX or PyTorch is imported and
    calls ``torch.set_num_threads(N)``. XLA's CPU client sizes its intra-op thread pool from
    the CPU affinity mask (tsl ``MaxParallelism``); in jax 0.10 there is no XLA flag for the
    count (``--intra_op_parallelism_threads`` is rejected as an unknown XLA flag), so the
    affinity mask is the one knob that binds both frameworks to the same cores.
    ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` are set to N as well.
  * The batch is one segment per row (positions 0..T-1, mask all ones). The jaxlab step is
    the one ``jaxlab run`` uses, segment ids included; PyTorch gets its fastest path
    (``scaled_dot_product_attention(is_causal=True)``). Learning rate: constant (the
    schedule's value costs nothing and is the same on both sides).
  * Each variant reports its loss at the first and last step: the first-step losses must
    agree (same params, same data), which checks at benchmark scale that the variants compute
    the same thing (``tests/scripts/test_torch_twin.py`` checks it exactly at small scale).

Speed is never asserted: the script measures and reports ratios against references measured
in the same run on the same machine. Numbers from a loaded machine are meaningless; the
script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent
VARIANTS = ("jaxlab", "jaxlab_xla_defaults", "torch_eager", "torch_compile")
DEFAULT_VARIANTS = ("jaxlab", "torch_eager", "torch_compile")

# The ~25M-parameter model (configs/models.py "25m") runs at sequence length 512.
BENCH_25M = dict(batch_size=4, seq_len=512)


# --------------------------------------------------------------------------- helpers


def _proc_line(path: str, prefix: str) -> str | None:
    """The rest of the first line of ``path`` that starts with ``prefix`` (None if none)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (e.g. VmRSS, VmHWM) in MB."""
    value = _proc_line("/proc/self/status", field + ":")
    return int(value.split()[0]) / 1024 if value else float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _hwm_mb() -> float:
    return _status_mb("VmHWM")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reset_peak() -> bool:
    """Resets the kernel's RSS high-water mark of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _pin_threads(n: int) -> None:
    """Before importing JAX / PyTorch: N cores for this process and its thread pools."""
    allowed = sorted(os.sched_getaffinity(0))
    if n < len(allowed):
        os.sched_setaffinity(0, allowed[:n])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


def _cpu_flags() -> str:
    flags = set((_proc_line("/proc/cpuinfo", "flags") or "").split())
    return ",".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _load_avg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def _nested(flat: dict) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        parts = path.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def random_lm_batch(B: int, T: int, vocab_size: int, seed: int) -> dict:
    """A language-model batch of uniform random tokens, one segment per row (the benchmarks'
    batch: what the step computes does not depend on the values)."""
    import numpy as np

    tokens = np.random.default_rng(seed).integers(0, vocab_size, (B, T + 1)).astype(np.int32)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "mask": np.ones((B, T), np.float32),
            "segment_ids": np.ones((B, T), np.int32),
            "positions": np.broadcast_to(np.arange(T, dtype=np.int32), (B, T)).copy()}


def timed_steps(step_fn, state, batch, warmup: int, steps: int):
    """(state, last metrics, seconds of each timed step): ``warmup`` untimed steps (compilation
    happens there), then ``steps`` steps each timed to ``jax.block_until_ready``."""
    import jax

    for _ in range(warmup):
        state, metrics = step_fn(state, batch)
        jax.block_until_ready((state, metrics))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = step_fn(state, batch)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    return state, metrics, times


def _summary(times: list[float], tokens_per_step: int) -> dict:
    med = statistics.median(times)
    return {"step_s_median": med, "step_s_min": min(times), "step_s_max": max(times),
            "tokens_per_s": tokens_per_step / med, "steps_timed": len(times)}


# --------------------------------------------------------------------------- child: prepare


def model_spec(name: str) -> dict:
    """Model config fields, batch shape and optimizer fields of a benchmark model."""
    sys.path.insert(0, str(REPO))
    import dataclasses

    from experiments.quickstart import get_config

    qs = get_config()
    optim = dataclasses.asdict(qs.optim)
    if name == "quickstart":
        model = dataclasses.asdict(qs.model)
        shape = dict(batch_size=qs.train.batch_size, seq_len=qs.train.seq_len)
    elif name == "25m":
        from configs.models import PRESETS

        model = dataclasses.asdict(PRESETS["25m"])
        shape = dict(BENCH_25M)
    else:
        raise SystemExit(f"unknown model {name!r}; expected quickstart or 25m")
    # Constant learning rate on both sides (the schedule's value is a scalar either way).
    optim.update(schedule="constant", warmup_steps=0)
    return {"name": name, "model": model, "optim": optim, **shape}


def run_prepare(args) -> dict:
    import jax
    import numpy as np

    from jaxlab import config as config_lib
    from jaxlab.models import transformer

    spec = model_spec(args.model)
    cfg = config_lib.from_dict(transformer.Config, spec["model"])  # nested configs (rope scaling) too
    params = jax.jit(transformer.init, static_argnums=0)(cfg, jax.random.key(args.seed))
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(x)
            for path, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    workdir = Path(args.workdir)
    np.savez(workdir / "params.npz", **flat)
    rng = np.random.default_rng(args.seed)
    B, T = spec["batch_size"], spec["seq_len"]
    tokens = rng.integers(0, 256, size=(B, T + 1), dtype=np.int32)  # byte tokens
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
             "positions": np.broadcast_to(np.arange(T, dtype=np.int32), (B, T)).copy(),
             "segment_ids": np.ones((B, T), np.int32), "mask": np.ones((B, T), np.float32)}
    np.savez(workdir / "batch.npz", **batch)
    spec["params"] = int(transformer.count_params(params))
    (workdir / "spec.json").write_text(json.dumps(spec))
    return spec


def _load_inputs(workdir: Path):
    import numpy as np

    spec = json.loads((workdir / "spec.json").read_text())
    with np.load(workdir / "params.npz") as z:
        params = _nested({k: z[k] for k in z.files})
    with np.load(workdir / "batch.npz") as z:
        batch = {k: z[k] for k in z.files}
    return spec, params, batch


# --------------------------------------------------------------------------- child: jaxlab


def run_jaxlab(args) -> dict:
    import functools

    import jax
    import jax.numpy as jnp

    from jaxlab import config as config_lib
    from jaxlab.models import transformer
    from jaxlab.train import sharding as shd
    from jaxlab.train import state as state_lib
    from jaxlab.train.optim import OptimConfig, make_optimizer
    from jaxlab.train.lm import lm_loss_sums
    from jaxlab.train.step import jit_train_step, state_shardings

    base_mb = _rss_mb()
    spec, params_np, batch_np = _load_inputs(Path(args.workdir))
    cfg = config_lib.from_dict(transformer.Config, spec["model"])  # nested configs (rope scaling) too
    ocfg = OptimConfig(**spec["optim"])
    total_steps = args.warmup + args.steps
    mesh = shd.make_mesh(shd.MeshConfig(data=1, fsdp=1), devices=jax.devices()[:1])
    optimizer = make_optimizer(ocfg, total_steps)
    loss_fn = functools.partial(lm_loss_sums, model_cfg=cfg)

    def init_state(params):
        return state_lib.create(params, optimizer, 0)

    params = jax.tree.map(jnp.asarray, params_np)
    del params_np
    abstract = jax.eval_shape(init_state, params)
    state_sh = state_shardings(abstract, mesh, transformer.param_axes)
    state = jax.jit(init_state, out_shardings=state_sh)(params)
    del params
    step_fn = jit_train_step(mesh, state_sh, loss_sums_fn=loss_fn, optimizer=optimizer)
    batch = shd.global_batch(batch_np, mesh)
    tokens = batch_np["inputs"].size

    losses, warm_times = [], []
    for _ in range(args.warmup):
        t0 = time.perf_counter()
        state, metrics = step_fn(state, batch)
        jax.block_until_ready((state, metrics))
        warm_times.append(time.perf_counter() - t0)
        losses.append(float(metrics["loss"]))
    setup_peak_mb = _maxrss_mb()
    reset = _reset_peak()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        state, metrics = step_fn(state, batch)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
        losses.append(float(metrics["loss"]))
    return {**_summary(times, tokens), "base_rss_mb": base_mb,
            "step_peak_rss_mb": _hwm_mb() if reset else float("nan"),
            "peak_rss_mb": max(setup_peak_mb, _maxrss_mb()),
            "first_step_s": warm_times[0] if warm_times else float("nan"),
            "loss_first": losses[0], "loss_last": losses[-1], "threads": len(os.sched_getaffinity(0)),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "device": str(jax.devices()[0])}


# --------------------------------------------------------------------------- MFU (GPU / TPU)


def run_mfu(args) -> int:
    """Times the jaxlab train step of a preset in this process and prints tokens/s and MFU."""
    import dataclasses
    import functools

    import jax
    import numpy as np

    sys.path.insert(0, str(REPO))
    from configs.models import PRESETS
    from jaxlab.models import transformer
    from jaxlab.train import mfu
    from jaxlab.train import sharding as shd
    from jaxlab.train import state as state_lib
    from jaxlab.train.optim import OptimConfig, make_optimizer
    from jaxlab.train.lm import lm_loss_sums
    from jaxlab.train.step import jit_train_step, state_shardings

    device = jax.devices()[0]
    peak = mfu.peak_flops(device.device_kind)
    if device.platform == "cpu" and not args.quick:
        print("--mfu measures accelerator utilisation; on CPU run it with --quick (a smoke run "
              "with no MFU figure) or on a GPU / TPU machine")
        return 2
    overrides = {}
    if args.remat is not None:
        overrides["remat"] = args.remat
    if args.attention_impl is not None:
        overrides["attention_impl"] = args.attention_impl
    cfg = dataclasses.replace(PRESETS[args.mfu_model], **overrides)
    B, T = args.mfu_batch, args.mfu_seq
    mesh = shd.make_mesh(shd.MeshConfig(data=1), devices=[device])
    optimizer = make_optimizer(OptimConfig(lr=1e-4, warmup_steps=0, schedule="constant"), 1000)

    def init_state(key):
        return state_lib.create(transformer.init(cfg, key), optimizer, 0)

    abstract = jax.eval_shape(init_state, jax.random.key(0))
    state_sh = state_shardings(abstract, mesh, transformer.param_axes)
    state = jax.jit(init_state, out_shardings=state_sh)(jax.random.key(0))
    n_params = transformer.count_params(state.params)
    step_fn = jit_train_step(mesh, state_sh, optimizer=optimizer,
                             loss_sums_fn=functools.partial(lm_loss_sums, model_cfg=cfg))
    batch = shd.global_batch(random_lm_batch(B, T, cfg.vocab_size, args.seed), mesh)
    state, metrics, times = timed_steps(step_fn, state, batch, args.warmup, args.steps)
    summary = _summary(times, B * T)
    flops_tok = mfu.train_flops_per_token(cfg, T)
    achieved = summary["tokens_per_s"] * flops_tok
    print(f"device: {device.device_kind} ({device.platform}); jax {_version('jax')}, "
          f"jaxlib {_version('jaxlib')}")
    print(f"model {args.mfu_model}: {n_params:,} params, {cfg.n_layers} layers, d_model {cfg.d_model}, "
          f"compute {cfg.compute_dtype}, remat {cfg.remat}, attention {cfg.attention_impl}; "
          f"batch {B} x {T}")
    print(f"step {summary['step_s_median'] * 1e3:.1f} ms (median of {len(times)}), "
          f"{summary['tokens_per_s']:,.0f} tokens/s, {flops_tok / 1e9:.2f} GFLOP/token, "
          f"{achieved / 1e12:.1f} TFLOP/s, loss {float(metrics['loss']):.3f}")
    if peak is None:
        print(f"MFU: n/a (no known bf16 peak for {device.device_kind!r}; add it to "
              "jaxlab/train/mfu.py PEAK_BF16_FLOPS)")
    else:
        print(f"MFU: {achieved / peak:.1%} of {peak / 1e12:.0f} TFLOP/s dense bf16 peak")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "device": device.device_kind, "model": args.mfu_model, "params": n_params, "batch": B,
            "seq_len": T, **summary, "train_flops_per_token": flops_tok, "achieved_flops": achieved,
            "peak_flops": peak, "mfu": None if peak is None else achieved / peak}, indent=2))
    return 0


# --------------------------------------------------------------------------- child: torch


def run_torch(args, compiled: bool) -> dict:
    import torch

    sys.path.insert(0, str(SCRIPTS))
    import _torch_twin as twin

    torch.set_num_threads(args.threads)
    base_mb = _rss_mb()
    spec, params_np, batch_np = _load_inputs(Path(args.workdir))
    model = twin.TorchTransformer(twin.TwinConfig.from_any(spec["model"]))
    twin.load_jaxlab_params(model, params_np)
    del params_np
    opt_cfg = twin.TwinOptim.from_any(spec["optim"])
    optimizer = twin.make_optimizer(model, opt_cfg, impl=args.torch_adamw)
    adamw_impl = ("fused" if optimizer.defaults.get("fused") else
                  "foreach" if optimizer.defaults.get("foreach") else "loop")
    batch = twin.to_torch_batch(batch_np, use_segments=False)  # one segment per row: is_causal
    tokens = batch_np["inputs"].size
    forward_loss = twin.loss_fn
    if compiled:
        forward_loss = torch.compile(twin.loss_fn, mode=args.compile_mode)

    losses, warm_times = [], []
    try:
        for _ in range(args.warmup):
            t0 = time.perf_counter()
            losses.append(float(twin.train_step(model, optimizer, batch, opt_cfg.clip_norm,
                                                forward_loss=forward_loss)))
            warm_times.append(time.perf_counter() - t0)
    except Exception as e:  # torch.compile may not work on this machine: say why, go on
        if not compiled:
            raise
        msg = f"{type(e).__name__}: {e}".strip().splitlines()
        return {"error": "torch.compile failed: " + (msg[0] if msg else type(e).__name__)[:500]}
    setup_peak_mb = _maxrss_mb()
    reset = _reset_peak()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(float(twin.train_step(model, optimizer, batch, opt_cfg.clip_norm,
                                            forward_loss=forward_loss)))
        times.append(time.perf_counter() - t0)
    return {**_summary(times, tokens), "base_rss_mb": base_mb,
            "step_peak_rss_mb": _hwm_mb() if reset else float("nan"),
            "peak_rss_mb": max(setup_peak_mb, _maxrss_mb()),
            "first_step_s": warm_times[0] if warm_times else float("nan"),
            "loss_first": losses[0], "loss_last": losses[-1], "threads": torch.get_num_threads(),
            "adamw": adamw_impl, "compile_mode": args.compile_mode if compiled else None}


def child_main(args) -> None:
    _pin_threads(args.threads)
    if args.variant == "prepare":
        result = run_prepare(args)
    elif args.variant in ("jaxlab", "jaxlab_xla_defaults"):
        result = run_jaxlab(args)
    elif args.variant in ("torch_eager", "torch_compile"):
        result = run_torch(args, compiled=args.variant == "torch_compile")
    else:
        raise SystemExit(f"unknown variant {args.variant!r}")
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- parent


def _spawn(args, variant: str, model: str, workdir: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--variant", variant, "--model", model,
           "--workdir", str(workdir), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--seed", str(args.seed),
           "--compile-mode", args.compile_mode, "--torch-adamw", args.torch_adamw]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    # One CPU device, as a plain `jaxlab run` on a laptop (the tests' 8 fake devices would
    # split XLA's thread pool).
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    flags += args.xla_flags.split()
    env["XLA_FLAGS"] = " ".join(flags)
    if variant == "jaxlab_xla_defaults":
        env["JAXLAB_XLA_DEFAULTS"] = "1"  # without the XLA flags jaxlab sets (jaxlab/_xla_flags.py)
    else:
        env.pop("JAXLAB_XLA_DEFAULTS", None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            result["wall_s"] = wall
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit code {proc.returncode}: " + " | ".join(tail)[-500:], "wall_s": wall}


def median_round(results: list[dict]) -> dict:
    """The round with the median tokens/s (a failed round, if any, is reported instead)."""
    failed = [r for r in results if "error" in r]
    if failed:
        return failed[0]
    return sorted(results, key=lambda r: r["tokens_per_s"])[len(results) // 2]


def _fmt(x, spec: str) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return format(x, spec)


def print_table(rows: list[dict]) -> None:
    head = (f"{'model':<11} {'params':>11} {'B x T':>9} {'variant':<14} {'tokens/s':>10} "
            f"{'step ms':>9} {'step RSS':>9} {'+imports':>9} {'peak RSS':>9} "
            f"{'jaxlab/x':>9} {'loss@1':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        res = r["result"]
        if "error" in res:
            print(f"{r['model']:<11} {r['params']:>11,} {r['shape']:>9} {r['variant']:<14} "
                  f"FAILED: {res['error']}")
            continue
        over = res["step_peak_rss_mb"] - res["base_rss_mb"]
        print(f"{r['model']:<11} {r['params']:>11,} {r['shape']:>9} {r['variant']:<14} "
              f"{_fmt(res['tokens_per_s'], ',.0f'):>10} {_fmt(res['step_s_median'] * 1e3, '.1f'):>9} "
              f"{_fmt(res['step_peak_rss_mb'], '.0f'):>9} {_fmt(over, '.0f'):>9} "
              f"{_fmt(res['peak_rss_mb'], '.0f'):>9} {_fmt(r.get('ratio'), '.2f'):>9} "
              f"{_fmt(res['loss_first'], '.4f'):>8}")
    print("\nstep RSS: peak RSS (MB) during the timed steps; +imports: that minus the RSS after "
          "imports;\npeak RSS: the whole process's peak, compilation included; jaxlab/x: jaxlab "
          "tokens/s divided by this variant's; loss@1: loss of the first step (must agree).")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 warm-up and 2 timed steps")
    p.add_argument("--models", default="quickstart,25m", help="comma list of: quickstart, 25m")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma list of: {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})")
    p.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 10)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="cores / threads for every variant (default: all this process may use)")
    p.add_argument("--out", default=None, help="also write the results as JSON to this file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode (default | reduce-overhead | max-autotune)")
    p.add_argument("--torch-adamw", default="auto", choices=("auto", "fused", "foreach", "loop"),
                   help="PyTorch AdamW implementation (auto: fused where supported)")
    p.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for every jaxlab variant")
    p.add_argument("--rounds", type=int, default=None,
                   help="run every variant this many times, interleaved, and report the median "
                        "round (default 3; 1 with --quick): drifting machine load then hits all "
                        "variants alike")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per variant subprocess")
    p.add_argument("--mfu", action="store_true",
                   help="GPU/TPU: model FLOPs utilisation of the 350m preset at sequence length 2048")
    p.add_argument("--mfu-model", default="350m", help="model preset for --mfu (configs/models.py)")
    p.add_argument("--mfu-batch", type=int, default=8, help="sequences per step for --mfu")
    p.add_argument("--mfu-seq", type=int, default=2048, help="sequence length for --mfu")
    p.add_argument("--remat", default=None, choices=("none", "full", "dots"),
                   help="override the preset's remat policy (--mfu)")
    p.add_argument("--attention-impl", default=None, help="override model.attention_impl (--mfu)")
    # Internal: one variant in this process.
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    args.steps = args.steps if args.steps is not None else (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    args.threads = args.threads or len(os.sched_getaffinity(0))
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be >= 1 (compilation happens in warm-up)")
    if args.variant is not None:
        child_main(args)
        return 0
    if args.mfu:
        return run_mfu(args)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}; expected some of {', '.join(VARIANTS)}")
    from jaxlab.train.mfu import cpu_model  # imports without JAX

    machine = {
        "cpu": cpu_model(), "cpu_flags": _cpu_flags(), "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)), "threads": args.threads,
        "python": platform.python_version(), "jax": _version("jax"), "jaxlib": _version("jaxlib"),
        "torch": _version("torch"), "optax": _version("optax"),
        "load_avg_start": _load_avg(),
    }
    print(f"CPU: {machine['cpu']} ({machine['cpu_flags']}); {machine['cores']} cores, "
          f"{machine['cores_usable']} usable, benchmark threads {args.threads}")
    print(f"python {machine['python']}, jax {machine['jax']} (jaxlib {machine['jaxlib']}), "
          f"torch {machine['torch']}, optax {machine['optax']}")
    la = machine["load_avg_start"]
    print(f"load average at start: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"
          + ("   (the machine is busy: numbers will be noisy)" if la[0] > 0.5 else ""))
    print(f"warm-up {args.warmup} steps, timed {args.steps} steps per variant; each variant in "
          "its own subprocess\n", flush=True)

    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for model in models:
            workdir = Path(tmp) / model
            workdir.mkdir()
            spec = _spawn(args, "prepare", model, workdir)
            if "error" in spec:
                print(f"{model}: preparing params failed: {spec['error']}")
                failures.append(f"{model}: prepare")
                continue
            shape = f"{spec['batch_size']}x{spec['seq_len']}"
            print(f"{model}: {spec['params']:,} params, batch {spec['batch_size']} x seq_len "
                  f"{spec['seq_len']} = {spec['batch_size'] * spec['seq_len']} tokens/step", flush=True)
            by_variant = {v: [] for v in variants}
            for round_ in range(args.rounds):
                for variant in variants:
                    res = _spawn(args, variant, model, workdir)
                    status = res.get("error") or (f"{res['tokens_per_s']:,.0f} tokens/s, first step "
                                                  f"(compile) {res['first_step_s']:.1f} s")
                    print(f"  round {round_ + 1}/{args.rounds} {variant:<20} {status}", flush=True)
                    by_variant[variant].append(res)
                    if "error" in res:
                        failures.append(f"{model}: {variant}")
            for variant, results in by_variant.items():
                rows.append({"model": model, "params": spec["params"], "shape": shape,
                             "variant": variant, "spec": spec, "result": median_round(results),
                             "rounds": results})

    # Ratios and the verdicts per model: each jaxlab variant against the faster PyTorch one.
    verdicts = []
    for model in models:
        mrows = {r["variant"]: r for r in rows if r["model"] == model and "error" not in r["result"]}
        torch_ok = {v: r["result"]["tokens_per_s"] for v, r in mrows.items() if v.startswith("torch")}
        if "jaxlab" in mrows:
            jx_tps = mrows["jaxlab"]["result"]["tokens_per_s"]
            for r in mrows.values():
                r["ratio"] = jx_tps / r["result"]["tokens_per_s"]
        if not torch_ok:
            continue
        best_v = max(torch_ok, key=torch_ok.get)
        for jv in ("jaxlab", "jaxlab_xla_defaults"):
            if jv in mrows:
                ratio = mrows[jv]["result"]["tokens_per_s"] / torch_ok[best_v]
                verdicts.append({"model": model, "variant": jv, "fastest_torch": best_v,
                                 "ratio": ratio, "at_least_as_fast": ratio >= 1.0})
    print()
    print_table(rows)
    machine["load_avg_end"] = _load_avg()
    la = machine["load_avg_end"]
    print(f"\nload average at end: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    for v in verdicts:
        print(f"{v['model']}: {v['variant']} >= the faster PyTorch variant ({v['fastest_torch']}): "
              f"{'YES' if v['at_least_as_fast'] else 'NO'} "
              f"({v['variant']} / {v['fastest_torch']} = {v['ratio']:.2f})")
    plain = [v for v in verdicts if v["variant"] == "jaxlab"]
    if plain:
        all_ok = all(v["at_least_as_fast"] for v in plain)
        print(f"overall: jaxlab (default flags) is {'at least as fast as' if all_ok else 'slower than'} "
              f"the faster PyTorch variant on {'every' if all_ok else 'some'} model")
    if args.out:
        out = {"machine": machine,
               "settings": {k: getattr(args, k) for k in ("steps", "warmup", "threads", "seed",
                                                          "compile_mode", "torch_adamw", "xla_flags",
                                                          "rounds")},
               "results": [{k: r[k] for k in ("model", "params", "shape", "variant", "result")}
                           | {"ratio_jaxlab_over_this": r.get("ratio")} for r in rows],
               "verdicts": verdicts}
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")
    if failures:
        print(f"error: {len(failures)} run(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
