#!/usr/bin/env python
"""Encoder training cost on this CPU, as ratios measured in one run:

(a) packed vs padded. The same documents of mixed lengths (``jaxlab.tasks.documents.
    render_document``, difficulties 1..10) are trained on two ways with the MLM step of
    ``jaxlab.train.mlm`` (``jaxlab.train.step.train_step``: masking, forward, backward, AdamW):

        padded   one document per row, every row padded to the longest document (T tokens)
        packed   the token stream packed into rows of the same T with segment ids
                 (``jaxlab.data.pipeline.packed_lm_dataset``, as ``train_mlm`` does)

    Both arms hold exactly the same real (non-pad) tokens; a pass runs every batch of the arm.
    real tokens/s = real tokens / seconds of one pass; ratio = packed / padded.

(b) alternating local/global attention vs all-global at sequence ``--seq`` (2048): the
    ModernBERT pattern (layer 0 global, then two local of ``--window`` tokens, repeating) against
    the same encoder with every layer global. Measured: one jitted forward+backward of the MLM
    loss (no optimizer) on one row. Analytic: attention matmul FLOPs, 4 H Dh per (query, key)
    pair in the forward pass (q.k and p.v), with global layers computing T^2 pairs and local
    layers

        visible   the pairs inside the window, |t - s| <= window // 2 (about T * (window + 1))
        computed  what the CPU path computes: the XLA attention (``jaxlab.kernels.attention.
                  xla``) takes queries in blocks of 128 and each block attends to the keys its
                  window reaches (128 + window keys), so a local layer's cost grows with the
                  window, not with T. The GPU flash kernel (``pallas.py``) skips the key blocks
                  outside the window the same way (at its own block size).

    fwd+bwd FLOPs are taken as 3x forward (the backward's recompute of the scores not counted).

Timing: each arm is compiled and warmed up first; then the arms alternate for ``--repeats``
rounds and the best time of each is kept, so slow phases of a shared machine hit both arms
alike. The ratios come from a shared 2-core machine unless said otherwise: read them as
rough. Writes ``OUT.json`` and ``OUT.md`` (``--out``; ``--render OUT.json`` rewrites the table
of a finished run); benchmarks report, they never assert a speed.

    python scripts/bench_encoder.py --out results/bench_encoder/cpu
    python scripts/bench_encoder.py --tiny --out /tmp/bench_encoder      # seconds (tests)
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.data.pipeline import packed_lm_dataset, tokenize_record
from jaxlab.data.tokenizer import BYTES
from jaxlab.kernels.attention.reference import visible_key_count
from jaxlab.kernels.attention.xla import key_range
from jaxlab.models import encoder
from jaxlab.models.encoder import EncoderConfig
from jaxlab.tasks.documents import render_document
from jaxlab.tasks.documents.generator import MAX_DIFFICULTY
from jaxlab.train import state as state_lib
from jaxlab.train.mlm import MLMConfig, mask_batch, mask_spec, mlm_loss_sums, mlm_train_sums
from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.step import train_step

XLA_BLOCK_Q = 128  # attention_xla's default query block
PACKING_MODEL = EncoderConfig(vocab_size=264, d_model=128, n_layers=3, n_heads=4, head_dim=32, mlp_dim=256,
                              local_window=128)
WINDOW_MODEL = EncoderConfig(vocab_size=264, d_model=256, n_layers=3, n_heads=4, head_dim=64, mlp_dim=512,
                             local_window=128)
TINY = EncoderConfig(vocab_size=264, d_model=32, n_layers=3, n_heads=2, head_dim=16, mlp_dim=64, local_window=32)
TINY_PACKING = dataclasses.replace(TINY, n_layers=1)  # one global layer: the toy (a) compiles faster


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=64, help="documents in (a) (default 64)")
    p.add_argument("--max-difficulty", type=int, default=MAX_DIFFICULTY,
                   help=f"documents' difficulties are drawn from 1..this (default {MAX_DIFFICULTY}; lower: shorter)")
    p.add_argument("--batch", type=int, default=8, help="rows per step in (a) (default 8)")
    p.add_argument("--seq", type=int, default=2048, help="sequence length in (b) (default 2048)")
    p.add_argument("--window", type=int, default=128, help="local window in (b) (default 128, ModernBERT's)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds; the best is kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="a tiny encoder (tests)")
    p.add_argument("--machine", default="a shared 2-core CPU machine (other jobs running)",
                   help="how the machine is described in the table")
    p.add_argument("--out", help="write OUT.md and OUT.json")
    p.add_argument("--render", metavar="OUT.json", help="only rewrite OUT.md from the numbers of a finished run")
    return p


# ---------------------------------------------------------------- (a) packed vs padded

def documents(n: int, seed: int, max_difficulty: int = MAX_DIFFICULTY) -> list[str]:
    """``n`` document texts, difficulty drawn uniformly from 1..max_difficulty (mixed lengths)."""
    rng = np.random.default_rng(seed)
    return [render_document(rng, int(rng.integers(1, max_difficulty + 1))).text for _ in range(n)]


def padded_batches(texts: list[str], batch_size: int, seq_len: int) -> list[dict]:
    """One document per row ([BOS] + bytes, as packed), right-padded to ``seq_len``; the last
    batch filled up with all-padding rows."""
    rows = []
    for text in texts:
        ids_T = tokenize_record({"text": text})["inputs"]
        n = len(ids_T)
        if n > seq_len:
            raise ValueError(f"a document of {n} tokens does not fit {seq_len}")
        rows.append({"inputs": np.pad(ids_T, (0, seq_len - n), constant_values=BYTES.pad_id),
                     "segment_ids": (np.arange(seq_len) < n).astype(np.int32),
                     "positions": np.where(np.arange(seq_len) < n, np.arange(seq_len), 0).astype(np.int32)})
    empty = {"inputs": np.full(seq_len, BYTES.pad_id, np.int32), "segment_ids": np.zeros(seq_len, np.int32),
             "positions": np.zeros(seq_len, np.int32)}
    rows += [empty] * (-len(rows) % batch_size)
    return [{k: np.stack([r[k] for r in rows[i:i + batch_size]]) for k in rows[0]}
            for i in range(0, len(rows), batch_size)]


def packed_batches(texts: list[str], batch_size: int, seq_len: int) -> list[dict]:
    """The documents packed as ``train_mlm`` packs them (one pass, in order)."""
    ds = packed_lm_dataset([{"text": t} for t in texts], seq_len=seq_len, batch_size=batch_size, shuffle=False,
                           repeat=False)
    return [{k: b[k] for k in ("inputs", "segment_ids", "positions")} for b in ds]


def token_counts(batches: list[dict]) -> dict:
    seg = np.concatenate([b["segment_ids"] for b in batches])
    return {"rows": int(seg.shape[0]), "steps": len(batches), "real_tokens": int(np.sum(seg > 0)),
            "pad_tokens": int(np.sum(seg == 0))}


def _best_interleaved(arms: dict, repeats: int) -> dict:
    """{arm: best seconds}: every arm's ``run()`` once untimed (compilation), then ``repeats``
    rounds in which each arm runs once, timed."""
    for run in arms.values():
        run()
    best = {name: math.inf for name in arms}
    for _ in range(repeats):
        for name, run in arms.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_packing(cfg: EncoderConfig, texts: list[str], batch_size: int, repeats: int, seed: int) -> dict:
    seq_len = max(len(tokenize_record({"text": t})["inputs"]) for t in texts)
    mlm = MLMConfig(batch_size=batch_size, seq_len=max(seq_len, 4))
    spec = mask_spec(mlm, BYTES, cfg)
    optimizer = make_optimizer(OptimConfig(lr=1e-3, warmup_steps=0, schedule="constant"), 1)
    step = jax.jit(functools.partial(train_step, optimizer=optimizer, loss_sums_fn=functools.partial(
        mlm_train_sums, encoder_cfg=cfg, mlm=mlm, spec=spec)))
    data = {"padded": padded_batches(texts, batch_size, seq_len), "packed": packed_batches(texts, batch_size, seq_len)}
    counts = {name: token_counts(b) for name, b in data.items()}
    if counts["padded"]["real_tokens"] != counts["packed"]["real_tokens"]:
        raise AssertionError(f"the arms hold different real tokens: {counts}")
    params = encoder.init(cfg, jax.random.key(seed))
    states = {name: state_lib.create(params, optimizer, seed) for name in data}
    device = {name: [jax.device_put(b) for b in batches] for name, batches in data.items()}

    def arm(name):
        def run():
            state = states[name]
            for batch in device[name]:
                state, _ = step(state, batch)
            jax.block_until_ready(state.params)
            states[name] = state
        return run

    seconds = _best_interleaved({name: arm(name) for name in data}, repeats)
    rows = {name: {**counts[name], "seq_len": seq_len, "seconds": seconds[name],
                   "real_tokens_per_s": counts[name]["real_tokens"] / seconds[name],
                   "pad_fraction": counts[name]["pad_tokens"] / (counts[name]["rows"] * seq_len)}
            for name in data}
    return {"arms": rows, "docs": len(texts), "batch_size": batch_size, "seq_len": seq_len,
            "ratio_packed_over_padded": rows["packed"]["real_tokens_per_s"] / rows["padded"]["real_tokens_per_s"]}


# ---------------------------------------------------------------- (b) local/global vs all-global

def attention_pairs(T: int, window: int, layer_type: str) -> dict:
    """(query, key) pairs of one layer on one row of T tokens: ``visible`` (the mask's count) and
    ``computed`` by the CPU (XLA) path (module docstring)."""
    if layer_type == "global":
        return {"visible": T * T, "computed": T * T}
    w = window // 2 + 1  # the dispatcher's non-causal window (EncoderConfig.attention)
    visible = int(jnp.sum(visible_key_count(T, T, causal=False, window=w)))
    if T <= XLA_BLOCK_Q:
        computed = T * T
    else:
        computed = 0
        for start in range(0, T, XLA_BLOCK_Q):
            end = min(T, start + XLA_BLOCK_Q)
            lo, hi = key_range(start, end, T, causal=False, window=w, q_offset=0)
            computed += (end - start) * (hi - lo)
    return {"visible": visible, "computed": computed}


def dense_flops_per_token(cfg: EncoderConfig) -> int:
    """Forward matmul FLOPs per token outside attention: q, k, v, o projections and the GeGLU MLP
    of every layer, the MLM head's dense layer and its tied decoder."""
    hd = cfg.n_heads * cfg.head_dim
    per_layer = 2 * (4 * cfg.d_model * hd) + 2 * (3 * cfg.d_model * cfg.mlp_dim)
    return cfg.n_layers * per_layer + 2 * cfg.d_model * cfg.d_model + 2 * cfg.d_model * cfg.vocab_size


def bench_window(cfg: EncoderConfig, T: int, repeats: int, seed: int) -> dict:
    arms = {"local/global": cfg, "all-global": dataclasses.replace(cfg, layer_types=("global",) * cfg.n_layers)}
    mlm = MLMConfig(seq_len=T)
    rng = np.random.default_rng(seed)
    tokens_1T = rng.integers(0, 256, (1, T)).astype(np.int32)
    packed = {"inputs": tokens_1T, "segment_ids": np.ones_like(tokens_1T),
              "positions": np.arange(T, dtype=np.int32)[None]}
    batch = jax.device_put(mask_batch(jax.random.key(seed), packed, mlm=mlm, spec=mask_spec(mlm, BYTES, cfg)))
    params = encoder.init(cfg, jax.random.key(seed))
    runs, rows = {}, {}
    for name, c in arms.items():
        grad = jax.jit(jax.grad(lambda p, b, c=c: mlm_loss_sums(p, b, jax.random.key(0), encoder_cfg=c)["loss"]))
        runs[name] = lambda grad=grad: jax.block_until_ready(grad(params, batch))
        pairs = [attention_pairs(T, c.local_window, t) for t in c.types]
        per_pair = 4 * c.n_heads * c.head_dim
        rows[name] = {"layer_types": list(c.types),
                      "attention_pairs_visible": sum(p["visible"] for p in pairs),
                      "attention_pairs_computed": sum(p["computed"] for p in pairs),
                      "attention_gflops_fwd_bwd_visible": 3 * per_pair * sum(p["visible"] for p in pairs) / 1e9,
                      "attention_gflops_fwd_bwd_computed": 3 * per_pair * sum(p["computed"] for p in pairs) / 1e9,
                      "dense_gflops_fwd_bwd": 3 * dense_flops_per_token(c) * T / 1e9}
    seconds = _best_interleaved(runs, repeats)
    for name in arms:
        rows[name]["seconds"] = seconds[name]
    mixed, full = rows["local/global"], rows["all-global"]
    return {"seq_len": T, "window": cfg.local_window, "arms": rows,
            "time_ratio_mixed_over_global": mixed["seconds"] / full["seconds"],
            "attention_flops_ratio_computed": mixed["attention_gflops_fwd_bwd_computed"]
            / full["attention_gflops_fwd_bwd_computed"],
            "attention_flops_ratio_visible": mixed["attention_gflops_fwd_bwd_visible"]
            / full["attention_gflops_fwd_bwd_visible"]}


# ---------------------------------------------------------------- report

def markdown(result: dict) -> str:
    a, b, info = result["packing"], result["window"], result["info"]
    lines = [f"Encoder training on {info['machine']} ({info['cpus']} CPUs, jax {info['jax']}, float32, XLA "
             f"attention path); best of {info['repeats']} interleaved rounds after a warm-up, compile time "
             "excluded. Ratios from a shared machine are rough.", "",
             f"(a) {a['docs']} documents of mixed lengths, MLM train step (mask, forward, backward, AdamW), "
             f"{a['batch_size']} rows of {a['seq_len']} tokens per step, encoder {info['packing_model']}:", "",
             "| arm | rows | steps | real tokens | pad tokens | pad share | seconds / pass | real tokens/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in a["arms"].items():
        lines.append(f"| {name} | {r['rows']} | {r['steps']} | {r['real_tokens']:,} | {r['pad_tokens']:,} | "
                     f"{r['pad_fraction']:.0%} | {r['seconds']:.3f} | {r['real_tokens_per_s']:,.0f} |")
    lines += ["", f"Packed / padded real tokens per second: **{a['ratio_packed_over_padded']:.2f}x**. The padded "
              "arm pads every document to the longest; the packed arm's padding is the tail of its last row "
              "and the all-padding rows that fill its last batch.", "",
              f"(b) one row of {b['seq_len']} tokens, forward+backward of the MLM loss, local window "
              f"{b['window']}, encoder {info['window_model']}:", "",
              "| arm | layers | attention GFLOPs (computed) | attention GFLOPs (in window) | other GFLOPs | "
              "seconds |", "|---|---|---:|---:|---:|---:|"]
    for name, r in b["arms"].items():
        lines.append(f"| {name} | {', '.join(r['layer_types'])} | {r['attention_gflops_fwd_bwd_computed']:.2f} | "
                     f"{r['attention_gflops_fwd_bwd_visible']:.2f} | {r['dense_gflops_fwd_bwd']:.2f} | "
                     f"{r['seconds']:.3f} |")
    lines += ["", f"local/global / all-global: measured time **{b['time_ratio_mixed_over_global']:.2f}x**, "
              f"attention FLOPs {b['attention_flops_ratio_computed']:.2f}x as computed on CPU (query blocks "
              f"of {XLA_BLOCK_Q} over the keys their window reaches), "
              f"{b['attention_flops_ratio_visible']:.2f}x counting only the pairs inside the window; "
              f"{_total_ratio(b):.2f}x for all the step's matmul FLOPs (attention as computed + the rest). "
              "FLOPs: 4 H Dh per (query, key) pair forward, fwd+bwd = 3x forward."]
    return "\n".join(lines) + "\n"


def _total_ratio(window: dict) -> float:
    """Whole-step matmul FLOPs of local/global over all-global (attention as computed + the rest)."""
    mixed, full = window["arms"]["local/global"], window["arms"]["all-global"]
    return ((mixed["attention_gflops_fwd_bwd_computed"] + mixed["dense_gflops_fwd_bwd"])
            / (full["attention_gflops_fwd_bwd_computed"] + full["dense_gflops_fwd_bwd"]))


def _describe(cfg: EncoderConfig) -> str:
    return f"{cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads}x{cfg.head_dim} heads, mlp {cfg.mlp_dim}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render:
        path = Path(args.render)
        path.with_suffix(".md").write_text(markdown(json.loads(path.read_text())))
        return 0
    if not 1 <= args.max_difficulty <= MAX_DIFFICULTY:
        raise SystemExit(f"--max-difficulty must be in [1, {MAX_DIFFICULTY}], got {args.max_difficulty}")
    for name in ("docs", "batch", "seq", "window", "repeats"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.docs % args.batch:
        raise SystemExit(f"--docs ({args.docs}) must be a multiple of --batch ({args.batch}): the padded arm "
                         "then has no all-padding rows")
    packing_model = TINY_PACKING if args.tiny else PACKING_MODEL
    window_model = dataclasses.replace(TINY if args.tiny else WINDOW_MODEL, local_window=args.window)
    print("(a) packed vs padded ...", file=sys.stderr, flush=True)
    packing = bench_packing(packing_model, documents(args.docs, args.seed, args.max_difficulty), args.batch, args.repeats, args.seed)
    print(f"(b) local/global vs all-global at {args.seq} ...", file=sys.stderr, flush=True)
    window = bench_window(window_model, args.seq, args.repeats, args.seed)
    info = {"machine": args.machine, "cpus": os.cpu_count(), "jax": jax.__version__,
            "platform": platform.machine(), "repeats": args.repeats, "packing_model": _describe(packing_model),
            "window_model": _describe(window_model),
            "timed": "best of the interleaved rounds after one untimed warm-up per arm; compile time excluded"}
    info["max_difficulty"] = args.max_difficulty
    result = {"info": info, "packing": packing, "window": window}
    table = markdown(result)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(table)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
