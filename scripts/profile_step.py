#!/usr/bin/env python
"""Where the CPU training step's time goes: a ``jax.profiler`` trace of the benchmark step,
joined with XLA's optimised HLO, summed by kind of work, by pass and by source op.

    python scripts/profile_step.py                          # the quickstart model, 16 x 256
    python scripts/profile_step.py --model 25m --top 30     # the ~25M model, 4 x 512
    python scripts/profile_step.py --set scan_unroll=1 --json results/profile/quickstart.json
    python scripts/profile_step.py --compare-flags xla_cpu_use_onednn=true --rounds 3

``--compare-flags FLAGS ...`` times the step instead, in fresh processes, once with jaxlab's XLA
flags and once per extra set of flags (each a comma-separated list of ``name=value`` without the
leading dashes), interleaved over ``--rounds`` rounds, and prints each
set's median step time and its speed against jaxlab's flags.

The step is ``scripts/bench_train.py``'s jaxlab step (same model, batch shape, optimizer and
XLA flags). It is compiled and run for ``--warmup`` steps, timed over ``--steps`` steps, then
traced over ``--trace-steps`` more. XLA dumps the optimised HLO of the step; each traced
operation (a fusion, a matrix product, a copy) is matched to its HLO instruction, which gives
its shape and the JAX operation it came from (``op_name`` metadata: ``jvp(...)`` is the
forward pass, ``transpose(jvp(...))`` the backward pass, neither the optimizer update).

Kinds of work, from the operations each fusion holds:
  matmul        matrix products (XLA's ``dot``; ``ynn_fusion``: products handed to YNNPACK)
  data movement fusions of only transposes, copies, bitcasts, concatenations, slices, pads,
                broadcasts, gathers and scatters: layout changes that compute nothing
  reduction     fusions with a reduce or reduce-window (sums, maxima, norms)
  element-wise  every other fusion (activations, exponentials, masks, optimizer arithmetic)

Operation times are summed over the worker threads, so their total can exceed the step's
wall time when XLA runs independent operations side by side. Numbers from a loaded machine
are meaningless; the script prints the load average.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
MOVEMENT = {"transpose", "copy", "bitcast", "concatenate", "slice", "pad", "broadcast", "gather",
            "scatter", "dynamic-slice", "dynamic-update-slice", "reshape", "wrapped"}
RUNTIME_EVENTS = ("ThunkExecutor", "$", "SlinkyThreadPool", "PjitFunction", "CommonPjRt",
                  "ParseArguments", "Handle inputs", "end: ")


def kind_of(name: str) -> str:
    """The kind of work of a traced operation, from its HLO name (module docstring)."""
    base = re.sub(r"\.\d+$", "", name)
    if base.startswith(("ynn_fusion", "dot", "convolution")) or base == "custom-call":
        return "matmul"
    parts = set(re.split(r"[_]", base.replace("_fusion", "")))
    if "reduce" in parts or "reduce-window" in base:
        return "reduction"
    if parts <= MOVEMENT:
        return "data movement"
    return "element-wise"


def pass_of(op_name: str) -> str:
    """forward / backward / optimizer & other, from an instruction's ``op_name`` metadata."""
    if "transpose(jvp" in op_name:
        return "backward"
    if "jvp(" in op_name:
        return "forward"
    return "optimizer & other"


def hlo_instructions(text: str) -> dict[str, tuple[str, str]]:
    """{instruction name: (result shape, op_name)} of an optimised HLO module's text (the last
    definition of a name wins: the entry computation is printed last)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s+(?:ROOT )?%([\w.-]+) = (.*?) ([a-z-]+)\(", line)
        if m:
            op = re.search(r'op_name="([^"]*)"', line)
            out[m.group(1)] = (m.group(2), op.group(1) if op else "")
    return out


def summarize(events: list[dict], instructions: dict, n_steps: int) -> dict:
    """Per-step milliseconds by kind, by pass and by (operation, source op)."""
    by_kind, by_pass, by_op = collections.Counter(), collections.Counter(), collections.Counter()
    shapes = {}
    for e in events:
        if e.get("ph") != "X" or e["name"].startswith(RUNTIME_EVENTS):
            continue
        ms = e.get("dur", 0) / 1000 / n_steps
        shape, op_name = instructions.get(e["name"], ("?", ""))
        op_name = re.sub(r"^jit\([^)]*\)/", "", op_name)
        by_kind[kind_of(e["name"])] += ms
        by_pass[pass_of(op_name)] += ms
        key = (re.sub(r"\.\d+$", "", e["name"]), op_name)
        by_op[key] += ms
        shapes[key] = shape
    total = sum(by_kind.values())
    return {"op_ms_per_step": total, "by_kind": dict(by_kind.most_common()),
            "by_pass": dict(by_pass.most_common()),
            "top_ops": [{"op": k, "source": src, "shape": shapes[(k, src)], "ms": ms}
                        for (k, src), ms in by_op.most_common()]}


def _trace_events(trace_dir: Path) -> list[dict]:
    files = sorted(trace_dir.rglob("*.trace.json.gz"))
    if not files:
        raise SystemExit(f"no trace was written under {trace_dir}")
    data = json.load(gzip.open(files[-1]))
    return data["traceEvents"] if isinstance(data, dict) else data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="quickstart", choices=("quickstart", "25m"))
    p.add_argument("--set", nargs="*", default=[], dest="settings", metavar="FIELD=VALUE",
                   help="model config fields to change, e.g. scan_unroll=1")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--trace-steps", type=int, default=3)
    p.add_argument("--top", type=int, default=20, help="operations to list")
    p.add_argument("--dir", type=Path, default=None, help="keep the trace and HLO dump here")
    p.add_argument("--json", type=Path, default=None, help="write the summary as JSON")
    p.add_argument("--compare-flags", nargs="+", default=None, metavar="FLAGS",
                   help="time the step under each set of extra XLA flags against none")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of --compare-flags")
    p.add_argument("--time-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.compare_flags:
        return compare_flags(args)

    work = args.dir or Path(tempfile.mkdtemp(prefix="jaxlab_profile_"))
    dump = work / "hlo"
    if not args.time_only:
        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), f"--xla_dump_to={dump}",
                                            "--xla_dump_hlo_as_text", "--xla_dump_hlo_module_re=.*train_step.*"])
    sys.path.insert(0, str(SCRIPTS))
    sys.path.insert(0, str(SCRIPTS.parent))
    import dataclasses
    import functools

    import jax

    from bench_train import model_spec, random_lm_batch, timed_steps
    from jaxlab import config as config_lib
    from jaxlab.models import transformer
    from jaxlab.train import sharding as shd
    from jaxlab.train import state as state_lib
    from jaxlab.train.lm import lm_loss_sums
    from jaxlab.train.mfu import cpu_model
    from jaxlab.train.optim import OptimConfig, make_optimizer
    from jaxlab.train.step import jit_train_step, state_shardings

    spec = model_spec(args.model)
    cfg = config_lib.from_dict(transformer.Config, spec["model"])
    cfg = config_lib.apply_overrides(cfg, args.settings) if args.settings else cfg
    B, T = spec["batch_size"], spec["seq_len"]
    mesh = shd.make_mesh(shd.MeshConfig(data=1, fsdp=1), devices=jax.devices()[:1])
    optimizer = make_optimizer(OptimConfig(**spec["optim"]), args.warmup + args.steps + args.trace_steps)
    params = transformer.init(cfg, jax.random.key(0))

    def init_state(p_):
        return state_lib.create(p_, optimizer, 0)

    state_sh = state_shardings(jax.eval_shape(init_state, params), mesh, transformer.param_axes)
    state = jax.jit(init_state, out_shardings=state_sh)(params)
    step = jit_train_step(mesh, state_sh, loss_sums_fn=functools.partial(lm_loss_sums, model_cfg=cfg),
                          optimizer=optimizer)
    batch = shd.global_batch(random_lm_batch(B, T, 256, 0), mesh)
    state, metrics, times = timed_steps(step, state, batch, args.warmup, args.steps)
    if args.time_only:
        print(json.dumps({"step_ms": statistics.median(times) * 1000, "loss": float(metrics["loss"])}))
        return 0
    with jax.profiler.trace(str(work / "trace"), create_perfetto_trace=True):
        for _ in range(args.trace_steps):
            state, metrics = step(state, batch)
            jax.block_until_ready((state, metrics))

    hlo_files = sorted(dump.glob("*train_step*cpu_after_optimizations.txt"))
    if not hlo_files:
        raise SystemExit(f"XLA wrote no optimised train_step module under {dump}")
    summary = summarize(_trace_events(work / "trace"), hlo_instructions(hlo_files[-1].read_text()),
                        args.trace_steps)
    step_ms = statistics.median(times) * 1000
    summary.update(model=args.model, model_config=dataclasses.asdict(cfg), batch=[B, T],
                   step_ms_median=step_ms, tokens_per_s=B * T / step_ms * 1000, cpu=cpu_model(),
                   load_avg=os.getloadavg(), jax=jax.__version__, xla_flags=os.environ["XLA_FLAGS"])

    print(f"{args.model}: {B} x {T} tokens, step {step_ms:.1f} ms median ({B * T / step_ms * 1000:,.0f} "
          f"tokens/s), {summary['op_ms_per_step']:.1f} ms of operations per step; {cpu_model()}, "
          f"load {os.getloadavg()[0]:.2f}")
    total = summary["op_ms_per_step"]
    for title in ("by_kind", "by_pass"):
        print(f"\n{title.replace('_', ' ')}:")
        for name, ms in summary[title].items():
            print(f"  {name:18s} {ms:8.1f} ms  {100 * ms / total:5.1f}%")
    print(f"\ntop {args.top} operations (per step):")
    for row in summary["top_ops"][:args.top]:
        print(f"  {row['ms']:7.1f} ms {100 * row['ms'] / total:5.1f}%  {kind_of(row['op']):13s} "
              f"{row['shape'][:34]:34s} {row['source'][:80]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary["top_ops"] = summary["top_ops"][:60]
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def compare_flags(args) -> int:
    """--compare-flags: the step timed in fresh processes per set of extra XLA flags."""
    import subprocess

    sets = ["", *(" ".join("--" + f.strip().lstrip("-") for f in group.split(",")) for group in args.compare_flags)]
    times = {f: [] for f in sets}
    base_cmd = [sys.executable, __file__, "--time-only", "--model", args.model, "--warmup", str(args.warmup),
                "--steps", str(args.steps), *(["--set", *args.settings] if args.settings else [])]
    for r in range(args.rounds):
        for flags in sets:
            env = {**os.environ, "XLA_FLAGS": " ".join([os.environ.get("XLA_FLAGS", ""), flags]).strip()}
            out = subprocess.run(base_cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"the step failed with XLA flags {flags!r}")
            times[flags].append(json.loads(out.stdout.strip().splitlines()[-1])["step_ms"])
            print(f"round {r + 1}: {times[flags][-1]:8.1f} ms  {flags or '(jaxlab flags only)'}", flush=True)
    base = statistics.median(times[""])
    print(f"\n{args.model}, {args.rounds} interleaved rounds, median step; load {os.getloadavg()[0]:.2f}, {_cpu()}")
    for flags in sets:
        med = statistics.median(times[flags])
        print(f"  {med:8.1f} ms  {base / med:5.2f}x  {flags or '(jaxlab flags only)'}")
    return 0


def _cpu() -> str:
    sys.path.insert(0, str(SCRIPTS.parent))
    from jaxlab.train.mfu import cpu_model
    return cpu_model()


if __name__ == "__main__":
    sys.exit(main())
