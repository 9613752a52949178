#!/usr/bin/env python
"""Mamba against a transformer of about the same parameter count: training and decoding
tokens/s on this machine, as ratios (Mamba / transformer).

    python scripts/bench_mamba.py --quick                     # smoke run: tiny models, few steps
    python scripts/bench_mamba.py                             # d_model 256, seq 256 / 512 new tokens
    python scripts/bench_mamba.py --seq-len 1024 --out bench_mamba.json

Method
  * The transformer is the quickstart shape at ``--d-model`` (4 layers, 4 heads, SwiGLU MLP of
    3 d_model); the Mamba (expand 2, d_state 16, conv 4) takes the number of layers whose
    parameter count is nearest the transformer's (both reported).
  * Training: the runner's step (``jit_train_step`` on a 1-device mesh: forward, cross-entropy,
    backward, clipping, AdamW) on random tokens, ``--warmup`` untimed steps (compilation), then
    ``--steps`` timed ones; tokens/s = batch * seq_len / median step time.
  * Decoding: ``jaxlab.samplers.generate`` (greedy, no stop token) of ``--new-tokens`` tokens
    after a ``--prompt-len`` prompt for ``--decode-batch`` rows; one untimed call compiles, then
    the median of ``--repeats`` calls; tokens/s = rows * new tokens / time (prefill included).
    The transformer decodes over its KV cache, the Mamba over its fixed-size recurrent state.
  * Both models use the default implementations on this backend (on CPU: XLA attention, the
    ``lax.scan`` selective scan). Speed is never asserted; the load average is printed before
    and after, and numbers from a loaded machine are only comparable within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import random_lm_batch, timed_steps  # noqa: E402  (the benchmarks' batch and timing loop)

from jaxlab import models
from jaxlab.models import mamba, transformer
from jaxlab.samplers import SampleConfig, generate
from jaxlab.train import sharding as shd
from jaxlab.train import state as state_lib
from jaxlab.train.lm import lm_loss_sums
from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.step import jit_train_step, state_shardings


def model_pair(d_model: int, vocab_size: int = 264) -> tuple[transformer.Config, mamba.Config]:
    """The transformer at ``d_model`` and the Mamba whose layer count gives the nearest
    parameter count."""
    tcfg = transformer.Config(vocab_size=vocab_size, d_model=d_model, n_layers=4, n_heads=4, n_kv_heads=4,
                              head_dim=max(1, d_model // 4), mlp_dim=3 * d_model)
    one, two = (_count(mamba.Config(vocab_size=vocab_size, d_model=d_model, n_layers=n)) for n in (1, 2))
    per_layer, base = two - one, 2 * one - two  # the count is base + n_layers * per_layer
    n_layers = max(1, round((_count(tcfg) - base) / per_layer))
    return tcfg, mamba.Config(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers)


def _count(cfg) -> int:
    shapes = jax.eval_shape(models.init_fn(cfg), jax.random.key(0))
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def train_tokens_per_s(cfg, *, batch_size: int, seq_len: int, steps: int, warmup: int) -> dict:
    mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
    optimizer = make_optimizer(OptimConfig(lr=1e-3, warmup_steps=0, clip_norm=1.0), steps + warmup)
    init = lambda key: state_lib.create(models.init(cfg, key), optimizer, 0)
    sh = state_shardings(jax.eval_shape(init, jax.random.key(0)), mesh, models.param_axes(cfg))
    state = jax.jit(init, out_shardings=sh)(jax.random.key(0))
    loss = lambda p, b, k: lm_loss_sums(p, b, k, model_cfg=cfg)
    step = jit_train_step(mesh, sh, loss_sums_fn=loss, optimizer=optimizer)
    batch = shd.global_batch(random_lm_batch(batch_size, seq_len, 256, seed=0), mesh)
    state, m, times = timed_steps(step, state, batch, warmup, steps)
    median = statistics.median(times)
    return {"step_s": median, "tokens_per_s": batch_size * seq_len / median, "loss": float(m["loss"])}


def decode_tokens_per_s(cfg, *, batch_size: int, prompt_len: int, new_tokens: int, repeats: int) -> dict:
    params = models.init(cfg, jax.random.key(0))
    prompts = jnp.asarray(np.random.default_rng(1).integers(0, 256, (batch_size, prompt_len)), jnp.int32)
    mask = jnp.ones_like(prompts)
    sample = SampleConfig(max_new_tokens=new_tokens, temperature=0.0)
    jax.block_until_ready(generate(params, cfg, prompts, mask, jax.random.key(0), sample).tokens)  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = generate(params, cfg, prompts, mask, jax.random.key(0), sample)
        jax.block_until_ready(out.tokens)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"call_s": median, "tokens_per_s": batch_size * new_tokens / median,
            "generated": int(np.asarray(out.lengths).sum())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: d_model 32, seq 32, 2 timed steps")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--decode-batch", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="also write the results as JSON to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.d_model, args.batch_size, args.seq_len, args.steps, args.warmup = 32, 4, 32, 2, 1
        args.decode_batch, args.prompt_len, args.new_tokens, args.repeats = 2, 8, 8, 1
    load_before = os.getloadavg()
    tcfg, mcfg = model_pair(args.d_model)
    rows = []
    for name, cfg in (("transformer", tcfg), ("mamba", mcfg)):
        train = train_tokens_per_s(cfg, batch_size=args.batch_size, seq_len=args.seq_len, steps=args.steps,
                                   warmup=args.warmup)
        decode = decode_tokens_per_s(cfg, batch_size=args.decode_batch, prompt_len=args.prompt_len,
                                     new_tokens=args.new_tokens, repeats=args.repeats)
        rows.append({"model": name, "params": _count(cfg), "describe": models.describe(cfg),
                     "train_tokens_per_s": train["tokens_per_s"], "train_step_s": train["step_s"],
                     "train_loss": train["loss"], "decode_tokens_per_s": decode["tokens_per_s"],
                     "decode_call_s": decode["call_s"], "generated": decode["generated"]})
    t, m = rows
    result = {"args": vars(args), "rows": rows,
              "train_ratio": m["train_tokens_per_s"] / t["train_tokens_per_s"],
              "decode_ratio": m["decode_tokens_per_s"] / t["decode_tokens_per_s"],
              "load_before": load_before, "load_after": os.getloadavg(), "device": str(jax.devices()[0]),
              "models": {"transformer": dataclasses.asdict(tcfg), "mamba": dataclasses.asdict(mcfg)}}
    print(f"train: batch {args.batch_size} x seq {args.seq_len}; decode: {args.decode_batch} rows x "
          f"{args.new_tokens} new tokens after {args.prompt_len}; load average {load_before[0]:.1f} -> "
          f"{result['load_after'][0]:.1f}")
    print("| model | params | train tokens/s | decode tokens/s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['describe']} | {r['params']:,} | {r['train_tokens_per_s']:,.0f} | {r['decode_tokens_per_s']:,.0f} |")
    print(f"Mamba / transformer: training x{result['train_ratio']:.2f}, decoding x{result['decode_ratio']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
