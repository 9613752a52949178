"""Runs candidate quickstart settings one after another and prints their validation bits per
byte and wall time: how the quickstart's model size and step count were chosen.

    python scripts/sweep_quickstart.py [--out runs/sweep] [--only NAME ...]

Each candidate is a full ``jaxlab run experiments/quickstart.py --set ...`` in its own
process (one at a time, so each has the whole machine). Re-running resumes finished runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> overrides of experiments/quickstart.py (whose model is the winner, d128-L3). Step
# counts are sized from each model's measured step time on 2 cores so that training takes about
# 4 minutes; warm-up is a tenth of the steps.
D256_L4 = ["model.d_model=256", "model.n_layers=4", "model.n_heads=4", "model.n_kv_heads=4",
           "model.mlp_dim=768", "model.scan_unroll=4"]
CANDIDATES = {
    "d256-L4": [*D256_L4, "train.loop.steps=320"],
    "d192-L4": [*D256_L4, "model.d_model=192", "model.n_heads=3", "model.n_kv_heads=3",
                "model.mlp_dim=512", "train.loop.steps=580"],
    "d128-L4": [*D256_L4, "model.d_model=128", "model.n_heads=2", "model.n_kv_heads=2",
                "model.mlp_dim=384", "train.loop.steps=770"],
    "d256-L2": [*D256_L4, "model.n_layers=2", "model.scan_unroll=2", "train.loop.steps=550"],
    "d128-L6": [*D256_L4, "model.d_model=128", "model.n_heads=4", "model.n_kv_heads=4", "model.head_dim=32",
                "model.mlp_dim=384", "model.n_layers=6", "model.scan_unroll=6", "train.loop.steps=480"],
    # Second round, around the best of the first (d128-L4).
    "d128-L4-lr6e-3": [*D256_L4, "model.d_model=128", "model.n_heads=2", "model.n_kv_heads=2",
                       "model.mlp_dim=384", "optim.lr=6e-3", "train.loop.steps=770"],
    "d128-L3": [*D256_L4, "model.d_model=128", "model.n_heads=2", "model.n_kv_heads=2",
                "model.mlp_dim=384", "model.n_layers=3", "model.scan_unroll=3", "train.loop.steps=1100"],
    "d96-L4": [*D256_L4, "model.d_model=96", "model.n_heads=2", "model.n_kv_heads=2", "model.head_dim=48",
               "model.mlp_dim=288", "train.loop.steps=950"],
    "d128-L4-b8": [*D256_L4, "model.d_model=128", "model.n_heads=2", "model.n_kv_heads=2",
                   "model.mlp_dim=384", "train.batch_size=8", "train.loop.steps=1400"],
    # Third round, around the best of the second (d128-L3).
    "d128-L3-b8": [*D256_L4, "model.d_model=128", "model.n_heads=2", "model.n_kv_heads=2", "model.mlp_dim=384",
                   "model.n_layers=3", "model.scan_unroll=3", "train.batch_size=8", "train.loop.steps=1800"],
    "d160-L3": [*D256_L4, "model.d_model=160", "model.n_heads=2", "model.n_kv_heads=2", "model.head_dim=80",
                "model.mlp_dim=480", "model.n_layers=3", "model.scan_unroll=3", "train.loop.steps=790"],
    "d128-L3-mlp512": [*D256_L4, "model.d_model=128", "model.n_heads=2", "model.n_kv_heads=2",
                       "model.mlp_dim=512", "model.n_layers=3", "model.scan_unroll=3",
                       "train.loop.steps=1000"],
}


def _steps(overrides: list[str]) -> int:
    return int(next(o for o in overrides if o.startswith("train.loop.steps=")).split("=")[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "runs" / "sweep"))
    parser.add_argument("--only", nargs="*", help="candidate names to run")
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every candidate")
    args = parser.parse_args()
    rows = []
    for name, overrides in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        workdir = Path(args.out) / name
        t0 = time.perf_counter()
        steps = _steps(overrides)
        schedule = [f"optim.warmup_steps={steps // 10}", f"train.loop.eval_every={steps // 4}",
                    f"train.loop.checkpoint_every={steps // 4}"]
        cmd = [sys.executable, "-m", "jaxlab", "run", str(REPO / "experiments" / "quickstart.py"),
               "--workdir", str(workdir), "--no-progress", "--set", *overrides, *schedule, *args.set]
        subprocess.run(cmd, check=True, cwd=REPO)
        wall = time.perf_counter() - t0
        r = json.loads((workdir / "results.json").read_text())
        rows.append((name, r["params"], r["steps"], r["tokens_seen"], r["train_wall_s"], wall,
                     r["tokens_per_s"], r["val_bpb"]))
        print(f"{name}: val bpb {r['val_bpb']:.4f}", flush=True)
    print("\n| candidate | params | steps | tokens | train s | total s | tokens/s | val bits/byte |")
    print("|---|---|---|---|---|---|---|---|")
    for name, params, steps, tokens, train_s, wall, tok_s, bpb in rows:
        train_s = "resumed" if train_s is None else f"{train_s:.0f}"
        print(f"| {name} | {params:,} | {steps} | {tokens:,} | {train_s} | {wall:.0f} | "
              f"{tok_s or 0:,.0f} | {bpb:.4f} |")


if __name__ == "__main__":
    main()
