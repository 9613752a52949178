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
forward matmul FLOPs per byte of each model (jaxlab.train.mfu; the entropy model not counted;
``experiments/blt_vs_bytes.py`` compares a BLT and a byte transformer at matched training
FLOPs); every model's bits per byte on the same windows with
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
9.8 minutes per seed, 27 minutes for the 3 seeds (smoke: about 1 minute for 2 seeds). The BLTs here give the latent transformer one slot per
byte (``max_patches`` 0: P = T, empty slots masked), so their wall time does not fall with
longer patches: the FLOPs per byte reported count the patches, not the slots.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.models import blt, patching, transformer
from jaxlab.train import byte_lm, mfu

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


def _noised(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    hit = rng.random(x.shape) < fraction
    return np.where(hit, rng.choice(LETTERS, size=x.shape), x).astype(np.int32)


def flops_per_byte(cfg: blt.Config, seq_len: int, mean_patch_len: float) -> dict:
    """Forward matmul FLOPs per byte (:mod:`jaxlab.train.mfu`): the BLT at ``mean_patch_len``
    (its entropy model not counted) and the byte transformer the size of its latent one."""
    return {"blt": mfu.blt_forward_flops_per_byte(cfg, seq_len, mean_patch_len),
            "bytes": mfu.forward_flops_per_token(cfg.latent, seq_len)}


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    t0 = time.perf_counter()
    data = byte_lm.comparison_windows(seed=cfg.seed, eval_seed=cfg.eval_seed, steps=max(cfg.steps, cfg.entropy_steps),
                                      batch_size=cfg.batch_size, seq_len=cfg.seq_len, eval_windows=cfg.eval_windows)
    val_windows = data.val_WT
    noisy_windows = _noised(val_windows, cfg.noise, data.eval_rng)
    k_key, b_key, t_key = jax.random.split(jax.random.key(cfg.seed), 3)
    fit = functools.partial(byte_lm.train, batches_NBT=data.batches_NBT, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                            progress=progress)

    # 1-2. the entropy model; theta: the (1 - 1/k) quantile of H(x_t), t >= 1, on train windows
    ent_cfg = cfg.model.entropy_model
    ent_params, ent_losses, theta, entropy_starts = byte_lm.train_entropy_patcher(
        ent_cfg, k_key, data, steps=cfg.entropy_steps, k=cfg.patch_size, threshold_windows=cfg.threshold_windows,
        lr=cfg.lr, warmup_steps=cfg.warmup_steps, progress=progress)
    none = byte_lm.starts_fn("none")

    # 3. the two BLTs: same init and batches, different patch starts; the entropy model frozen
    model = dataclasses.replace(cfg.model, patching="static", patch_size=cfg.patch_size)
    starts = {"static": byte_lm.starts_fn("static", k=cfg.patch_size), "entropy": entropy_starts}
    init = blt.init(model, b_key)
    trained, losses = {}, {"entropy_model": ent_losses}
    for name in ("static", "entropy"):
        trained[name], losses[name] = fit("blt", model, init, starts[name], steps=cfg.steps,
                                          desc=f"BLT, {name} patches")
    # the byte-level transformer the size of the latent one (informational)
    bytes_cfg = cfg.model.latent
    trained["bytes"], losses["bytes"] = fit("transformer", bytes_cfg, transformer.init(bytes_cfg, t_key), none,
                                            steps=cfg.steps, desc="byte transformer")
    arms = {"static": ("blt", model, starts["static"]), "entropy": ("blt", model, starts["entropy"]),
            "bytes": ("transformer", bytes_cfg, none)}

    # 4. evaluation on the shared validation windows
    ev = cfg.batch_size
    rows = {name: byte_lm.window_bpb(kind, m, trained[name], fn, val_windows, ev)
            for name, (kind, m, fn) in arms.items()}
    noisy = {name: float(byte_lm.window_bpb(kind, m, trained[name], fn, noisy_windows, ev).mean())
             for name, (kind, m, fn) in arms.items()}
    lengths = np.asarray(patching.patch_lengths(starts["entropy"](val_windows), cfg.seq_len)).ravel()
    lengths = lengths[lengths > 0]
    mean_len = float(lengths.mean())
    flops = flops_per_byte(cfg.model, cfg.seq_len, mean_len)
    hist = np.bincount(lengths, minlength=2 * cfg.patch_size + 1)[1:]
    results = {
        "patch_size": cfg.patch_size, "theta": theta, "mean_patch_len": mean_len, "patch_len_hist": hist.tolist(),
        "bpb_static": float(rows["static"].mean()), "bpb_entropy": float(rows["entropy"].mean()),
        "bpb_bytes": float(rows["bytes"].mean()),
        "window_bpb": {name: [float(v) for v in r] for name, r in rows.items()},
        "noisy_bpb": noisy, "noise": cfg.noise,
        "flops_per_byte": {"blt_static": flops_per_byte(cfg.model, cfg.seq_len, cfg.patch_size)["blt"],
                           "blt_entropy": flops["blt"], "bytes": flops["bytes"]},
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
