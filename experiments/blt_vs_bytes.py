"""A Byte Latent Transformer against a byte-level transformer at matched training FLOPs, on clean
text and under character noise (Pagnoni et al. 2024, "Byte Latent Transformer: Patches Scale
Better Than Tokens"; jaxlab.models.blt).

The paper's argument: grouping bytes into entropy patches lets a BLT spend the FLOPs a byte
model spends per byte on a larger latent transformer that runs once per patch, and its byte
level encoder makes it robust to noise in the spelling. Per seed, on the embedded corpus
(Python's own documentation, jaxlab.train.byte_lm.corpus_splits: chunks split 95/5 into train
and validation by their hash):

  1. an entropy model (the BLT config's ``entropy_model``, a small byte transformer) is trained
     for ``entropy_steps`` steps; theta is the (1 - 1/k) quantile of its H(x_t) on train
     windows (jaxlab.train.byte_lm.entropy_threshold), so entropy patches average about k bytes;
  2. the BLT (entropy patches from the frozen entropy model, ``model.max_patches`` latent slots
     per row: the latent transformer runs on P < T slots) and the byte transformer ``bytes`` are
     trained on the same batches for ``steps`` AdamW steps;
  3. both are scored on the same ``eval_windows`` validation windows (drawn once, the same for
     every seed): bits per byte of each window's next-byte predictions;
  4. noise: in each validation window, each ASCII letter is hit with probability ``noise``; a
     hit letter swaps with the next byte when that is a letter too (a transposition typo), else
     its case flips. Degradation = bits per byte on the noised window - on the clean window,
     both over the same targets: the bytes the noise left unchanged (a corrupted byte is not
     predictable from any context, so it is not scored).

Training FLOPs (jaxlab.train.mfu, matmuls, 3x the forward): the BLT's steps x bytes x (3 x
its forward per byte at the entropy patches' mean length on the validation windows + one
forward of the frozen entropy model per byte), plus the entropy model's own training; the byte
transformer's steps x bytes x 3 x its forward per byte. The default sizes match them: a
256-wide, 3-layer latent transformer over patches against a 128-wide, 4-layer byte transformer.

Claim (fixed before any run; CLAIM_VERSION 1), both parts:
  (a) at matched training FLOPs the BLT's validation bits per byte is within the byte
      transformer's or better: effect_a = bpb_blt - bpb_bytes, held when the 95% nested paired
      bootstrap interval (seeds, then windows) lies below MARGIN = 0.05 bits per byte (a
      non-inferiority margin, 2.5% of the ~2 bits per byte both reach), not held when it lies
      at or above it;
  (b) under character noise the BLT degrades less: effect_b = degradation_bytes -
      degradation_blt, held when its interval lies above 0, not held when at or below 0.
Held when both parts hold, not held when either does not (jaxlab.stats.all_parts).
Preconditions: (1) matched training FLOPs: the BLT's total within 10% of the byte
transformer's (every seed); (2) both learned the text: mean clean bits per byte below 4.0 (half
a uniform guess over bytes); (3) the noise touched the text: at least 2% of the validation
bytes changed.

Reported beside the verdict (the paper's edge case): the entropy patches' length distribution
on validation text, and on repeated text (a window's first half written twice), where the
paper's observation predicts much longer patches in the second copy, as an entropy model that
has seen the first copy finds it predictable.

    jaxlab run experiments/blt_vs_bytes.py --preset smoke --seeds 2        # tests: about a minute
    jaxlab run experiments/blt_vs_bytes.py --preset paper --seeds 3 --publish

The paper preset: windows of 128 bytes, batches of 16, 500 steps for each model, 128 validation
windows; measured 23 minutes for 3 seeds on 2 cores shared with other work (a BLT step about
0.4 s, a byte-transformer step about 0.3 s).
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

CLAIM = ("At matched training FLOPs a Byte Latent Transformer's bits per byte is within a byte-level "
         "transformer's (or better), and under character noise (swaps, case flips) it degrades less.")
CLAIM_VERSION = 1
REPORT_KEYS = ["bpb_blt", "bpb_bytes", "degradation_blt", "degradation_bytes", "flops_ratio", "mean_patch_len"]
MARGIN = 0.05            # part (a): bits per byte
FLOPS_TOLERANCE = 0.10   # precondition (1)
LEARNED_BPB = 4.0        # precondition (2)
MIN_NOISED = 0.02        # precondition (3)

PRESETS = {
    "smoke": {"seq_len": 32, "batch_size": 8, "steps": 30, "entropy_steps": 30, "eval_windows": 16,
              "threshold_windows": 16, "model.d_model": 32, "model.n_layers": 1, "model.n_heads": 2,
              "model.head_dim": 16, "model.mlp_dim": 64, "model.d_local": 32, "model.local_mlp_dim": 64,
              "model.local_window": 16, "model.ngram_table_size": 512, "model.max_patches": 16,
              "model.entropy_d_model": 32, "model.entropy_layers": 1, "bytes.d_model": 32, "bytes.n_layers": 2,
              "bytes.head_dim": 16, "bytes.mlp_dim": 64},
    "paper": {},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "blt_vs_bytes"
    model: blt.Config = blt.Config(d_model=256, n_layers=3, n_heads=4, head_dim=64, mlp_dim=640, d_local=64,
                                   local_heads=2, local_mlp_dim=192, encoder_layers=1, decoder_layers=1,
                                   local_window=64, ngram_table_size=8192, max_patches=64, entropy_d_model=64,
                                   entropy_layers=2, entropy_heads=2)
    bytes: transformer.Config = transformer.Config(vocab_size=264, d_model=128, n_layers=4, n_heads=2,
                                                   n_kv_heads=2, head_dim=64, mlp_dim=384)
    patch_size: int = 4          # k: the entropy patches' target mean length
    seq_len: int = 128
    batch_size: int = 16
    steps: int = 500
    entropy_steps: int = 500
    lr: float = 3e-3
    warmup_steps: int = 30
    eval_windows: int = 128
    threshold_windows: int = 64
    noise: float = 0.05
    eval_seed: int = 1234        # the validation windows and their noise: the same for every seed
    seed: int = 0

    def __post_init__(self):
        if self.patch_size < 1 or self.seq_len < 2 or self.steps < 1 or self.entropy_steps < 1:
            raise ValueError("patch_size, steps and entropy_steps must be >= 1 and seq_len >= 2")
        if not 0.0 < self.noise < 1.0:
            raise ValueError(f"noise must be in (0, 1), got {self.noise}")
        if self.bytes.vocab_size != self.model.vocab_size:
            raise ValueError(f"bytes.vocab_size ({self.bytes.vocab_size}) must be the BLT's "
                             f"({self.model.vocab_size})")


def get_config() -> Config:
    return Config()


def char_noise(x_WT: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``x_WT`` with each ASCII letter hit with probability ``fraction``: a hit letter swaps
    with the next byte when that is a letter too, else its case flips (x ^ 0x20). Left to
    right; a byte moved by a swap is not hit again."""
    out = np.array(x_WT, dtype=np.int32, copy=True)
    is_letter = lambda b: (65 <= b <= 90) or (97 <= b <= 122)
    hit_WT = rng.random(out.shape) < fraction
    for row, hits in zip(out, hit_WT):
        t = 0
        while t < len(row):
            if hits[t] and is_letter(row[t]):
                if t + 1 < len(row) and is_letter(row[t + 1]):
                    row[t], row[t + 1] = row[t + 1], row[t]
                    t += 2
                    continue
                row[t] ^= 0x20
            t += 1
    return out


def training_flops(cfg: Config, mean_patch_len: float) -> dict:
    """Total training matmul FLOPs of each side (module docstring)."""
    per_step = cfg.batch_size * cfg.seq_len
    ent = mfu.train_flops_per_token(cfg.model.entropy_model, cfg.seq_len)
    patched = dataclasses.replace(cfg.model, patching="entropy")
    blt_total = (cfg.steps * per_step * mfu.blt_train_flops_per_byte(patched, cfg.seq_len, mean_patch_len)
                 + cfg.entropy_steps * per_step * ent)
    bytes_total = cfg.steps * per_step * mfu.train_flops_per_token(cfg.bytes, cfg.seq_len)
    return {"blt": blt_total, "bytes": bytes_total, "entropy_model_training": cfg.entropy_steps * per_step * ent}


def repeated_patch_lengths(starts_fn, windows_WT: np.ndarray, half: int) -> dict:
    """The paper's edge case: each window's first ``half`` bytes followed by the same bytes again;
    the entropy patches' lengths in the first copy and in the second (a patch is counted in the
    copy where it starts)."""
    rows = np.concatenate([windows_WT[:, :half], windows_WT[:, :half], windows_WT[:, :1]], axis=1)
    starts_BT = np.asarray(starts_fn(rows))
    out = {}
    for name, lo, hi in (("first", 0, half), ("second", half, 2 * half)):
        lengths = []
        for r in starts_BT:
            idx = np.flatnonzero(r)
            ends = np.append(idx[1:], 2 * half)
            lengths += [int(e - s) for s, e in zip(idx, ends) if lo <= s < hi]
        out[name] = lengths
    return out


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    t0 = time.perf_counter()
    data = byte_lm.comparison_windows(seed=cfg.seed, eval_seed=cfg.eval_seed, steps=max(cfg.steps, cfg.entropy_steps),
                                      batch_size=cfg.batch_size, seq_len=cfg.seq_len, eval_windows=cfg.eval_windows)
    clean = data.val_WT
    noised = char_noise(clean, cfg.noise, data.eval_rng)
    kept_WT = (noised[:, 1:] == clean[:, 1:]).astype(np.float32)  # targets the noise left alone
    e_key, b_key, t_key = jax.random.split(jax.random.key(cfg.seed), 3)
    fit = functools.partial(byte_lm.train, batches_NBT=data.batches_NBT, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                            progress=progress)

    # 1. the entropy model and theta
    ent_cfg = cfg.model.entropy_model
    ent_params, ent_losses, theta, starts = byte_lm.train_entropy_patcher(
        ent_cfg, e_key, data, steps=cfg.entropy_steps, k=cfg.patch_size, threshold_windows=cfg.threshold_windows,
        lr=cfg.lr, warmup_steps=cfg.warmup_steps, progress=progress)
    none = byte_lm.starts_fn("none")

    # 2. the BLT (patches from outside, so its params hold no entropy model) and the byte transformer
    model = dataclasses.replace(cfg.model, patching="static")
    arms = {"blt": ("blt", model, starts, blt.init(model, b_key)),
            "bytes": ("transformer", cfg.bytes, none, transformer.init(cfg.bytes, t_key))}
    trained, losses, train_s = {}, {"entropy_model": ent_losses}, {}
    for name, (kind, m, fn, init) in arms.items():
        t1 = time.perf_counter()
        trained[name], losses[name] = fit(kind, m, init, fn, steps=cfg.steps, desc=name)
        train_s[name] = time.perf_counter() - t1

    # 3-4. clean and noised scores, over every target and over the targets the noise kept
    ev = cfg.batch_size
    score = {name: {split: byte_lm.window_bpb(kind, m, trained[name], fn, windows, ev, mask)
                    for split, windows, mask in (("clean", clean, None), ("clean_kept", clean, kept_WT),
                                                 ("noised_kept", noised, kept_WT))}
             for name, (kind, m, fn, _) in arms.items()}

    val_starts = np.asarray(starts(clean))
    lengths = np.asarray(patching.patch_lengths(val_starts, cfg.seq_len)).ravel()
    lengths = lengths[lengths > 0]
    mean_len = float(lengths.mean())
    patches_per_row = val_starts.sum(axis=1)
    flops = training_flops(cfg, mean_len)
    repeated = repeated_patch_lengths(starts, clean, cfg.seq_len // 2)
    noise_starts = np.asarray(starts(noised))
    results = {
        "patch_size": cfg.patch_size, "theta": theta, "mean_patch_len": mean_len,
        "patch_len_hist": np.bincount(lengths, minlength=2 * cfg.patch_size + 1)[1:].tolist(),
        "mean_patch_len_noised": float(cfg.seq_len * len(noise_starts) / noise_starts.sum()),
        "repeated_mean_patch_len": {k: float(np.mean(v)) for k, v in repeated.items()},
        "repeated_patch_lens": repeated,
        "rows_over_max_patches": float(np.mean(patches_per_row > blt.num_patch_slots(model, cfg.seq_len))),
        "noised_fraction": float(np.mean(noised != clean)),
        "window_bpb": {name: [float(v) for v in s["clean"]] for name, s in score.items()},
        "window_degradation": {name: [float(v) for v in s["noised_kept"] - s["clean_kept"]]
                               for name, s in score.items()},
        "flops": flops, "flops_ratio": flops["blt"] / flops["bytes"],
        "params": {"blt": blt.count_params(trained["blt"]), "bytes": transformer.count_params(trained["bytes"]),
                   "entropy_model": transformer.count_params(ent_params)},
        "final_train_loss": {name: v[-1] for name, v in losses.items()},
        "train_s": train_s,
        "wall_s": 0.0,
    }
    for name in arms:
        results[f"bpb_{name}"] = float(np.mean(results["window_bpb"][name]))
        results[f"degradation_{name}"] = float(np.mean(results["window_degradation"][name]))
    _plot(results, workdir)
    results["wall_s"] = time.perf_counter() - t0
    rep = results["repeated_mean_patch_len"]
    results["report"] = (
        f"theta = {theta:.3f} nats; entropy patches' mean length {mean_len:.2f} on validation text, "
        f"{results['mean_patch_len_noised']:.2f} on noised text; on repeated text {rep['first']:.2f} in the "
        f"first copy and {rep['second']:.2f} in the second. Rows with more patches than latent slots: "
        f"{results['rows_over_max_patches']:.1%}. Training FLOPs BLT / bytes: {results['flops_ratio']:.3f}.\n\n"
        "| model | params | val bpb | degradation under noise (bits/byte) | train s |\n|---|---|---|---|---|\n"
        + "\n".join(f"| {name} | {results['params'][name]:,} | {results['bpb_' + name]:.4f} | "
                    f"{results['degradation_' + name]:+.4f} | {results['train_s'][name]:.0f} |" for name in arms)
        + "\n\n![patch lengths and scores](blt_vs_bytes.png)\n")
    return results


def _plot(results: dict, workdir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.5))
    hist = results["patch_len_hist"]
    ax.bar(np.arange(1, len(hist) + 1), np.asarray(hist) / max(1, sum(hist)), alpha=0.6,
           label="validation text")
    second = np.bincount(results["repeated_patch_lens"]["second"], minlength=len(hist) + 1)[1:]
    ax.bar(np.arange(1, len(second) + 1), second / max(1, second.sum()), alpha=0.6,
           label="second copy of repeated text")
    ax.set_xlabel("entropy patch length (bytes)")
    ax.set_ylabel("fraction of patches")
    ax.set_title(f"mean {results['mean_patch_len']:.2f} vs {results['repeated_mean_patch_len']['second']:.2f}")
    ax.legend(fontsize=8)
    names = ["blt", "bytes"]
    x = np.arange(len(names))
    bx.bar(x - 0.2, [results[f"bpb_{n}"] for n in names], 0.4, label="clean bpb")
    bx.bar(x + 0.2, [results[f"bpb_{n}"] + results[f"degradation_{n}"] for n in names], 0.4,
           label="clean bpb + degradation under noise")
    bx.set_xticks(x, names)
    bx.set_ylabel("bits per byte")
    bx.set_title(f"training FLOPs BLT / bytes = {results['flops_ratio']:.2f}")
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(workdir) / "blt_vs_bytes.png", dpi=100)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    bpb = {n: np.array([r["window_bpb"][n] for r in per_seed]) for n in ("blt", "bytes")}
    deg = {n: np.array([r["window_degradation"][n] for r in per_seed]) for n in ("blt", "bytes")}
    ratios = [r["flops_ratio"] for r in per_seed]
    learned = max(float(v.mean()) for v in bpb.values())
    noised = min(r["noised_fraction"] for r in per_seed)
    preconditions = [
        ("matched training FLOPs", all(abs(q - 1.0) <= FLOPS_TOLERANCE for q in ratios),
         f"BLT / byte transformer training FLOPs {', '.join(f'{q:.3f}' for q in ratios)} "
         f"(needs within {FLOPS_TOLERANCE:.0%} of 1)"),
        ("both learned the text", learned < LEARNED_BPB,
         f"mean bpb BLT {bpb['blt'].mean():.3f}, bytes {bpb['bytes'].mean():.3f} (needs < {LEARNED_BPB})"),
        ("the noise touched the text", noised >= MIN_NOISED,
         f"{noised:.1%} of validation bytes changed (needs >= {MIN_NOISED:.0%})"),
    ]
    a = stats.paired_bootstrap_interval(bpb["blt"], bpb["bytes"])
    b = stats.paired_bootstrap_interval(deg["bytes"], deg["blt"])
    over = f"over {a['seeds']} seeds x {a['problems']} windows"
    part_a = stats.decide(a["effect"], a["low"], a["high"], threshold=MARGIN, direction="less",
                          preconditions=preconditions,
                          test=f"nested paired bootstrap of bpb_blt - bpb_bytes {over}")
    part_b = stats.decide(b["effect"], b["low"], b["high"], threshold=0.0, preconditions=preconditions,
                          test=f"nested paired bootstrap of degradation_bytes - degradation_blt {over}")
    return stats.all_parts({"(a) matched-FLOPs bpb": part_a, "(b) noise robustness": part_b})
