#!/usr/bin/env python
"""Memory and step time of fine-tuning SmolLM2-135M three ways, in one run, as ratios:

    full    every parameter trains (float32 params, AdamW moments for all of them)
    lora    LoRA (rank 16, q/k/v/o and the MLP) beside a float32 frozen base
    qlora   the same LoRA beside the base kept in its GGUF Q4_1 blocks (jaxlab.nn.quant),
            dequantized inside dense one layer at a time

    python scripts/bench_peft.py                          # SmolLM2 from the jaxlab cache
    python scripts/bench_peft.py --steps 5 --batch 4 --seq 128 --out results/bench_peft/cpu.json
    python scripts/bench_peft.py --gguf model.gguf        # any llama GGUF file

Method: each mode runs in a fresh subprocess (its own peak memory). A step is forward,
token-mean cross-entropy on a fixed random batch, backward and AdamW on the trainable leaves,
jitted; one warm-up step (compilation) is excluded, then ``--steps`` timed steps (median).
Memory: the process's RSS high-water mark during the timed steps (reset after warm-up), and
the peak over the whole process (loading and compilation included). Ratios are against
``full`` in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_train import _hwm_mb, _maxrss_mb, _reset_peak

MODES = ("full", "lora", "qlora")


def run_mode(mode: str, gguf_path: str, steps: int, batch: int, seq: int, rank: int) -> dict:
    """One mode's measurements (in this process)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from jaxlab.interop import gguf
    from jaxlab.models import transformer
    from jaxlab.peft import AdapterSpec, attach, count_trainable, inline

    cfg, params, _ = gguf.load(gguf_path, keep_quantized=mode == "qlora")
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, seq + 1)), jnp.int32)
    spec = AdapterSpec(method="lora", targets="all", rank=rank, alpha=2.0 * rank)

    def ce(p):
        logits = transformer.apply(p, tokens[:, :-1], cfg)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    if mode == "full":
        trainable, frozen = params, None
        loss = ce
    else:
        frozen, trainable = attach(params, spec, jax.random.key(0))
        if mode == "lora":
            frozen = params
        loss = lambda t, frozen=frozen: ce(inline(frozen, t, spec))  # noqa: E731
    opt = optax.adamw(1e-4)
    state = opt.init(trainable)

    @jax.jit
    def step(t, s):
        value, grads = jax.value_and_grad(loss)(t)
        updates, s = opt.update(grads, s, t)
        return optax.apply_updates(t, updates), s, value

    trainable, state, first = step(trainable, state)
    jax.block_until_ready(trainable)
    reset = _reset_peak()
    times, values = [], []
    for _ in range(steps):
        start = time.perf_counter()
        trainable, state, value = step(trainable, state)
        jax.block_until_ready(trainable)
        times.append(time.perf_counter() - start)
        values.append(float(value))
    return {"mode": mode, "trainable_params": count_trainable(trainable), "step_s": statistics.median(times),
            "tokens_per_s": batch * seq / statistics.median(times),
            "peak_mb_steps": _hwm_mb() if reset else float("nan"), "peak_mb_process": _maxrss_mb(),
            "loss_first": float(first), "loss_last": values[-1]}


def table(rows: list[dict]) -> str:
    full = next(r for r in rows if r["mode"] == "full")
    out = ["| mode | trainable params | step s | tokens/s | peak MB (steps) | peak MB (process) | memory / full | step time / full |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['mode']} | {r['trainable_params']:,} | {r['step_s']:.2f} | {r['tokens_per_s']:.0f} | "
                   f"{r['peak_mb_steps']:.0f} | {r['peak_mb_process']:.0f} | "
                   f"{r['peak_mb_process'] / full['peak_mb_process']:.2f}x | {r['step_s'] / full['step_s']:.2f}x |")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", help="a llama GGUF file (default: SmolLM2-135M-Instruct from the jaxlab cache)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # a child process: one mode, JSON on stdout
    parser.add_argument("--out", help="write the rows and the table as JSON here")
    args = parser.parse_args(argv)
    if args.gguf is None:
        from jaxlab.interop.models import model_path
        args.gguf = str(model_path("smollm2-135m-instruct"))
        if not Path(args.gguf).is_file():
            print(f"error: {args.gguf} is absent; `make model` fetches it", file=sys.stderr)
            return 2
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.gguf, args.steps, args.batch, args.seq, args.rank)))
        return 0
    rows = []
    for mode in args.modes.split(","):
        if mode not in MODES:
            print(f"error: unknown mode {mode!r}; modes are {MODES}", file=sys.stderr)
            return 2
        cmd = [sys.executable, __file__, "--mode", mode, "--gguf", args.gguf, "--steps", str(args.steps),
               "--batch", str(args.batch), "--seq", str(args.seq), "--rank", str(args.rank)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{mode}: {rows[-1]['step_s']:.2f} s/step, peak {rows[-1]['peak_mb_process']:.0f} MB", file=sys.stderr)
    text = table(rows) if any(r["mode"] == "full" for r in rows) else json.dumps(rows, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows, "table": text}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
