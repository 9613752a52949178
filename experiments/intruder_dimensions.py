"""Intruder dimensions of LoRA vs full fine-tuning (Shuttleworth et al. 2024, "LoRA vs Full
Fine-tuning: An Illusion of Equivalence", arXiv 2410.21228).

Method. From one pre-trained model W0, two fine-tunes on the same task data: full fine-tuning
(every parameter) and LoRA on every attention and MLP kernel (``targets="all"``), for the same
number of steps (matched steps, not matched loss), each at its own learning rate
(:func:`jaxlab.peft.study.finetune_arm`). Each kernel, read as matrices [n_in, n_out] (one per
layer), is compared with its pre-trained self through the SVD (:mod:`jaxlab.analysis.intruders`):

    intruders (the paper's definition)  top-k left singular vectors u_j of the fine-tuned W with
                                         max_i |cos(u_j, u0_i)| < epsilon over all of W0's
    lost (a review's reading)            top-k left singular vectors u0_i of W0 with
                                         max_j |cos(u0_i, u_j)| < epsilon over all of W's

k = 10, and the counts are reported over an epsilon sweep (0.1 .. 0.9). Forgetting is the rise
of the loss on pre-training text (rows of the embedded corpus the base was trained on,
:func:`jaxlab.data.corpus.sample_token_rows`) from the base to each fine-tune.

Claim (fixed before any run, version 1): LoRA fine-tunes have more intruder dimensions than full
fine-tunes. Effect: the mean over seeds and matrices of (LoRA's intruder count - full FT's) at
epsilon = 0.5, k = 10, paired by matrix (x the number of matrices, 21 for the quickstart model,
it is the difference of the totals); held when its 95% interval (nested paired bootstrap over
seeds x matrices) lies above 0, not held when it lies at or below 0, otherwise inconclusive.
Precondition: both fine-tunes learned the task (each arm's test accuracy, pooled over seeds, is
above the constant-guess floor by 2 standard errors); intruders of fine-tunes that learned
nothing say nothing. The paper's second statement, that LoRA forgets more of the pre-training
distribution, is a second verdict line in the report (not the claim's verdict): the mean over
seeds x text rows of loss(LoRA) - loss(full FT), with its nested paired bootstrap interval,
held when above 0. The "lost" counts are reported, not claimed.

Setting. The quickstart byte model (3 layers, d_model 128) pre-trained 600 steps on the embedded
corpus (:func:`jaxlab.train.loop.pretrain_byte_model`; ``base_dir`` shares one base between
experiments), fine-tuned on ``arithmetic`` additions of 1- and 2-digit operands ("83+66=" ->
"149"; constant-guess floor 0.03): 300 steps of batch 16 for both arms, full FT at lr 3e-4,
LoRA rank 8, alpha 16 at lr 1e-3 (in a probe on this base before the claim was fixed, one seed:
full FT 0.21 and LoRA 0.08 test accuracy). Seeds change the data split and order and the LoRA
initialisation; the base is shared.

Presets. ``smoke`` (the tests): the 1-layer "tiny-random" byte model, a few steps; its arms
learn nothing, so its verdict is inconclusive by the precondition. ``paper``: see PRESETS;
3 seeds took 26 minutes on 2 shared, heavily loaded CPU cores (3-11 min per seed):

    jaxlab run experiments/intruder_dimensions.py --preset smoke --seeds 1 --workdir /tmp/intr_smoke
    jaxlab run experiments/intruder_dimensions.py --preset paper --seeds 3 --publish \\
        --workdir /tmp/intr_paper --set base_dir=/tmp/byte_base_q600
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.analysis import intruders

CLAIM = ("LoRA fine-tunes have more intruder dimensions (top-10 singular vectors with |cos| < 0.5 to "
         "every pre-trained singular vector) than full fine-tunes of the same model, data and steps.")
CLAIM_VERSION = 1
EPSILON = 0.5
K_TOP = 10
ARMS = ("full", "lora")
REPORT_KEYS = ["lora_minus_full_intruders", "full_intruders", "lora_intruders", "full_accuracy",
               "lora_accuracy", "lora_minus_full_forgetting", "full_forgetting", "lora_forgetting"]
PRESETS = {
    "smoke": {"model": "tiny-random", "n_train": 64, "n_test": 8, "steps": 3, "batch_size": 8,
              "seq_len": 32, "max_new_tokens": 2, "n_text_rows": 4, "text_seq_len": 32, "lora_rank": 2,
              "lora_alpha": 4.0, "eval_batch_size": 8, "full_lr": 3e-3, "lora_lr": 1e-2},
    "paper": {"model": "quickstart", "base_steps": 600, "n_train": 2000, "n_test": 256, "steps": 300,
              "batch_size": 16, "seq_len": 32, "max_new_tokens": 4, "n_text_rows": 32, "text_seq_len": 128},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "intruder_dimensions"
    model: str = "quickstart"       # a configs/models.py byte preset pre-trained here, or "tiny-random"
    base_dir: str = ""              # where the pre-trained base lives ("" = <workdir>/base)
    base_steps: int = 600
    task: str = "arithmetic"
    ops: str = "+"                  # the arithmetic task's operators
    train_difficulty: tuple[int, int] = (1, 2)
    n_train: int = 2000
    n_test: int = 256
    steps: int = 300
    batch_size: int = 16
    seq_len: int = 32
    full_lr: float = 3e-4
    lora_lr: float = 1e-3
    lora_rank: int = 8
    lora_alpha: float = 16.0
    targets: str = "all"
    k: int = K_TOP
    epsilon: float = EPSILON
    epsilons: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    max_new_tokens: int = 4
    eval_batch_size: int = 64
    n_text_rows: int = 32
    text_seq_len: int = 128
    seed: int = 0

    def __post_init__(self):
        if self.k < 1 or not 0.0 < self.epsilon < 1.0 or not all(0.0 < e < 1.0 for e in self.epsilons):
            raise ValueError(f"need k >= 1 and thresholds in (0, 1), got k={self.k}, epsilon={self.epsilon}, "
                             f"epsilons={self.epsilons}")


def get_config():
    return Config()


def text_row_losses(model_cfg, params, rows_NT) -> np.ndarray:
    """float64 [N]: the mean next-token loss of each text row."""
    import jax
    import jax.numpy as jnp

    from jaxlab.losses.lm import token_nll
    from jaxlab.models import transformer

    rows = jnp.asarray(rows_NT)
    logits = jax.jit(transformer.apply, static_argnums=2)(params, rows[:, :-1], model_cfg)
    return np.asarray(token_nll(logits, rows[:, 1:])[0].mean(-1), np.float64)


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    import jaxlab.tasks as tasks
    from jaxlab.data.corpus import sample_token_rows
    from jaxlab.data.tokenizer import BYTES
    from jaxlab.evals.floor import constant_guess_floor
    from jaxlab.evals.generation import greedy_correct
    from jaxlab.peft.adapters import AdapterSpec
    from jaxlab.peft.compare import study_base
    from jaxlab.peft.study import finetune_arm

    start = time.time()
    mcfg, base = study_base(cfg.model, base_dir=cfg.base_dir, base_steps=cfg.base_steps, workdir=workdir,
                            seed=0)  # one base for every seed
    task = tasks.get(cfg.task, train_difficulty=tuple(cfg.train_difficulty),
                     **({"ops": cfg.ops} if cfg.task == "arithmetic" else {}))
    splits = task.splits(cfg.seed, cfg.n_train, cfg.n_test, 0)
    rows = sample_token_rows(BYTES, cfg.n_text_rows, cfg.text_seq_len, 10_000 + cfg.seed)
    base_correct = greedy_correct(mcfg, base, BYTES, task, splits["test"], max_new_tokens=cfg.max_new_tokens,
                                  batch_size=cfg.eval_batch_size)
    base_rows = text_row_losses(mcfg, base, rows)
    out = {"floor": constant_guess_floor([e.answer for e in splits["test"]]),
           "base_correct": base_correct.tolist(), "base_accuracy": float(base_correct.mean()),
           "base_text_loss": float(base_rows.mean()), "epsilons": list(cfg.epsilons)}
    specs = {"full": (AdapterSpec(method="none"), cfg.full_lr),
             "lora": (AdapterSpec(method="lora", rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=cfg.targets),
                      cfg.lora_lr)}
    for arm, (spec, lr) in specs.items():
        a = finetune_arm(workdir / arm, base, mcfg, task, splits["train"], splits["test"], spec=spec, lr=lr,
                         steps=cfg.steps, batch_size=cfg.batch_size, seq_len=cfg.seq_len, seed=cfg.seed,
                         max_new_tokens=cfg.max_new_tokens, eval_batch_size=cfg.eval_batch_size,
                         progress=progress)
        sims = intruders.model_similarities(base, a.params, targets=cfg.targets, k=cfg.k)
        text = text_row_losses(mcfg, a.params, rows)
        out.update({
            f"{arm}_correct": a.correct_P.tolist(), f"{arm}_accuracy": a.accuracy,
            f"{arm}_trainable_params": a.trainable_params,
            f"{arm}_first_loss": float(a.losses_S[0]), f"{arm}_last_loss": float(a.losses_S[-1]),
            f"{arm}_train_seconds": a.train_seconds,
            f"{arm}_similarities": {m: {d: s[f"{d}_K"].tolist() for d in intruders.DEFINITIONS}
                                    for m, s in sims.items()},
            f"{arm}_text_row_loss_increase": (text - base_rows).tolist(),
            f"{arm}_forgetting": float((text - base_rows).mean()),
            **{f"{arm}_{d}": int(intruders.total_counts(sims, d, [cfg.epsilon])[0]) for d in intruders.DEFINITIONS},
            **{f"{arm}_{d}_sweep": intruders.total_counts(sims, d, cfg.epsilons).tolist()
               for d in intruders.DEFINITIONS}})
    out["matrices"] = sorted(out["full_similarities"])
    out["lora_minus_full_intruders"] = out["lora_intruder"] - out["full_intruder"]
    out["full_intruders"], out["lora_intruders"] = out["full_intruder"], out["lora_intruder"]
    out["lora_minus_full_forgetting"] = out["lora_forgetting"] - out["full_forgetting"]
    out["wall_seconds"] = time.time() - start
    _plot_sweep({a: [out[f"{a}_{d}_sweep"] for d in intruders.DEFINITIONS] for a in ARMS}, cfg.epsilons,
                workdir / "sweep.png", f"seed {cfg.seed}")
    out["report"] = "\n".join([
        f"{cfg.model} base, task {cfg.task} {tuple(cfg.train_difficulty)}: {cfg.steps} steps of batch "
        f"{cfg.batch_size}; full FT at lr {cfg.full_lr}, LoRA r={cfg.lora_rank} alpha={cfg.lora_alpha} on "
        f"{cfg.targets} at lr {cfg.lora_lr}. Counts over {len(out['matrices'])} matrices, top k={cfg.k}.", "",
        "| arm | test acc. | intruders @0.5 | lost @0.5 | pre-training loss rise | trainable |",
        "|---|---|---|---|---|---|",
        f"| base | {out['base_accuracy']:.3f} | | | | |",
        *[f"| {a} | {out[f'{a}_accuracy']:.3f} | {out[f'{a}_intruder']} | {out[f'{a}_lost']} | "
          f"{out[f'{a}_forgetting']:+.4f} | {out[f'{a}_trainable_params']:,} |" for a in ARMS],
        "", "![counts vs epsilon](sweep.png)"])
    return out


def _plot_sweep(counts: dict, epsilons, path: Path, title: str, spread: dict | None = None) -> None:
    """Count vs epsilon per arm, one panel per definition (``counts[arm] = [intruder_E,
    lost_E]``; ``spread[arm]``: (low, high) arrays of the same layout, drawn as a band)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, (ax, d) in enumerate(zip(axes, intruders.DEFINITIONS)):
        for arm, c in counts.items():
            ax.plot(epsilons, c[i], marker="o", label=arm)
            if spread:
                ax.fill_between(epsilons, spread[arm][0][i], spread[arm][1][i], alpha=0.2)
        ax.axvline(EPSILON, color="grey", ls=":", lw=1)
        ax.set(xlabel="cosine threshold epsilon", ylabel=f"{d} count (sum over matrices)")
        ax.set_title(f"{d} ({'fine-tuned vs W0' if d == 'intruder' else 'W0 vs fine-tuned'})\n{title}", fontsize=10)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _counts_SM(per_seed: list, arm: str, definition: str = "intruder", epsilon: float = EPSILON) -> np.ndarray:
    """[S, M] counts of each seed's matrices (in the order of ``matrices``), recomputed from the
    stored similarities."""
    return np.array([[intruders.count_below(r[f"{arm}_similarities"][m][definition], epsilon) for m in r["matrices"]]
                     for r in per_seed], np.float64)


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    from jaxlab.evals.floor import clear_of_floor

    per_seed = next(iter(runs.values()))
    b = stats.paired_bootstrap_interval(_counts_SM(per_seed, "lora"), _counts_SM(per_seed, "full"))
    floor = float(np.mean([r["floor"] for r in per_seed]))
    pre = []
    for arm in ARMS:
        clear, detail = clear_of_floor(np.array([r[f"{arm}_correct"] for r in per_seed]), floor)
        pre.append((f"the {arm} fine-tune learned the task (above the constant-guess floor by 2 SE)", clear, detail))
    return stats.decide(
        b["effect"], b["low"], b["high"], threshold=0.0,
        test=(f"intruders per matrix (k={K_TOP}, epsilon={EPSILON}), LoRA - full, nested paired bootstrap "
              f"over {b['seeds']} seeds x {b['problems']} matrices"),
        preconditions=pre)


def forgetting_verdict(per_seed: list) -> stats.Verdict:
    """The second line: loss(LoRA) - loss(full FT) on pre-training text, > 0 (nested paired
    bootstrap over seeds x rows)."""
    b = stats.paired_bootstrap_interval(np.array([r["lora_text_row_loss_increase"] for r in per_seed]),
                                        np.array([r["full_text_row_loss_increase"] for r in per_seed]))
    return stats.decide(b["effect"], b["low"], b["high"], threshold=0.0,
                        test=f"nats/token, nested paired bootstrap over {b['seeds']} seeds x {b['problems']} text rows")


def summarize(results: dict, workdir: Path) -> str:
    """The pooled sweep plot, both definitions, accuracies with intervals, and the forgetting line."""
    from jaxlab import claims

    lines = []
    for name, per_seed in results.items():
        per_seed = per_seed if isinstance(per_seed, list) else [per_seed]
        eps = per_seed[0]["epsilons"]
        counts, spread = {}, {}
        for arm in ARMS:
            sweeps = np.array([[r[f"{arm}_{d}_sweep"] for d in intruders.DEFINITIONS] for r in per_seed], np.float64)
            counts[arm] = sweeps.mean(0)
            spread[arm] = (sweeps.min(0), sweeps.max(0))
        _plot_sweep(counts, eps, workdir / f"{name}_sweep.png", f"mean of {len(per_seed)} seeds (band: min-max)",
                    spread)
        fv = forgetting_verdict(per_seed)
        lines += [f"## {name}: intruder and lost counts vs epsilon", "",
                  "| arm | definition | " + " | ".join(f"{e:g}" for e in eps) + " |",
                  "|---|---|" + "---|" * len(eps)]
        for arm in ARMS:
            for i, d in enumerate(intruders.DEFINITIONS):
                lines.append(f"| {arm} | {d} | " + " | ".join(f"{c:.1f}" for c in counts[arm][i]) + " |")
        lines += ["", f"Means over {len(per_seed)} seeds of the counts summed over {len(per_seed[0]['matrices'])} "
                  f"matrices (top k={K_TOP}).", "", f"![sweep]({name}_sweep.png)", "",
                  "| arm | test accuracy (95% bootstrap over seeds x problems) | pre-training loss rise |",
                  "|---|---|---|"]
        for arm in ("base", *ARMS):
            c = np.array([r[f"{arm}_correct"] for r in per_seed], np.float64)
            b = stats.paired_bootstrap_interval(c, np.zeros_like(c))
            lo, hi = b["low"], b["high"]
            rise = "" if arm == "base" else f"{np.mean([r[f'{arm}_forgetting'] for r in per_seed]):+.4f}"
            lines.append(f"| {arm} | {c.mean():.3f} [{lo:.3f}, {hi:.3f}] | {rise} |")
        lines += ["", "Second line (reported, not the claim): LoRA forgets more of the pre-training text than "
                  "full FT.", "", claims.verdict_markdown(fv)]
    return "\n".join(lines) + "\n"
