"""Quality per second: the validation bits per byte a recipe reaches in a fixed wall-clock budget,
with jaxlab and with its PyTorch twin (eager and ``torch.compile``), in one run.

Each variant runs in a process of its own. The budget counts from the moment the parent starts
that process, so interpreter start-up, imports, data, model set-up and compilation are inside
it; training stops when the next step would not end within it, with the learning-rate schedule
sized to the budget the same way on both sides (:mod:`jaxlab.train.budget`; the PyTorch side
imports that module, which needs no JAX). Then, outside the budget, each variant scores the
same validation windows: bits per byte = summed next-byte NLL / (ln 2 x bytes).

Data: a text file read as bytes, the first 90% for training and the last 10% for validation
(``--eval-windows`` windows of ``seq_len + 1`` bytes from its start). Training batches are
random windows of the training part, the same for every variant (drawn from the seed and the
step). The recipe (model shape, sequence length, batch, learning rate, warm-up) is a set of
``--set key=value`` over :data:`RECIPE`; ``--sweep`` runs jaxlab alone over a grid of recipes
in the same budget (what chose the defaults; rerun it on your machine).

    python scripts/bench_recipe.py --data ../shared/data/tinyshakespeare.txt          # 60 s each
    python scripts/bench_recipe.py --data FILE --budget 30 --variants jaxlab,torch --set lr=0.006
    python scripts/bench_recipe.py --data FILE --sweep --out results/bench_recipe/sweep.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("jaxlab", "torch", "torch_compile")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A training recipe for a byte-level decoder (the quickstart model's shape by default)."""

    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 2
    head_dim: int = 64
    mlp_dim: int = 384
    seq_len: int = 256
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 30
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    schedule: str = "cosine"
    max_steps: int = 100_000

    def model_fields(self) -> dict:
        return dict(vocab_size=256, d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                    n_kv_heads=self.n_heads, head_dim=self.head_dim, mlp_dim=self.mlp_dim)


RECIPE = Recipe()
# The sweep's grid (jaxlab only): shape, context and learning rate for short budgets.
SWEEP = {"d_model": (96, 128, 192), "n_layers": (2, 3, 4), "seq_len": (128, 256), "lr": (3e-3, 6e-3)}


def with_settings(recipe: Recipe, settings: list[str]) -> Recipe:
    """``recipe`` with ``key=value`` settings applied (typed by the field; unknown keys refused)."""
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    changes = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"error: unknown recipe setting {item!r}; settings are {sorted(fields)}")
        kind = type(getattr(RECIPE, key))
        try:
            changes[key] = kind(value)
        except ValueError:
            raise SystemExit(f"error: {key}: expected a {kind.__name__}, got {value!r}") from None
    return dataclasses.replace(recipe, **changes)


def parse_grid(items: list[str]) -> dict[str, tuple]:
    """``["d_model=96,128", ...]`` -> ``{"d_model": ("96", "128"), ...}`` (values typed later by
    :func:`with_settings`); an unknown field or an empty list of values is an error."""
    fields = {f.name for f in dataclasses.fields(Recipe)}
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or key not in fields or not values.strip(","):
            raise SystemExit(f"error: --grid {item!r} is not KEY=V1,V2 with KEY one of {sorted(fields)}")
        grid[key] = tuple(v for v in values.split(",") if v)
    return grid


# --------------------------------------------------------------------------- data (no framework)


def load_bytes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) uint8 arrays: the first 90% of the file's bytes and the rest."""
    data = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8)
    if data.size < 10_000:
        raise SystemExit(f"error: {path} has {data.size} bytes; the benchmark needs at least 10,000")
    cut = int(0.9 * data.size)
    return data[:cut], data[cut:]


def train_batch(train: np.ndarray, recipe: Recipe, seed: int, step: int) -> dict:
    """Step ``step``'s batch: random windows of ``seq_len + 1`` training bytes (the same for
    every variant), as inputs / targets [B, T] int32."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, train.size - recipe.seq_len - 1, recipe.batch_size)
    rows = np.stack([train[s:s + recipe.seq_len + 1] for s in starts]).astype(np.int32)
    return {"inputs": rows[:, :-1], "targets": rows[:, 1:]}


def eval_windows(val: np.ndarray, recipe: Recipe, n: int) -> np.ndarray:
    """[n, seq_len + 1] consecutive validation windows from the start (fewer if val is short)."""
    w = recipe.seq_len + 1
    n = min(n, val.size // w)
    return val[:n * w].reshape(n, w).astype(np.int32)


# --------------------------------------------------------------------------- children


def seconds_left(deadline: float) -> float:
    """What is left of the budget now (a child calls it once its imports and data are ready)."""
    return deadline - time.time()


def run_jaxlab(recipe: Recipe, train: np.ndarray, windows: np.ndarray, deadline: float, seed: int,
               workdir: Path) -> dict:
    import functools

    import jax
    import jax.numpy as jnp

    from jaxlab.models import transformer
    from jaxlab.train import sharding as shd
    from jaxlab.train.fit import LoopConfig, fit
    from jaxlab.train.lm import lm_eval_sums, lm_loss_sums
    from jaxlab.train.optim import OptimConfig

    cfg = transformer.Config(**recipe.model_fields(), scan_unroll=recipe.n_layers)
    B, T = recipe.batch_size, recipe.seq_len
    full = {"mask": np.ones((B, T), np.float32), "segment_ids": np.ones((B, T), np.int32),
            "positions": np.broadcast_to(np.arange(T, dtype=np.int32), (B, T)).copy()}

    class Source:
        uses_params = False

        def next(self, params, step):
            return {**train_batch(train, recipe, seed, step), **full}, {}

        def get_state(self):
            return {}

        def set_state(self, state):
            pass

    optim = OptimConfig(lr=recipe.lr, warmup_steps=recipe.warmup_steps, schedule=recipe.schedule,
                        final_lr_fraction=recipe.final_lr_fraction, weight_decay=recipe.weight_decay,
                        clip_norm=recipe.clip_norm)
    budget_s = seconds_left(deadline)
    if budget_s <= 0:
        return {"error": f"set-up used the whole budget ({-budget_s:.1f} s over)"}
    result = fit(workdir, name="recipe", loop=LoopConfig(steps=recipe.max_steps, seed=seed, log_every=50,
                                                          eval_every=recipe.max_steps,
                                                          checkpoint_every=recipe.max_steps,
                                                          max_seconds=budget_s),
                 optim=optim, mesh=shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1]),
                 init_params=functools.partial(transformer.init, cfg), param_axes=transformer.param_axes,
                 loss_sums_fn=functools.partial(lm_loss_sums, model_cfg=cfg), source=Source(), progress=False)
    trained_at = time.time()
    eval_fn = jax.jit(functools.partial(lm_eval_sums, model_cfg=cfg, byte_vocab=256))
    nll = count = 0.0
    for i in range(0, len(windows), B):
        rows = windows[i:i + B]
        n, t = rows.shape[0], rows.shape[1] - 1
        batch = {"inputs": rows[:, :-1], "targets": rows[:, 1:], "mask": np.ones((n, t), np.float32),
                 "segment_ids": np.ones((n, t), np.int32),
                 "positions": np.broadcast_to(np.arange(t, dtype=np.int32), (n, t)).copy()}
        sums = jax.device_get(eval_fn(result.params, batch, jax.random.key(0)))
        nll, count = nll + float(sums["byte_nll"]), count + float(sums["byte_count"])
    return {"steps": int(result.state.step), "trained_at": trained_at, "bpb": nll / count / math.log(2),
            "train_loss": result.last("train/loss"), "jax": jax.__version__,
            "threads": os.cpu_count(), "eval_bytes": int(count)}


def run_torch(recipe: Recipe, train: np.ndarray, windows: np.ndarray, deadline: float, seed: int,
              compiled: bool) -> dict:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO / "scripts"))
    import _torch_twin as twin

    from jaxlab.train import budget

    torch.manual_seed(seed)
    model = twin.TorchTransformer(twin.TwinConfig(**recipe.model_fields()))
    opt_cfg = twin.TwinOptim(lr=recipe.lr, weight_decay=recipe.weight_decay, clip_norm=recipe.clip_norm)
    optimizer = twin.make_optimizer(model, opt_cfg)
    forward_loss = torch.compile(twin.loss_fn) if compiled else twin.loss_fn
    B, T = recipe.batch_size, recipe.seq_len
    mask = torch.ones(B, T)
    max_seconds = seconds_left(deadline)
    if max_seconds <= 0:
        return {"error": f"set-up used the whole budget ({-max_seconds:.1f} s over)"}
    clock, loss, step = budget.Clock(), float("nan"), 0
    for step in range(1, recipe.max_steps + 1):
        timing = clock.timing(step, max_seconds=max_seconds, cap=recipe.max_steps)
        lr = budget.lr_at(recipe, budget.horizon(step, **timing), step - 1)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = {k: torch.from_numpy(v).long() for k, v in train_batch(train, recipe, seed, step).items()}
        loss = float(twin.train_step(model, optimizer, {**batch, "mask": mask}, opt_cfg.clip_norm,
                                     forward_loss=forward_loss))
        if budget.is_last(step, **timing):
            break
    trained_at = time.time()
    nll = count = 0.0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(windows), B):
            rows = torch.from_numpy(windows[i:i + B]).long()
            logits = model(rows[:, :-1]).float()
            nll += float(F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="sum"))
            count += rows[:, 1:].numel()
    return {"steps": step, "trained_at": trained_at, "bpb": nll / count / math.log(2), "train_loss": loss,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "eval_bytes": int(count)}


def child_main(args) -> None:
    recipe = Recipe(**json.loads(args.recipe_json))
    train, val = load_bytes(Path(args.data))
    windows = eval_windows(val, recipe, args.eval_windows)
    deadline = args.t0 + args.budget
    with tempfile.TemporaryDirectory() as tmp:
        if args.child == "jaxlab":
            out = run_jaxlab(recipe, train, windows, deadline, args.seed, Path(tmp) / "run")
        else:
            out = run_torch(recipe, train, windows, deadline, args.seed, compiled=args.child == "torch_compile")
    out["train_wall_s"] = out.pop("trained_at", time.time()) - args.t0 if "error" not in out else None
    Path(args.child_out).write_text(json.dumps(out))


# --------------------------------------------------------------------------- parent


def run_variant(variant: str, recipe: Recipe, args) -> dict:
    """One variant in a fresh process; its budget starts now."""
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "out.json"
        t0 = time.time()
        proc = subprocess.run(
            [sys.executable, __file__, "--child", variant, "--t0", repr(t0), "--budget", str(args.budget),
             "--recipe-json", json.dumps(dataclasses.asdict(recipe)), "--data", str(args.data),
             "--eval-windows", str(args.eval_windows), "--seed", str(args.seed), "--child-out", str(out_path)],
            capture_output=True, text=True, cwd=REPO, timeout=args.budget * 4 + 600)
        if proc.returncode != 0 or not out_path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            return {"variant": variant, "error": " | ".join(tail)[-800:] or f"exit {proc.returncode}"}
        return {"variant": variant, **json.loads(out_path.read_text())}


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    print("| variant | recipe | steps | train wall (s) | val bits/byte |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | {r.get('recipe', '')} | failed: {r['error'][:120]} | | |")
        else:
            print(f"| {r['variant']} | {r.get('recipe', '')} | {r['steps']} | {r['train_wall_s']:.1f} | "
                  f"{r['bpb']:.3f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "tinyshakespeare.txt")
    p.add_argument("--budget", type=float, default=60.0, help="seconds per variant, whole process")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--set", nargs="*", default=[], dest="settings", metavar="KEY=VALUE")
    p.add_argument("--sweep", action="store_true", help="jaxlab alone over the SWEEP grid")
    p.add_argument("--grid", nargs="+", default=None, metavar="KEY=V1,V2",
                   help="with --sweep: sweep only these recipe fields over these values (the rest "
                        "as the recipe), e.g. --grid d_model=96,128 seq_len=128,256")
    p.add_argument("--eval-windows", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the rows and machine as JSON")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    p.add_argument("--recipe-json", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    if not args.data.is_file():
        print(f"error: no data file {args.data} (give one with --data)", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        print(f"error: unknown variants {unknown}; variants are {list(VARIANTS)}", file=sys.stderr)
        return 2
    recipe = with_settings(RECIPE, args.settings)
    load_bytes(args.data)  # refuse a too-short file before starting anything
    if args.grid and not args.sweep:
        print("error: --grid needs --sweep", file=sys.stderr)
        return 2
    if args.sweep:
        grid = SWEEP if not args.grid else parse_grid(args.grid)
        runs = [(with_settings(recipe, [f"{k}={v}" for k, v in zip(grid, values)]), "jaxlab")
                for values in itertools.product(*grid.values())]
    else:
        runs = [(recipe, v) for v in variants]
    rows = []
    for i, (r, variant) in enumerate(runs, 1):
        label = ", ".join(f"{k}={getattr(r, k)}" for k in dataclasses.asdict(r)
                          if getattr(r, k) != getattr(RECIPE, k))
        print(f"[{i}/{len(runs)}] {variant} {label or 'default recipe'} ...", file=sys.stderr, flush=True)
        rows.append({**run_variant(variant, r, args), "recipe": label or "default"})
    from jaxlab.train.mfu import cpu_model

    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg": os.getloadavg(),
               "python": platform.python_version()}
    print_table(rows, f"{args.budget:g} s per variant, whole process; {args.data.name}; "
                      f"{machine['cpu']} ({machine['cores']} cores)")
    ok = [r for r in rows if "error" not in r]
    if not args.sweep and ok:
        torch_rows = [r for r in ok if r["variant"] != "jaxlab"]
        jl = next((r for r in ok if r["variant"] == "jaxlab"), None)
        if jl and torch_rows:
            best = min(torch_rows, key=lambda r: r["bpb"])
            print(f"\njaxlab {jl['bpb']:.3f} bits/byte vs the better PyTorch variant ({best['variant']}) "
                  f"{best['bpb']:.3f}: {'lower' if jl['bpb'] < best['bpb'] else 'not lower'}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"budget_s": args.budget, "data": args.data.name, "machine": machine,
                                        "recipe": dataclasses.asdict(recipe), "rows": rows}, indent=2) + "\n")
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
