"""Length extrapolation of softmax vs softplus attention (Gao & Spratling, "Softplus Attention
with Re-weighting Boosts Length Extrapolation in Large Language Models", 2025).

Two byte-level decoder LMs, identical but for the attention, are trained at one sequence length
L and evaluated on validation text at L, 2L, 4L, 8L and 16L:

  softmax   standard softmax attention
  softplus  LSSA: softmax's exp replaced by Softplus, scores scaled by log(n) (n = the number
            of keys a query sees), l1-normalised. Evaluated as trained (power 1) and with the
            re-weighting a^p / sum a^p switched on at evaluation only (LSSAR; no retraining),
            for each p in ``eval_reweight_powers`` (the first one decides the claim).

Evaluation rows are single contiguous pieces of text (rows that pack two documents are left
out), so a row of 16L tokens tests a context 16 times longer than any seen in training. The
data config uses long chunks (16 KiB) and a 15% validation split so that the validation
documents are long enough. The loss is the mean next-byte cross-entropy (nats/token) over all
positions of those rows.

    jaxlab run experiments/softplus_length_extrapolation.py
    jaxlab run experiments/softplus_length_extrapolation.py --set lm.train.seq_len=128 \\
        --set lm.train.loop.steps=3000 --set eval_tokens=131072          # larger, for a GPU

The claim holds when the re-weighted softplus model's loss at every longer length stays within
``FLAT`` (10%) of its loss at L, while the softmax model's does not.
"""

import dataclasses
import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.data import EOS_ID, PAD_ID
from jaxlab.data.pipeline import DataConfig, lm_dataset
from jaxlab.models import transformer
from jaxlab.samplers import SampleConfig
from jaxlab.train.batch import apply_batch
from jaxlab.train.checkpoint import load_params
from jaxlab.train.config import ExperimentConfig, TrainConfig
from jaxlab.train.fit import LoopConfig
from jaxlab.train.loop import train
from jaxlab.train.optim import OptimConfig

CLAIM = ("Softplus attention with re-weighting keeps the validation loss nearly flat (within 10%) "
         "from the training length up to 16x that length, unlike softmax attention.")
FLAT = 1.10  # "nearly flat": loss at every longer length <= FLAT x the loss at the training length


@dataclasses.dataclass(frozen=True)
class Config:
    lm: ExperimentConfig
    eval_multipliers: tuple[int, ...] = (1, 2, 4, 8, 16)
    eval_reweight_powers: tuple[float, ...] = ()  # softplus only: re-weighting at evaluation
    eval_tokens: int = 16384  # validation tokens per evaluated length (at most)
    eval_batch_tokens: int = 4096  # tokens per evaluation batch


def _lm_config(name: str, kind: str) -> ExperimentConfig:
    model = transformer.Config(vocab_size=264, d_model=128, n_layers=3, n_heads=2, n_kv_heads=2,
                               head_dim=64, mlp_dim=384, scan_unroll=3, attention_kind=kind)
    return ExperimentConfig(
        name=name, model=model,
        data=DataConfig(chunk_bytes=16384, val_percent=15.0),
        optim=OptimConfig(lr=3e-3, warmup_steps=60, schedule="cosine", final_lr_fraction=0.1,
                          weight_decay=0.1, clip_norm=1.0),
        train=TrainConfig(batch_size=16, seq_len=64, eval_batches=8,
                          loop=LoopConfig(steps=600, eval_every=200, checkpoint_every=600, log_every=20)),
        sample=SampleConfig(max_new_tokens=64, temperature=0.8, top_p=0.95, stop_tokens=(EOS_ID,),
                            pad_id=PAD_ID),
    )


def get_config() -> dict[str, Config]:
    return {
        "softmax": Config(lm=_lm_config("softmax", "softmax")),
        "softplus": Config(lm=_lm_config("softplus", "softplus"), eval_reweight_powers=(2.0, 4.0)),
    }


def _restore_params(cfg: ExperimentConfig, train_dir: Path) -> dict:
    """The final params of the run in ``train_dir`` (its newest checkpoint)."""
    del cfg
    return load_params(train_dir)[1]


@functools.partial(jax.jit, static_argnames="model_cfg")
def _row_nll(params, batch, model_cfg):
    """Summed next-token negative log-likelihood of each row [B] and its token count [B]."""
    logits = apply_batch(params, batch, model_cfg)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
    return jnp.sum(nll * batch["mask"], axis=1), jnp.sum(batch["mask"], axis=1)


def evaluate_length(params, model_cfg: transformer.Config, data_cfg: DataConfig, seq_len: int, *,
                    max_tokens: int, batch_tokens: int) -> dict:
    """Mean loss over validation rows of ``seq_len`` tokens that are one contiguous piece."""
    batch_size = max(1, batch_tokens // seq_len)
    total, count, rows = 0.0, 0.0, 0
    for batch in lm_dataset(data_cfg, "validation", seq_len=seq_len, batch_size=batch_size,
                            repeat=False):
        single = np.all(batch["segment_ids"] == 1, axis=1) & np.all(batch["mask"] > 0, axis=1)
        if not single.any():
            continue
        sums, counts = jax.device_get(_row_nll(params, {k: jnp.asarray(v) for k, v in batch.items()},
                                               model_cfg))
        total += float(np.sum(sums[single]))
        count += float(np.sum(counts[single]))
        rows += int(single.sum())
        if count >= max_tokens:
            break
    return {"loss": total / count if count else math.nan, "rows": rows}


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    lm = cfg.lm
    train_results = train(lm, workdir / "train", progress=progress)
    params = _restore_params(lm, workdir / "train")
    results = {"attention": lm.model.attention_kind, "train_seq_len": lm.train.seq_len,
               "steps": lm.train.loop.steps, "params": train_results["params"],
               "train_loss": train_results["train_loss"], "train_wall_s": train_results["train_wall_s"]}
    powers = [1.0] + ([float(p) for p in cfg.eval_reweight_powers]
                      if lm.model.attention_kind == "softplus" else [])
    lines = ["| length | " + " | ".join("loss" if p == 1.0 else f"loss, p={p:g}" for p in powers) + " |",
             "|---" * (len(powers) + 1) + "|"]
    for m in cfg.eval_multipliers:
        seq_len = m * lm.train.seq_len
        cells = []
        for p in powers:
            model_cfg = dataclasses.replace(lm.model, attention_reweight_power=p)
            ev = evaluate_length(params, model_cfg, lm.data, seq_len, max_tokens=cfg.eval_tokens,
                                 batch_tokens=cfg.eval_batch_tokens)
            suffix = "" if p == 1.0 else f"_p{p:g}"
            results[f"loss_x{m}{suffix}"] = ev["loss"]
            results[f"rows_x{m}"] = ev["rows"]
            cells.append(f"{ev['loss']:.4f}")
        lines.append(f"| {seq_len} ({m}x) | " + " | ".join(cells) + " |")
    for p in powers:
        suffix = "" if p == 1.0 else f"_p{p:g}"
        base = results[f"loss_x{cfg.eval_multipliers[0]}{suffix}"]
        results[f"worst_ratio{suffix}"] = max(results[f"loss_x{m}{suffix}"] / base
                                              for m in cfg.eval_multipliers)
    if len(powers) > 1:  # the first re-weighting power decides the claim
        results["reweight_power"] = powers[1]
        results["reweighted_worst_ratio"] = results[f"worst_ratio_p{powers[1]:g}"]
    results["report"] = (f"Validation loss (nats/token) of the {lm.model.attention_kind} model trained "
                         f"at {lm.train.seq_len} tokens:\n\n" + "\n".join(lines) + "\n")
    return results


REPORT_KEYS = ["loss_x1", "loss_x2", "loss_x4", "loss_x8", "loss_x16", "worst_ratio",
               "loss_x1_p2", "loss_x16_p2", "worst_ratio_p2", "loss_x16_p4", "worst_ratio_p4"]


def check(results: dict) -> tuple[bool, str]:
    softmax, softplus = results["softmax"], results["softplus"]
    if "reweighted_worst_ratio" not in softplus:
        return False, "the softplus variant was evaluated without re-weighting (eval_reweight_powers)"
    lssar, lssa, sm = softplus["reweighted_worst_ratio"], softplus["worst_ratio"], softmax["worst_ratio"]
    held = lssar <= FLAT and sm > FLAT
    text = (f"largest loss ratio (a longer length vs the training length, up to 16x): softplus "
            f"with re-weighting (p={softplus['reweight_power']:g}) {lssar:.3f}, softplus without "
            f"{lssa:.3f}, softmax {sm:.3f}; nearly flat means <= {FLAT:.2f}")
    return held, text


def _curves(results: dict) -> dict[str, list[tuple[int, float]]]:
    """{label: [(multiplier, loss), ...]} for every evaluated (variant, power)."""
    curves = {}
    for name, r in results.items():
        for key, value in r.items():
            if not key.startswith("loss_x"):
                continue
            mult, _, power = key[len("loss_x"):].partition("_p")
            label = name if not power else f"{name}, re-weighted p={power}"
            curves.setdefault(label, []).append((int(mult), float(value)))
    return {k: sorted(v) for k, v in curves.items()}


def summarize(results: dict, workdir: Path) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _curves(results)
    mults = sorted({m for c in curves.values() for m, _ in c})
    lines = ["## Validation loss by evaluation length\n",
             "| length | " + " | ".join(curves) + " |", "|---" * (len(curves) + 1) + "|"]
    for m in mults:
        cells = [f"{dict(c).get(m, math.nan):.4f}" for c in curves.values()]
        lines.append(f"| {m}x | " + " | ".join(cells) + " |")
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, c in curves.items():
        ax.plot([m for m, _ in c], [v for _, v in c], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("evaluation length / training length")
    ax.set_ylabel("validation loss (nats/token)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(workdir / "length_extrapolation.png", dpi=120)
    plt.close(fig)
    return "\n".join(lines) + "\n\n![loss by length](length_extrapolation.png)\n"
