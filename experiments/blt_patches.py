"""Entropy patches vs fixed-size patches in a Byte Latent Transformer (Pagnoni et al. 2024,
"Byte Latent Transformer: Patches Scale Better Than Tokens"; jaxlab.models.blt).

Per seed, on the embedded corpus (Python's own documentation, jaxlab.data.corpus: chunks split
95/5 into train and validation by their hash):

  1. an entropy model, a small byte transformer (the BLT config's ``entropy_model``), is trained
     for ``entropy_steps`` steps on random train windows;
  2. the global threshold theta is the (1 - 1/k) quantile of H(x_t) (the entropy of the model's
     prediction of byte t, jaxlab.models.patching) over ``threshold_windows`` train windows, so
     that about one byte in k starts a patch: the entropy patches' mean length is about k, the
     static patch size;
  3. two BLTs, identical (same init, same batches, same steps) but for the patching, are
     trained: "static" (a patch every k bytes) and "entropy" (global rule with theta, the
     entropy model frozen: it is not among the trained params). Both arms' starts are computed
     outside the BLT and passed to ``blt.apply(patch_starts_BT=...)`` (the boundaries of the
     config's "static" and "entropy" patchings), so the two arms share one compiled step;
  4. every model is scored on the same ``eval_windows`` validation windows (drawn once, the same
     for every seed): bits per byte of each window's ``seq_len`` next-byte predictions.

Also reported, not part of the claim: a byte-level transformer the size of the latent
transformer, trained the same way (its forward work per byte is about k times the latent's);
rough forward FLOPs per byte of each model (2 x the parameters a byte or patch passes through,
attention's score products left out); every model's bits per byte on the same windows with
``noise`` of their bytes replaced by random letters (the paper's noise-robustness idea: the
increase over clean text); the entropy patches' length distribution on validation.

Claim (fixed before any run; CLAIM_VERSION 1): entropy patching gives lower validation bits per
byte than static patching with the same mean patch length. Effect = mean over seeds and
validation windows of bpb_static - bpb_entropy; held when its 95% nested paired bootstrap
interval (seeds, then windows) lies above 0, not held when it lies at or below 0, else
inconclusive. Preconditions: (1) matched patch sizes: the entropy patches' mean length on the
validation windows is within 15% of k (for every seed); (2) both BLTs learned the text: their
mean validation bits per byte is below 4.0 (half of a uniform guess over bytes).

    jaxlab run experiments/blt_patches.py --preset smoke --seeds 2        # tests: seconds to minutes
    jaxlab run experiments/blt_patches.py --preset paper --seeds 3 --publish

The paper preset is the paper's comparison shrunk to 2 CPU cores (the paper: 8B-parameter
models over trillions of bytes, patch sizes 4.5 to 8): windows of 128 bytes, batches of 16,
500 steps for each model (the entropy model, the two BLTs, the byte transformer), 128
validation windows, patch size k = 4. Sized from step times measured before the claim's runs
(a BLT step 0.32 s, a byte-transformer step 0.16 s on the 2 loaded cores); measured: 8.6 to
9.8 minutes per seed, 27 minutes for the 3 seeds (smoke: about 1 minute for 2 seeds). The implementation gives the latent transformer one slot per byte (P = T; empty slots
are masked), so on this hardware wall time does not fall with longer patches: the FLOPs per
byte reported are what a packed implementation would spend.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import stats
from jaxlab.data.corpus import default_documents, split_chunks
from jaxlab.models import blt, patching, transformer
from jaxlab.train.optim import OptimConfig, make_optimizer

CLAIM = ("Entropy patching gives a Byte Latent Transformer lower validation bits per byte than "
         "static patching with the same mean patch length.")
CLAIM_VERSION = 1
REPORT_KEYS = ["bpb_static", "bpb_entropy", "bpb_bytes", "mean_patch_len", "theta"]
PATCH_TOLERANCE = 0.15   # precondition (1)
LEARNED_BPB = 4.0        # precondition (2)
LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)

PRESETS = {
    "smoke": {"seq_len": 32, "batch_size": 8, "steps": 40, "entropy_steps": 40, "eval_windows": 16,
              "threshold_windows": 16, "model.d_model": 32, "model.n_layers": 1, "model.head_dim": 16,
              "model.mlp_dim": 64, "model.d_local": 32, "model.local_mlp_dim": 64, "model.local_window": 16,
              "model.ngram_table_size": 512, "model.entropy_d_model": 32, "model.entropy_layers": 1},
    "paper": {"seq_len": 128, "batch_size": 16, "steps": 500, "entropy_steps": 500, "eval_windows": 128,
              "threshold_windows": 64},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "blt_patches"
    model: blt.Config = blt.Config(d_model=128, n_layers=2, n_heads=2, head_dim=64, mlp_dim=384, d_local=64,
                                   local_heads=2, local_mlp_dim=192, encoder_layers=1, decoder_layers=1,
                                   local_window=64, ngram_table_size=8192, entropy_d_model=64, entropy_layers=2,
                                   entropy_heads=2)
    patch_size: int = 4          # k: the static patch size and the entropy patches' target mean length
    seq_len: int = 128
    batch_size: int = 16
    steps: int = 600
    entropy_steps: int = 600
    lr: float = 3e-3
    warmup_steps: int = 30
    eval_windows: int = 128
    threshold_windows: int = 64
    noise: float = 0.05
    eval_seed: int = 1234        # the validation windows: the same for every seed
    seed: int = 0

    def __post_init__(self):
        if self.patch_size < 1 or self.seq_len < 2 or self.steps < 1 or self.entropy_steps < 1:
            raise ValueError("patch_size, steps and entropy_steps must be >= 1 and seq_len >= 2")
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"noise must be in [0, 1), got {self.noise}")


def get_config() -> Config:
    return Config()


def _corpus() -> tuple[np.ndarray, np.ndarray]:
    train, val = split_chunks(default_documents(), chunk_bytes=2048, val_percent=5.0)
    as_bytes = lambda chunks: np.frombuffer("".join(chunks).encode("utf-8"), np.uint8).astype(np.int32)
    return as_bytes(train), as_bytes(val)


def _windows(data: np.ndarray, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    starts = rng.integers(0, len(data) - length, size=n)
    return np.stack([data[s:s + length] for s in starts])


def _noised(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    hit = rng.random(x.shape) < fraction
    return np.where(hit, rng.choice(LETTERS, size=x.shape), x).astype(np.int32)


def _nll_BT(logits_BTV, targets_BT):
    logp = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, targets_BT[..., None], axis=-1)[..., 0]


def _forward(kind: str, model, params, starts_BT, x_BT):
    """Logits of model ``kind``: "blt" (a BLT with the patch starts ``starts_BT``) or
    "transformer" (the entropy model and the byte-level baseline)."""
    if kind == "blt":
        return blt.apply(params, x_BT, model, patch_starts_BT=starts_BT)
    return transformer.apply(params, x_BT, model)


# Module-level jitted functions with the configs static: both BLT arms (their patch starts are
# an input) and every seed after the first reuse the compiles.
@functools.partial(jax.jit, static_argnames=("kind", "model", "optim", "steps"))
def _step(params, opt_state, rows_BT, starts_BT, *, kind, model, optim, steps):
    opt = make_optimizer(optim, steps)

    def loss(p):
        return jnp.mean(_nll_BT(_forward(kind, model, p, starts_BT, rows_BT[:, :-1]), rows_BT[:, 1:]))

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


@functools.partial(jax.jit, static_argnames=("kind", "model"))
def _window_bpb(params, rows_BT, starts_BT, *, kind, model):
    nll = _nll_BT(_forward(kind, model, params, starts_BT, rows_BT[:, :-1]), rows_BT[:, 1:])
    return jnp.mean(nll, axis=1) / math.log(2)


@functools.partial(jax.jit, static_argnames="model")
def _byte_entropy(params, x_BT, *, model):
    return patching.byte_entropy(patching.next_byte_entropy(params, model, x_BT))


def _starts_fn(patches, ent_params, ent_cfg, theta, k: int):
    """rows [B, T+1] -> patch starts [B, T] of the inputs: "static" every k bytes, "entropy"
    the global rule H(x_t) > theta of the frozen entropy model (the config's "entropy"
    patching, computed outside the trained BLT so both arms share one compile)."""
    if patches == "static":
        return lambda rows: patching.patch_starts_static(jnp.broadcast_to(jnp.arange(rows.shape[1] - 1),
                                                                          (rows.shape[0], rows.shape[1] - 1)), k)
    if patches == "entropy":
        return lambda rows: patching.patch_starts_global(_byte_entropy(ent_params, jnp.asarray(rows[:, :-1]),
                                                                       model=ent_cfg), theta)
    return lambda rows: None


def _train(kind: str, model, params, starts_fn, cfg: Config, steps: int, batches: np.ndarray):
    """AdamW (jaxlab.train.optim) on the mean next-byte NLL; ``batches`` [>= steps, B, T+1]."""
    optim = OptimConfig(lr=cfg.lr, warmup_steps=min(cfg.warmup_steps, steps // 2))
    opt_state = make_optimizer(optim, steps).init(params)
    losses = []
    for rows in batches[:steps]:
        params, opt_state, value = _step(params, opt_state, jnp.asarray(rows), starts_fn(rows), kind=kind,
                                         model=model, optim=optim, steps=steps)
        losses.append(float(value))
    return params, losses


def _bpb_P(kind: str, model, params, starts_fn, windows: np.ndarray, batch: int) -> np.ndarray:
    """[P] bits per byte of each window's next-byte predictions."""
    return np.concatenate([np.asarray(_window_bpb(params, jnp.asarray(w), starts_fn(w), kind=kind, model=model))
                           for w in (windows[i:i + batch] for i in range(0, len(windows), batch))])


def flops_per_byte(cfg: blt.Config, mean_patch_len: float) -> dict:
    """Rough forward FLOPs per byte, 2 x parameters used: local encoder and decoder blocks, the
    byte head and cross-attention projections per byte; latent blocks once per patch."""
    count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))
    shapes = jax.eval_shape(lambda k: blt.init(cfg, k), jax.random.key(0))
    local = sum(count(shapes[k]) for k in ("encoder", "decoder", "patch_cross", "byte_cross", "head"))
    latent = count(shapes["latent"]) + count(shapes["to_latent"]) + count(shapes["from_latent"])
    byte_tf = count(jax.eval_shape(lambda k: transformer.init_layers(cfg.latent, k), jax.random.key(0)))
    return {"blt": 2 * (local + latent / mean_patch_len), "bytes": 2 * (byte_tf + cfg.d_model * cfg.vocab_size)}


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    del progress
    t0 = time.perf_counter()
    train_bytes, val_bytes = _corpus()
    rng = np.random.default_rng(cfg.seed)
    L = cfg.seq_len + 1
    batches = _windows(train_bytes, max(cfg.steps, cfg.entropy_steps) * cfg.batch_size, L, rng).reshape(
        -1, cfg.batch_size, L)
    eval_rng = np.random.default_rng(cfg.eval_seed)
    val_windows = _windows(val_bytes, cfg.eval_windows, L, eval_rng)
    noisy_windows = _noised(val_windows, cfg.noise, eval_rng)
    k_key, b_key, t_key = jax.random.split(jax.random.key(cfg.seed), 3)

    # 1. the entropy model
    ent_cfg = cfg.model.entropy_model
    none = _starts_fn("none", None, None, None, 0)
    ent_params, ent_losses = _train("transformer", ent_cfg, transformer.init(ent_cfg, k_key), none, cfg,
                                    cfg.entropy_steps, batches)

    # 2. theta: the (1 - 1/k) quantile of H(x_t), t >= 1, on train windows
    sample = _windows(train_bytes, cfg.threshold_windows, cfg.seq_len, rng)
    H_train = np.asarray(_byte_entropy(ent_params, jnp.asarray(sample), model=ent_cfg))[:, 1:]
    theta = float(np.quantile(H_train, 1.0 - 1.0 / cfg.patch_size))

    # 3. the two BLTs: same init and batches, different patch starts; the entropy model frozen
    model = dataclasses.replace(cfg.model, patching="static", patch_size=cfg.patch_size)
    starts = {name: _starts_fn(name, ent_params, ent_cfg, jnp.float32(theta), cfg.patch_size)
              for name in ("static", "entropy")}
    init = blt.init(model, b_key)
    trained, losses = {}, {"entropy_model": ent_losses}
    for name in ("static", "entropy"):
        trained[name], losses[name] = _train("blt", model, init, starts[name], cfg, cfg.steps, batches)
    # the byte-level transformer the size of the latent one (informational)
    bytes_cfg = cfg.model.latent
    trained["bytes"], losses["bytes"] = _train("transformer", bytes_cfg, transformer.init(bytes_cfg, t_key), none,
                                               cfg, cfg.steps, batches)
    arms = {"static": ("blt", model, starts["static"]), "entropy": ("blt", model, starts["entropy"]),
            "bytes": ("transformer", bytes_cfg, none)}

    # 4. evaluation on the shared validation windows
    ev = cfg.batch_size
    rows = {name: _bpb_P(kind, m, trained[name], fn, val_windows, ev) for name, (kind, m, fn) in arms.items()}
    noisy = {name: float(_bpb_P(kind, m, trained[name], fn, noisy_windows, ev).mean())
             for name, (kind, m, fn) in arms.items()}
    starts_val = np.asarray(starts["entropy"](val_windows))
    lengths = np.concatenate([np.diff(np.append(np.flatnonzero(r), cfg.seq_len)) for r in starts_val])
    mean_len = float(lengths.mean())
    flops = flops_per_byte(cfg.model, mean_len)
    hist = np.bincount(lengths, minlength=2 * cfg.patch_size + 1)[1:]
    results = {
        "patch_size": cfg.patch_size, "theta": theta, "mean_patch_len": mean_len, "patch_len_hist": hist.tolist(),
        "bpb_static": float(rows["static"].mean()), "bpb_entropy": float(rows["entropy"].mean()),
        "bpb_bytes": float(rows["bytes"].mean()),
        "window_bpb": {name: [float(v) for v in r] for name, r in rows.items()},
        "noisy_bpb": noisy, "noise": cfg.noise,
        "flops_per_byte": {"blt_static": flops_per_byte(cfg.model, cfg.patch_size)["blt"], "blt_entropy": flops["blt"],
                           "bytes": flops["bytes"]},
        "params": {"blt": blt.count_params(init), "bytes": transformer.count_params(trained["bytes"]),
                   "entropy_model": transformer.count_params(ent_params)},
        "final_train_loss": {name: v[-1] for name, v in losses.items()},
        "wall_s": time.perf_counter() - t0,
    }
    _plot(results, workdir)
    results["report"] = (
        f"theta = {theta:.3f} nats; entropy patches' mean length {mean_len:.2f} (static: {cfg.patch_size}).\n\n"
        "| model | val bpb | noised val bpb | ~FLOPs/byte |\n|---|---|---|---|\n"
        + "\n".join(f"| {name} | {results['bpb_' + name]:.4f} | {noisy[name]:.4f} | "
                    f"{results['flops_per_byte']['blt_' + name if name != 'bytes' else 'bytes']:.3g} |"
                    for name in ("static", "entropy", "bytes"))
        + "\n\n![entropy patch lengths](blt_patches.png)\n")
    return results


def _plot(results: dict, workdir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = results["patch_len_hist"]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(np.arange(1, len(hist) + 1), hist)
    ax.set_xlabel("entropy patch length (bytes)")
    ax.set_ylabel("patches")
    ax.set_title(f"mean {results['mean_patch_len']:.2f}, theta {results['theta']:.2f}")
    fig.tight_layout()
    fig.savefig(Path(workdir) / "blt_patches.png", dpi=100)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    static_SP = np.array([run["window_bpb"]["static"] for run in per_seed])
    entropy_SP = np.array([run["window_bpb"]["entropy"] for run in per_seed])
    r = stats.paired_bootstrap_interval(static_SP, entropy_SP)
    lens = [run["mean_patch_len"] for run in per_seed]
    target = float(per_seed[0]["patch_size"])
    worst = max(abs(m - target) / target for m in lens)
    learned = max(float(static_SP.mean()), float(entropy_SP.mean()))
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=f"nested paired bootstrap of bpb_static - bpb_entropy over {r['seeds']} seeds x {r['problems']} windows",
        preconditions=[
            ("matched patch sizes", worst <= PATCH_TOLERANCE,
             f"entropy mean patch lengths {', '.join(f'{m:.2f}' for m in lens)} vs {target:g} "
             f"(needs within {PATCH_TOLERANCE:.0%})"),
            ("both BLTs learned the text", learned < LEARNED_BPB,
             f"mean bpb static {static_SP.mean():.3f}, entropy {entropy_SP.mean():.3f} (needs < {LEARNED_BPB})"),
        ])
