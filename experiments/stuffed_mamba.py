"""Stuffed Mamba (Chen et al. 2024, "Stuffed Mamba: State Collapse and State Capacity of
RNN-Based Long-Context Modeling"): a Mamba trained on short sequences degrades beyond its
training length, and training-free changes to its recurrence remove the degradation.

Setting: a byte-level Mamba (:mod:`jaxlab.models.mamba`) trained on windows of ``train_len``
bytes of Python's embedded documentation (the first 90% of its bytes), then run from a zero
state over ``n_eval`` windows of ``eval_mult * train_len`` bytes of the held-out last 10%.
Per window and position t, the next-byte loss (nats) is recorded under four runs of the same
params (:mod:`jaxlab.analysis.state_collapse`):

    none       the model as trained
    forget     every decay alpha_t -> alpha_t ** 2 (half the memory time-scale)
    normalize  each channel's state norm capped at the largest norm the model reaches within
               the training length on the same windows (positions < train_len, no fix)
    window     the output reads the state of the last train_len inputs only

Excess of a run on a window = mean loss over positions [4 * train_len, eval_len) minus mean
loss over positions [train_len / 2, train_len): positive when the model does worse far beyond
its training length than near its end.

Claim (version 1; code, thresholds and fix settings fixed before any run): the model as
trained collapses beyond its training length (its excess is above 0.05 nats/byte), and each
of the three fixes removes the collapse (its excess is at most 0.05). Verdict: the excess of
"none" decides by the three-way rule (held: the 95% interval, nested bootstrap over seeds and
windows, lies above 0.05; not held: at or below); the claim is held only when that part is
held and every fix's interval lies at or below 0.05, not held when the "none" part is not
held or some fix's interval lies above 0.05, inconclusive otherwise. Precondition: the model
learned the text (mean loss within the training length below the held-out unigram entropy,
so that "beyond" is measured on a model that uses its context).

Reported and plotted: loss against position for each run, and the largest channel state norm
against position (state collapse shows as a norm that keeps growing past train_len).

    jaxlab run experiments/stuffed_mamba.py --preset smoke --seeds 2     # tests, seconds
    jaxlab run experiments/stuffed_mamba.py --preset paper --seeds 3 --publish   # ~5 min a seed, 2 cores

The paper preset is the paper's setting shrunk to this CPU: 2 layers of d_model 64 and state 16,
trained 1000 steps of 32 windows of 64 bytes (about 4.5 minutes a seed), run to 1024 bytes
(16x), instead of Mamba-2 models of 130M+ parameters trained at 8K and run to 1M tokens.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.analysis.state_collapse import StateFix, position_nll, run_with_fix
from jaxlab.data.corpus import default_documents
from jaxlab.models import mamba
from jaxlab.tasks import recall

CLAIM = ("A Mamba trained on short windows collapses beyond its training length (its loss far "
         "beyond exceeds its loss near the end of the training length by more than 0.05 nats/byte), "
         "and each training-free fix (stronger forgetting, state normalisation, sliding-window "
         "state) removes the excess (at most 0.05).")
CLAIM_VERSION = 1
REPORT_KEYS = ["excess_none", "excess_forget", "excess_normalize", "excess_window", "inside_loss",
               "unigram_entropy", "train_s"]
MARGIN = 0.05          # nats/byte: the excess that counts as a collapse
FORGET_SCALE = 2.0     # "forget": alpha -> alpha ** 2
FIXES = ("none", "forget", "normalize", "window")
PRESETS = {
    "smoke": {"train_len": 16, "eval_mult": 8, "d_model": 16, "d_state": 4, "steps": 20, "batch_size": 8,
              "n_eval": 4},
    "paper": {"train_len": 64, "eval_mult": 16, "d_model": 64, "d_state": 16, "steps": 1000, "batch_size": 32,
              "n_eval": 32},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "stuffed_mamba"
    train_len: int = 64
    eval_mult: int = 16
    d_model: int = 64
    n_layers: int = 2
    d_state: int = 16
    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-3
    n_eval: int = 32
    seed: int = 0

    def __post_init__(self):
        if self.train_len < 2 or self.train_len % 2:
            raise ValueError(f"train_len must be an even number >= 2, got {self.train_len}")
        if self.eval_mult < 5:
            raise ValueError(f"eval_mult must be >= 5 (the excess reads positions from 4 x train_len), "
                             f"got {self.eval_mult}")
        for key in ("steps", "batch_size", "n_eval", "d_model", "d_state", "n_layers"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")

    @property
    def eval_len(self) -> int:
        return self.train_len * self.eval_mult

    def model(self) -> mamba.Config:
        return mamba.Config(vocab_size=256, d_model=self.d_model, n_layers=self.n_layers, d_state=self.d_state)


def get_config() -> Config:
    return Config()


def corpus_bytes() -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) uint8 arrays: the first 90% and the last 10% of the embedded text."""
    data = np.frombuffer("\n\n".join(text for _, text in default_documents()).encode(), np.uint8)
    cut = int(0.9 * data.size)
    return data[:cut], data[cut:]


def _windows(data: np.ndarray, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    if data.size <= length:
        raise ValueError(f"the text has {data.size} bytes, too few for windows of {length}")
    starts = rng.choice(data.size - length, size=n, replace=False)
    return np.stack([data[s:s + length] for s in starts]).astype(np.int32)


def excess(nll_WT: np.ndarray, train_len: int) -> np.ndarray:
    """Per window: mean loss over positions [4 train_len, T) - mean over [train_len / 2, train_len)."""
    return nll_WT[:, 4 * train_len:].mean(axis=1) - nll_WT[:, train_len // 2:train_len].mean(axis=1)


def unigram_entropy(train: np.ndarray, held_out: np.ndarray) -> float:
    """Cross-entropy (nats/byte) of the held-out bytes under the train bytes' add-one frequencies."""
    p = (np.bincount(train, minlength=256) + 1.0) / (train.size + 256.0)
    return float(-np.mean(np.log(p[held_out])))


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    model_cfg = cfg.model()
    train, held_out = corpus_bytes()
    rng = np.random.default_rng([cfg.seed, 1])

    def next_batch():
        w = _windows(train, rng, cfg.batch_size, cfg.train_len + 1)
        return {"inputs": w[:, :-1], "targets": w[:, 1:], "mask": np.ones((cfg.batch_size, cfg.train_len), np.float32)}

    start = time.perf_counter()
    params, losses = recall.fit(lambda p, x: mamba.apply(p, x, model_cfg), mamba.init(model_cfg, jax.random.key(cfg.seed)),
                                next_batch, steps=cfg.steps, lr=cfg.lr, progress=progress, desc="mamba")
    train_s = time.perf_counter() - start

    tokens_WT = _windows(held_out, np.random.default_rng([cfg.seed, 2]), cfg.n_eval, cfg.eval_len)
    run_fn = jax.jit(run_with_fix, static_argnums=(2, 3))

    def evaluate(fix: StateFix):
        nll, norms = [], []
        for i in range(0, cfg.n_eval, 8):
            logits, norms_LBTE = run_fn(params, tokens_WT[i:i + 8], model_cfg, fix)
            nll.append(np.asarray(position_nll(logits, tokens_WT[i:i + 8])))
            norms.append(np.asarray(norms_LBTE))
        return np.concatenate(nll), np.concatenate(norms, axis=1)  # [W, T-1], [L, W, T, E]

    nll = {}
    nll["none"], norms_none = evaluate(StateFix())
    cap = float(norms_none[:, :, :cfg.train_len].max())
    fixes = {"forget": StateFix("forget", decay_scale=FORGET_SCALE), "normalize": StateFix("normalize", max_norm=cap),
             "window": StateFix("window", window=cfg.train_len)}
    max_norm = {"none": norms_none.max(axis=(0, 3)).mean(axis=0)}
    for name, fix in fixes.items():
        nll[name], norms = evaluate(fix)
        max_norm[name] = norms.max(axis=(0, 3)).mean(axis=0)
    ex = {name: excess(v, cfg.train_len) for name, v in nll.items()}
    inside = float(nll["none"][:, :cfg.train_len].mean())
    _plot(nll, max_norm, cfg, workdir / "collapse.png")
    result = {"train_len": cfg.train_len, "eval_len": cfg.eval_len, "normalize_cap": cap,
              "inside_loss": inside, "unigram_entropy": unigram_entropy(train, held_out),
              "final_train_loss": float(np.mean(losses[-20:])), "train_s": train_s,
              "params": mamba.count_params(params),
              "loss_by_position": {k: v.mean(axis=0).tolist() for k, v in nll.items()},
              "max_state_norm_by_position": {k: v.tolist() for k, v in max_norm.items()},
              "report": "![loss and state norm against position](collapse.png)"}
    for name, v in ex.items():
        result[f"excess_{name}"] = float(v.mean())
        result[f"excess_{name}_per_window"] = v.tolist()
    return result


def _plot(nll: dict, max_norm: dict, cfg: Config, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    width = max(1, cfg.train_len // 8)
    for name, v in nll.items():
        curve = v.mean(axis=0)
        smooth = np.convolve(curve, np.ones(width) / width, mode="valid")
        a.plot(np.arange(smooth.size) + width // 2, smooth, label=name, lw=1)
        b.plot(max_norm[name], label=name, lw=1)
    for ax in (a, b):
        ax.axvline(cfg.train_len, color="grey", ls="--", lw=1)
        ax.set_xlabel("position (bytes)")
        ax.legend(fontsize=8)
    a.set_ylabel("next-byte loss (nats), smoothed")
    b.set_ylabel("largest channel state norm")
    b.set_yscale("log")
    fig.suptitle(f"trained at {cfg.train_len} bytes (dashed), run to {cfg.eval_len}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    arr = lambda name: np.asarray([r[f"excess_{name}_per_window"] for r in per_seed])  # noqa: E731
    zero = np.zeros_like(arr("none"))
    parts = {name: stats.paired_bootstrap_interval(arr(name), zero) for name in FIXES}
    inside = float(np.mean([r["inside_loss"] for r in per_seed]))
    unigram = float(np.mean([r["unigram_entropy"] for r in per_seed]))
    pre = [("the model learned the text", inside < unigram,
            f"loss within the training length {inside:.3f} vs held-out unigram entropy {unigram:.3f} nats/byte")]
    base = stats.decide(parts["none"]["effect"], parts["none"]["low"], parts["none"]["high"], threshold=MARGIN,
                        preconditions=pre, test="")
    fixed = {name: stats.decide(parts[name]["effect"], parts[name]["low"], parts[name]["high"], threshold=MARGIN,
                                test="").outcome for name in FIXES[1:]}  # "not held" = the fix removes it
    if base.reason.startswith("precondition"):
        outcome, reason = "inconclusive", base.reason
    elif base.outcome == "not held":
        outcome, reason = "not held", "no collapse: the trained model's excess is at most the margin"
    elif any(v == "held" for v in fixed.values()):
        outcome, reason = "not held", f"a fix leaves the excess above the margin: {fixed}"
    elif base.outcome == "held" and all(v == "not held" for v in fixed.values()):
        outcome, reason = "held", ""
    else:
        outcome, reason = "inconclusive", "an interval contains the margin"
    r = parts["none"]
    test = (f"nested bootstrap over {r['seeds']} seeds x {r['problems']} windows of each run's excess loss "
            f"(threshold {MARGIN}): " + ", ".join(
                f"{name} {parts[name]['effect']:+.3f} [{parts[name]['low']:+.3f}, {parts[name]['high']:+.3f}]"
                for name in FIXES))
    return stats.Verdict(outcome, base.effect, base.low, base.high, MARGIN, "greater", test, base.preconditions,
                         reason)
