"""Representation geometry over pre-training (Li et al. 2025, "Tracing the Representation
Geometry of Language Models from Pretraining to Post-training"; RankMe: Garrido et al. 2023).

A byte model (the "quickstart" preset of configs/models.py) is pre-trained here on the
embedded corpus (jaxlab.train.loop.pretrain_byte_model, resumable), keeping a checkpoint every
``checkpoint_every`` steps; step 0 is the initialisation the run starts from
(``transformer.init(model, key(seed))``, the same key the trainer uses). At every checkpoint,
on ``n_rows`` x ``seq_len`` byte windows of the corpus's validation split (held out from
training), jaxlab.analysis.geometry measures

    RankMe(Z)  = exp(entropy of the normalised singular values of Z)      (effective rank)
    alpha-ReQ  = slope of the power-law fit lambda_k ~ k^(-alpha), ranks 1 .. D/2

of the last layer's representations Z [N tokens, D] (the final-norm output, the unembedding's
input), of every layer's residual stream (reported), and the held-out loss.

The paper's phases: "warmup" (a rapid collapse while the learning rate warms up), then
"entropy-seeking" (the effective rank grows), then "compression-seeking" (it falls again while
alpha rises, variance concentrating in the top directions).

Claim (fixed before any run, version 1): after the learning-rate warm-up the last layer's
RankMe rises and then falls. Over the checkpoints at steps >= the warm-up (c_1 .. c_n, c_n the
last), the effect of one pre-training run is

    e = min(peak / RankMe(c_1), peak / RankMe(c_n)) - 1,    peak = max RankMe(c_2 .. c_{n-1})

(an interior maximum at least e above both ends). Held when the 95% t interval of the mean of
e over seeds (independent pre-training runs) lies above 0.05 (a peak 5% above both ends), not
held when it lies at or below 0.05. Preconditions: at least 2 seeds; at least 3 checkpoints
after the warm-up; the models learn (the last checkpoint's held-out loss is at most
0.6 log V nats per byte, V the model's vocabulary: 3.35 for the quickstart model's 264).

Reported beside it: the warm-up collapse (RankMe at the first checkpoint / at step 0), alpha-ReQ
at the RankMe peak and at the end, the step of the peak, and the per-layer trajectories.

    jaxlab run experiments/representation_geometry.py --preset smoke --seeds 2     # a tiny byte model, 24 steps (tests)
    jaxlab run experiments/representation_geometry.py --preset paper --seeds 2 --publish   # quickstart, 600 steps of 8 x 128 bytes per seed

The paper preset's two seeds ran as two processes on 2 shared cores under heavy load (load
average 30-40): 16 min of pre-training each, then about 15 min for the 13 checkpoints' measurements.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.analysis import geometry

CLAIM = ("After the learning-rate warm-up, the last layer's RankMe has an interior maximum at least 5% above "
         "both the first post-warm-up checkpoint and the last checkpoint (entropy-seeking, then "
         "compression-seeking).")
CLAIM_VERSION = 1
THRESHOLD = 0.05
MAX_LOSS_FRACTION = 0.6   # of log V: the precondition that the model learned
REPORT_KEYS = ["peak_effect", "peak_step", "final_loss", "collapse_ratio"]
PRESETS = {
    "smoke": {"model": "tiny", "steps": 24, "checkpoint_every": 4, "batch_size": 8, "seq_len": 32,
              "n_rows": 8, "eval_seq_len": 32},
    "paper": {"model": "quickstart", "steps": 600, "checkpoint_every": 50, "batch_size": 8, "seq_len": 128,
              "n_rows": 16, "eval_seq_len": 256},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "representation_geometry"
    model: str = "quickstart"   # "quickstart" (configs/models.py) or "tiny"
    steps: int = 600
    checkpoint_every: int = 50
    batch_size: int = 16
    seq_len: int = 256           # training windows
    n_rows: int = 16             # held-out windows the geometry is measured on
    eval_seq_len: int = 256
    seed: int = 0

    def __post_init__(self):
        if self.model not in ("quickstart", "tiny"):
            raise ValueError(f"model must be 'quickstart' or 'tiny', got {self.model!r}")
        if self.checkpoint_every < 1 or self.steps % self.checkpoint_every:
            raise ValueError(f"checkpoint_every ({self.checkpoint_every}) must be >= 1 and divide steps "
                             f"({self.steps})")


def get_config():
    return Config()


def _model_config(cfg: Config):
    from configs import models
    from jaxlab.models import transformer

    if cfg.model == "tiny":
        return transformer.Config(vocab_size=259, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=16,
                                  mlp_dim=64)
    return models.get("quickstart")


def warmup_steps(steps: int) -> int:
    """The learning-rate warm-up of pretrain_byte_model: min(100, steps // 5), at least 1."""
    return max(1, min(100, steps // 5))


def validation_rows(n_rows: int, seq_len: int, seed: int) -> np.ndarray:
    """[n_rows, seq_len] byte windows of the embedded corpus's validation split (the chunks the
    trainer holds out, data defaults chunk_bytes=2048, val_percent=5), at distinct starts."""
    from jaxlab.data import ByteTokenizer
    from jaxlab.data.corpus import DataError, default_documents, split_chunks

    _, validation = split_chunks(default_documents())
    ids = ByteTokenizer().encode("\n\n".join(validation))
    if len(ids) - seq_len < n_rows:
        raise DataError(f"cannot draw {n_rows} rows of {seq_len} bytes from {len(ids)} validation bytes")
    starts = np.random.default_rng(seed).choice(len(ids) - seq_len, size=n_rows, replace=False)
    return np.stack([ids[s:s + seq_len] for s in starts]).astype(np.int32)


def measure(params, mcfg, rows_BT) -> dict:
    """Held-out loss per row, and RankMe / alpha-ReQ of the last layer's representations (the
    final-norm output) and of each layer's residual stream (hidden_0 .. hidden_L)."""
    import jax
    import jax.numpy as jnp

    from jaxlab.models import transformer
    from jaxlab.nn.norms import norm

    tokens = jnp.asarray(rows_BT)
    logits, hidden_LBTD = transformer.apply(params, tokens[:, :-1], mcfg, return_hidden=True)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    row_loss = -jnp.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0].mean(-1)
    final = norm(params["final_norm"], hidden_LBTD[-1], mcfg.norm_type, mcfg.norm_eps)
    D = mcfg.d_model

    def both(z_BTD):
        z = np.asarray(z_BTD, np.float64).reshape(-1, D)
        return geometry.rankme(z), geometry.alpha_req(z, 1, max(2, D // 2))

    last = both(final)
    per_layer = [both(h) for h in hidden_LBTD]
    return {"row_loss": np.asarray(row_loss).tolist(), "loss": float(row_loss.mean()),
            "rankme": last[0], "alpha": last[1],
            "rankme_layers": [r for r, _ in per_layer], "alpha_layers": [a for _, a in per_layer]}


def peak_effect(steps: list[int], rankme: list[float], warmup: int) -> tuple[float, int | None]:
    """(e, step of the peak) of the claim: e = min(peak / R(c_1), peak / R(c_n)) - 1 over the
    checkpoints c_1 .. c_n at steps >= warmup, the peak the largest of c_2 .. c_{n-1}; (nan,
    None) with fewer than 3 such checkpoints."""
    after = [(s, r) for s, r in zip(steps, rankme) if s >= warmup]
    if len(after) < 3:
        return float("nan"), None
    interior = after[1:-1]
    peak_step, peak = max(interior, key=lambda sr: sr[1])
    return float(min(peak / after[0][1], peak / after[-1][1]) - 1.0), int(peak_step)


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    import jax

    from jaxlab.models import transformer
    from jaxlab.train.checkpoint import load_params
    from jaxlab.train.loop import pretrain_byte_model

    mcfg = _model_config(cfg)
    model_dir = workdir / "byte_model"
    pretrain_byte_model(model_dir, mcfg, steps=cfg.steps, seed=cfg.seed, batch_size=cfg.batch_size,
                        seq_len=cfg.seq_len, checkpoint_every=cfg.checkpoint_every,
                        keep_checkpoints=cfg.steps // cfg.checkpoint_every + 1, progress=progress)
    rows = validation_rows(cfg.n_rows, cfg.eval_seq_len, cfg.seed)
    steps = list(range(0, cfg.steps + 1, cfg.checkpoint_every))
    points = []
    for step in steps:
        params = transformer.init(mcfg, jax.random.key(cfg.seed)) if step == 0 else load_params(model_dir, step)[1]
        points.append({"step": step, **measure(params, mcfg, rows)})
    rankme = [p["rankme"] for p in points]
    warm = warmup_steps(cfg.steps)
    effect, peak_step = peak_effect(steps, rankme, warm)
    end_alpha = points[-1]["alpha"]
    peak_alpha = next((p["alpha"] for p in points if p["step"] == peak_step), float("nan"))
    first_after = next(p for p in points if p["step"] >= warm)
    _plot(points, warm, workdir)
    table = "\n".join(f"| {p['step']} | {p['loss']:.3f} | {p['rankme']:.2f} | {p['alpha']:.3f} |" for p in points)
    return {"points": points, "steps": steps, "warmup_steps": warm, "peak_effect": effect, "peak_step": peak_step,
            "final_loss": points[-1]["loss"], "log_vocab": math.log(mcfg.vocab_size),
            "collapse_ratio": float(first_after["rankme"] / points[0]["rankme"]),
            "alpha_at_peak": peak_alpha, "alpha_at_end": end_alpha, "d_model": mcfg.d_model,
            "report": ("| step | held-out loss | RankMe (last layer) | alpha-ReQ |\n|---|---|---|---|\n" + table
                       + f"\n\nWarm-up ends at step {warm}; RankMe peak after it at step {peak_step} "
                       f"(e = {effect:.3f}).\n\n![RankMe, alpha-ReQ and loss against step](geometry.png)")}


def _plot(points: list[dict], warm: int, workdir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in points]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    series = (("rankme", "rankme_layers", "RankMe"), ("alpha", "alpha_layers", "alpha-ReQ"))
    for ax, (key, layers_key, label) in zip(axes, series):
        ax.plot(steps, [p[key] for p in points], "k-o", ms=3, label="last layer (final norm)")
        n = len(points[0][layers_key])
        for i in range(n):
            ax.plot(steps, [p[layers_key][i] for p in points], alpha=0.5, lw=1, label=f"resid {i}")
        ax.axvline(warm, color="grey", ls=":")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.legend(fontsize=6)
    axes[2].plot(steps, [p["loss"] for p in points], "k-o", ms=3)
    axes[2].set_yscale("log")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("held-out loss (nats / byte)")
    fig.tight_layout()
    fig.savefig(workdir / "geometry.png", dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    effects = np.array([run["peak_effect"] for run in per_seed], np.float64)
    enough_points = bool(np.all(np.isfinite(effects)))
    finite = effects[np.isfinite(effects)]
    effect = float(finite.mean()) if finite.size else 0.0
    if finite.size >= 2:
        low, high = stats.t_interval(finite)
    else:
        low = high = effect
    worst = max(run["final_loss"] for run in per_seed)
    limit = MAX_LOSS_FRACTION * per_seed[0]["log_vocab"]
    return stats.decide(
        effect, min(low, effect), max(high, effect), threshold=THRESHOLD,
        test=f"t interval over {len(per_seed)} pre-training seeds of e = min(peak / first, peak / last) - 1 of "
             "the last layer's RankMe after the warm-up",
        preconditions=[("at least 2 seeds", len(per_seed) >= 2, f"{len(per_seed)} seeds"),
                       ("at least 3 checkpoints after the warm-up", enough_points,
                        f"per-seed effects {effects.tolist()}"),
                       ("the models learn", worst <= limit,
                        f"largest final held-out loss {worst:.3f} (needs <= {limit:.3f})")])
