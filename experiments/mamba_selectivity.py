"""Mamba's selectivity: selective copying needs input-dependent delta, B and C (Gu and Dao
2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", section 3.1 and
table 1).

Task (:func:`jaxlab.tasks.recall.selective_copying`): ``n_data`` data tokens (of ``n_symbols``)
at random positions in a context of ``context`` noise tokens, then a marker; the model emits the
data tokens in order. Two variants of one Mamba block stack (:mod:`jaxlab.models.mamba`),
trained alike on fresh batches each step (teacher forcing, loss on the answer tokens only):

    selective        delta_t = softplus(W_dt W_x u_t + b),  B_t = W_B u_t,  C_t = W_C u_t
    time_invariant   delta = softplus(b),  B,  C          (parameters: ``selective=False``)

Everything else (conv, gate, A, D, widths, optimiser, steps, data) is the same. Score: per test
sequence, the fraction of its ``n_data`` answer tokens predicted exactly (argmax, teacher
forced); chance is 1 / n_symbols.

Claim (fixed before any run, version 1): the selective model's accuracy exceeds the
time-invariant model's by more than 0.3. Effect: the mean over seeds and test sequences of
acc_selective - acc_time_invariant; held when its 95% interval (nested paired bootstrap over
seeds and test sequences, jaxlab.stats.paired_bootstrap_interval) lies above 0.3, not held when
it lies at or below 0.3. Precondition: the selective model solves the task (mean accuracy
>= 0.9 over seeds), so that the comparison is "succeeds where the other fails" rather than two
undertrained models. Seeds change the initialisation, the training batches and the test set;
seed k of both variants shares the test set (paired).

    jaxlab run experiments/mamba_selectivity.py --preset smoke --seeds 2      # tests, seconds
    jaxlab run experiments/mamba_selectivity.py --preset paper --seeds 3 --publish   # 26 min, 2 loaded cores

The paper preset is the paper's task shrunk to this CPU (context 32 with 4 data tokens of 8
symbols, 2 layers of d_model 32, 1000 steps of 32 sequences) instead of context 4096 with 16
of 16 and 400K steps. The sizes came from short sizing runs before the claim's runs (seed 0,
256 test sequences: selective 0.999 at context 16 and 0.999 at context 32, time-invariant
0.31 at context 16), chosen so that the selective model can solve the task within the budget.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.models import mamba
from jaxlab.tasks import recall
from jaxlab.tasks.recall import FIRST_DATA, selective_copying

CLAIM = ("On selective copying, a selective SSM (input-dependent delta, B, C) succeeds where a "
         "time-invariant one (delta, B, C fixed parameters) fails: its accuracy is more than 0.3 higher.")
CLAIM_VERSION = 1
REPORT_KEYS = ["accuracy", "final_loss", "params", "train_s"]
MARGIN = 0.3        # the claim's threshold on acc_selective - acc_time_invariant
SOLVED = 0.9        # precondition: the selective model's mean accuracy
VARIANTS = ("selective", "time_invariant")
PRESETS = {
    "smoke": {"context": 16, "n_data": 4, "n_symbols": 8, "d_model": 16, "d_state": 4, "steps": 40, "n_test": 64},
    "paper": {"context": 32, "n_data": 4, "n_symbols": 8, "d_model": 32, "d_state": 8, "steps": 1000,
              "lr": 1e-2, "n_test": 512},
}

@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "selective"
    selective: bool = True
    context: int = 32
    n_data: int = 4
    n_symbols: int = 8
    d_model: int = 32
    n_layers: int = 2
    d_state: int = 8
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-2
    n_test: int = 512
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.n_data <= self.context:
            raise ValueError(f"n_data must be in [1, context={self.context}], got {self.n_data}")
        for key in ("steps", "batch_size", "n_test", "n_symbols"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")

    def model(self) -> mamba.Config:
        return mamba.Config(vocab_size=FIRST_DATA + self.n_symbols, d_model=self.d_model, n_layers=self.n_layers,
                            d_state=self.d_state, selective=self.selective)


def get_config() -> dict:
    return {"selective": Config(name="selective", selective=True),
            "time_invariant": Config(name="time_invariant", selective=False)}


def _task(cfg: Config, rng: np.random.Generator, n: int) -> dict:
    return selective_copying(rng, n, context=cfg.context, n_data=cfg.n_data, n_symbols=cfg.n_symbols)


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    model_cfg = cfg.model()
    apply_fn = functools.partial(mamba.apply, cfg=model_cfg)
    # training batches from seed [seed, 1], the test set from [seed, 2]: the same test set for
    # both variants of a seed
    train_rng, test_rng = np.random.default_rng([cfg.seed, 1]), np.random.default_rng([cfg.seed, 2])
    start = time.perf_counter()
    params, losses = recall.fit(apply_fn, mamba.init(model_cfg, jax.random.key(cfg.seed)),
                                lambda: _task(cfg, train_rng, cfg.batch_size), steps=cfg.steps, lr=cfg.lr,
                                progress=progress, desc=cfg.name)
    train_s = time.perf_counter() - start
    test = _task(cfg, test_rng, cfg.n_test)
    acc = jax.jit(lambda p, b: recall.sequence_accuracy(apply_fn(p, b["inputs"]), b))
    per_seq = np.concatenate([np.asarray(acc(params, {k: test[k][i:i + 128] for k in ("inputs", "targets", "mask")}))
                              for i in range(0, cfg.n_test, 128)])
    _plot_loss(losses, workdir / "loss.png", cfg.name)
    return {"variant": cfg.name, "selective": cfg.selective, "accuracy": float(per_seq.mean()),
            "per_sequence_accuracy": per_seq.tolist(), "chance": 1.0 / cfg.n_symbols,
            "final_loss": float(np.mean(losses[-20:])), "loss_curve": losses[:: max(1, cfg.steps // 100)],
            "params": mamba.count_params(params), "train_s": train_s,
            "report": "![training loss](loss.png)"}


def _plot_loss(losses, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(losses, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("answer loss (nats/token)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarize(results: dict, workdir: Path) -> str:
    """Accuracy per variant (one dot per seed, the mean as a bar, chance as a line)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {name: (r if isinstance(r, list) else [r]) for name, r in results.items()}
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for i, (name, per_seed) in enumerate(runs.items()):
        accs = [r["accuracy"] for r in per_seed]
        ax.bar(i, np.mean(accs), color="tab:blue" if per_seed[0]["selective"] else "tab:orange", alpha=0.6)
        ax.scatter([i] * len(accs), accs, color="black", s=12, zorder=3)
    chance = next(iter(runs.values()))[0]["chance"]
    ax.axhline(chance, color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(range(len(runs)), list(runs))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("selective copying accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(workdir / "accuracy.png", dpi=100)
    plt.close(fig)
    return "![accuracy per variant](accuracy.png)"


def claim_verdict(runs: dict) -> stats.Verdict:
    missing = [v for v in VARIANTS if v not in runs]
    if missing:
        raise ValueError(f"claim_verdict needs the variants {VARIANTS}, missing {missing}")
    sel_SP = np.asarray([r["per_sequence_accuracy"] for r in runs["selective"]])
    lti_SP = np.asarray([r["per_sequence_accuracy"] for r in runs["time_invariant"]])
    r = stats.paired_bootstrap_interval(sel_SP, lti_SP)
    solved = float(np.mean([run["accuracy"] for run in runs["selective"]]))
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=MARGIN,
        test=(f"nested paired bootstrap of acc_selective - acc_time_invariant over {r['seeds']} seeds "
              f"x {r['problems']} test sequences"),
        preconditions=[("the selective model solves the task", solved >= SOLVED,
                        f"selective mean accuracy {solved:.3f} (needs >= {SOLVED})")])
