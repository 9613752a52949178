"""SingLoRA against LoRA over a learning-rate sweep (Bensaid et al. 2025, "SingLoRA: Low Rank
Adaptation Using a Single Matrix").

Method. LoRA adds s B A (two matrices, r (n + m) parameters per n x m kernel); SingLoRA adds
one symmetric low-rank update from a single matrix A [n, r],

    W = W0 + (alpha / r) u(t) A A^T,      u(t) = min(t / T, 1)

(the ramp u keeps the model unchanged at step 0; :mod:`jaxlab.peft.adapters`), so on square
kernels it trains half of LoRA's parameters at the same rank. The paper reports GLUE and
LLaMA-7B MNLI accuracy at least LoRA's with about half the adapter parameters, and accuracy
that varies about 1% over a learning-rate sweep against about 4.8% for LoRA.

Setting. A byte-level transformer (``configs.models`` "quickstart": 3 layers, d_model 128)
pre-trained for 600 steps on the embedded corpus is fine-tuned with SFT (cross-entropy on the
answer, :func:`jaxlab.peft.study.finetune_arm`) on the ``last_letters`` task ("last vobu ke
tamin:" -> "uen", 2 or 3 words), chosen in a pilot (seed 100, before the claim was fixed) where
the untuned base scores 0 (floor 0.027), full fine-tuning reaches 0.30 in 100 steps (lr 1e-3)
and LoRA rank 4 on attention 0.10 in 250 steps (lr 5e-3; 0.00 in 100 steps at 3e-3 or 1.5e-2),
while ``count`` stayed at its 0.37 floor and 2-digit ``arithmetic`` at 0.06 even fully
fine-tuned. Both adapters sit on the attention kernels q, k, v, o (all square, 128 x 128, so
SingLoRA has exactly half of LoRA's parameters at the same rank r = 4: 6,144 against 12,288),
alpha = 16 for both (s = alpha / r), SingLoRA's ramp T = 10% of the steps. Each method trains
at 5 log-spaced learning rates (``lrs``: 2.5e-3 to 4e-2, factors of 2, around the pilot's
working rate; an arm whose loss turns non-finite counts as wrong on every problem) for
``steps`` steps of AdamW (constant after warm-up, no weight decay), every arm from the same
base, on the same data in the same order. A seed draws the train / validation / test problems
and the data order; each arm answers the validation and test problems greedily.

Claim (version 1, fixed before any run). (a) Non-inferiority at half the parameters: each
method is taken at its own best learning rate, the rate with the highest validation accuracy
pooled over seeds (validation problems are disjoint from the test problems). Effect: mean over
seeds and test problems of correct_SingLoRA - correct_LoRA; 95% interval by nested paired
bootstrap over seeds and problems (``jaxlab.stats.paired_bootstrap_interval``). Held when the
interval's lower end is above the non-inferiority margin -0.05, not held when its upper end is
at or below -0.05, otherwise inconclusive. Preconditions: (1) SingLoRA's trainable count is at
most 0.6 x LoRA's; (2) fine-tuning learns: LoRA's test accuracy at its best rate (pooled) is
above both the untuned base's test accuracy and the constant-guess floor by 2 standard errors
(``jaxlab.evals.floor.clear_of_floor``); (3) LoRA is not at the ceiling: its pooled test
accuracy at the best rate is below 0.95. (b) Robustness to the rate, reported beside the
verdict (``summarize``) with its own three-way outcome: spread = max - min over the 5 rates of
the test accuracy (mean over seeds and problems); effect spread(LoRA) - spread(SingLoRA), 95%
interval by a nested bootstrap over seeds and problems
(``jaxlab.peft.compare.sweep_spread_difference``); "SingLoRA varies less" held when the
interval is above 0.

Presets. ``smoke`` (the tests): a random 1-layer byte model, one rate (the sweep's machinery
with the least test time), a few steps; its LoRA is at the floor, so the verdict is
inconclusive by precondition (2).
``paper``: the pre-trained base above, 5 rates, 200 steps of 16 packed rows of 64 tokens,
2000 train / 128 validation / 256 test problems, 2 seeds. One arm of 200 steps took about 8
minutes on the 2 heavily shared CPU cores, so each seed's ten arms were trained in 5 parallel
processes (one rate each) into the run's arm folders, which ``jaxlab run`` then loads: seed 0
took 26 minutes of training, seed 1 (on a less loaded machine) 6, and loading and evaluating
the 20 arms 5 more (measured):

    jaxlab run experiments/singlora_vs_lora.py --preset smoke --seeds 2 --publish
    jaxlab run experiments/singlora_vs_lora.py --preset paper --seeds 2 --workdir OUT/singlora \\
        --set base_dir=OUT/byte_base_q600 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxlab import stats  # noqa: E402
from jaxlab import tasks as task_lib  # noqa: E402
from jaxlab.evals.floor import clear_of_floor, constant_guess_floor  # noqa: E402
from jaxlab.evals.generation import greedy_correct  # noqa: E402
from jaxlab.data.tokenizer import BYTES  # noqa: E402
from jaxlab.peft.adapters import AdapterSpec  # noqa: E402
from jaxlab.peft.compare import (study_base, sweep_arm, sweep_spread_difference, trainable_count,  # noqa: E402
                                 train_val_test)

CLAIM = ("At half of LoRA's trainable parameters (same rank, square attention kernels), "
         "SingLoRA's test accuracy at its best learning rate is at least LoRA's at its best "
         "(non-inferiority margin 0.05); its accuracy varies less over a 5-rate sweep.")
CLAIM_VERSION = 1
REPORT_KEYS = ["singlora_minus_lora", "lora_best_test_accuracy", "singlora_best_test_accuracy",
               "base_test_accuracy", "lora_params", "singlora_params"]
METHODS = ("lora", "singlora")
MARGIN = -0.05      # non-inferiority margin of the claim
CEILING = 0.95      # LoRA at or above this accuracy: no room to compare
MAX_PARAM_RATIO = 0.6

PRESETS = {
    "smoke": {"model": "tiny-random", "lrs": (1e-2,), "n_train": 64, "n_val": 16, "n_test": 16,
              "steps": 4, "batch_size": 8, "seq_len": 32, "max_new_tokens": 4, "rank": 2},
    "paper": {"model": "quickstart", "base_steps": 600, "lrs": (2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2),
              "n_train": 2000, "n_val": 128, "n_test": 256, "steps": 200, "batch_size": 16, "seq_len": 64,
              "max_new_tokens": 4, "rank": 4},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "singlora_vs_lora"
    model: str = "quickstart"      # a configs.models preset pre-trained here, or "tiny-random"
    base_dir: str = ""             # where the pre-trained base lives (empty: <workdir>/base)
    base_steps: int = 600
    task: str = "last_letters"
    train_difficulty: tuple[int, int] = (2, 3)
    n_train: int = 2000
    n_val: int = 128
    n_test: int = 256
    rank: int = 4
    alpha: float = 16.0
    targets: str = "attn"
    ramp_fraction: float = 0.1     # SingLoRA's T as a share of the steps
    lrs: tuple[float, ...] = (2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2)
    steps: int = 200
    batch_size: int = 16
    seq_len: int = 64
    max_new_tokens: int = 4
    eval_batch_size: int = 64
    seed: int = 0


def get_config() -> Config:
    return Config()


def make_task(cfg):
    """The task of ``cfg`` (its train difficulty; OOD is not used)."""
    return task_lib.get(cfg.task, train_difficulty=tuple(cfg.train_difficulty))


def spec_of(cfg, method: str) -> AdapterSpec:
    return AdapterSpec(method=method, targets=cfg.targets, rank=cfg.rank, alpha=cfg.alpha,
                       ramp_steps=max(1, round(cfg.ramp_fraction * cfg.steps)))


def plot_sweep(lrs, acc_by_method: dict, path: Path, title: str) -> None:
    """Test accuracy against the learning rate, one line per method (log x axis)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, acc in acc_by_method.items():
        ax.plot(lrs, acc, marker="o", label=method)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("greedy test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    workdir = Path(workdir)
    task = make_task(cfg)
    train, val, test = train_val_test(task, cfg.seed, cfg.n_train, cfg.n_val, cfg.n_test)
    model_cfg, base = study_base(cfg.model, base_dir=cfg.base_dir, base_steps=cfg.base_steps,
                                 workdir=workdir, seed=cfg.seed)
    base_correct = greedy_correct(model_cfg, base, BYTES, task, test, max_new_tokens=cfg.max_new_tokens,
                                  batch_size=cfg.eval_batch_size)
    out = {"lrs": list(cfg.lrs), "floor": constant_guess_floor([e.answer for e in test]),
           "base_test_correct": base_correct.tolist(), "base_test_accuracy": float(base_correct.mean())}
    for method in METHODS:
        spec = spec_of(cfg, method)
        val_c, test_c, last_loss = [], [], []
        for lr in cfg.lrs:
            correct, loss = sweep_arm(workdir / f"{method}_lr{lr:g}", base, model_cfg, task, train, val + test,
                               spec=spec, lr=lr, steps=cfg.steps, batch_size=cfg.batch_size,
                               seq_len=cfg.seq_len, seed=cfg.seed, max_new_tokens=cfg.max_new_tokens,
                               eval_batch_size=cfg.eval_batch_size, progress=progress)
            val_c.append(correct[: len(val)].tolist())
            test_c.append(correct[len(val):].tolist())
            last_loss.append(None if np.isnan(loss) else loss)
        out[f"{method}_params"] = trainable_count(base, spec)
        out[f"{method}_val_correct"] = val_c      # [rates][problems]
        out[f"{method}_test_correct"] = test_c
        out[f"{method}_test_accuracy"] = [float(np.mean(c)) for c in test_c]
        out[f"{method}_val_accuracy"] = [float(np.mean(c)) for c in val_c]
        out[f"{method}_last_loss"] = last_loss
        best = int(np.argmax(out[f"{method}_val_accuracy"]))
        out[f"{method}_best_test_accuracy"] = out[f"{method}_test_accuracy"][best]
    out["singlora_minus_lora"] = out["singlora_best_test_accuracy"] - out["lora_best_test_accuracy"]
    plot_sweep(cfg.lrs, {m: out[f"{m}_test_accuracy"] for m in METHODS}, workdir / "sweep.png",
               f"{cfg.task}, rank {cfg.rank} on {cfg.targets}, {cfg.steps} steps (seed {cfg.seed})")
    rows = [f"| {lr:g} | {a:.3f} | {b:.3f} |" for lr, a, b in
            zip(cfg.lrs, out["lora_test_accuracy"], out["singlora_test_accuracy"])]
    out["report"] = "\n".join([
        f"{cfg.model} base, task {cfg.task} {tuple(cfg.train_difficulty)}: {cfg.n_train} train / {cfg.n_val} "
        f"validation / {cfg.n_test} test problems; rank {cfg.rank} on {cfg.targets} "
        f"(LoRA {out['lora_params']:,} params, SingLoRA {out['singlora_params']:,}); {cfg.steps} steps.", "",
        f"Untuned base: test accuracy {out['base_test_accuracy']:.3f}; constant-guess floor {out['floor']:.3f}.",
        "", "| lr | LoRA test acc | SingLoRA test acc |", "|---|---|---|", *rows, "", "![sweep](sweep.png)"])
    return out


def _arrays(per_seed: list, key: str) -> np.ndarray:
    return np.array([r[key] for r in per_seed], np.float64)  # [S, rates, problems]


def best_rates(per_seed: list) -> dict:
    """{method: index of the rate with the highest validation accuracy pooled over seeds}."""
    return {m: int(np.argmax(_arrays(per_seed, f"{m}_val_correct").mean(axis=(0, 2)))) for m in METHODS}


def claim_verdict(runs: dict) -> stats.Verdict:
    """Part (a) of the claim (module docstring) from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    best = best_rates(per_seed)
    lora_SP = _arrays(per_seed, "lora_test_correct")[:, best["lora"]]
    sing_SP = _arrays(per_seed, "singlora_test_correct")[:, best["singlora"]]
    base_SP = np.array([r["base_test_correct"] for r in per_seed], np.float64)
    floor = float(np.mean([r["floor"] for r in per_seed]))
    lrs = per_seed[0]["lrs"]
    b = stats.paired_bootstrap_interval(sing_SP, lora_SP)
    ratio = per_seed[0]["singlora_params"] / per_seed[0]["lora_params"]
    learns, detail = clear_of_floor(lora_SP, max(floor, float(base_SP.mean())))
    lora_acc = float(lora_SP.mean())
    return stats.decide(
        b["effect"], b["low"], b["high"], threshold=MARGIN,
        test=(f"nested paired bootstrap over {b['seeds']} seeds x {b['problems']} test problems; "
              f"best rates by validation: LoRA {lrs[best['lora']]:g}, SingLoRA {lrs[best['singlora']]:g}"),
        preconditions=[
            (f"SingLoRA trains at most {MAX_PARAM_RATIO} x LoRA's parameters", ratio <= MAX_PARAM_RATIO,
             f"ratio {ratio:.3f}"),
            ("fine-tuning learns (LoRA above the untuned base and the floor by 2 SE)", learns, f"LoRA {detail}"),
            (f"LoRA below the ceiling {CEILING}", lora_acc < CEILING, f"LoRA accuracy {lora_acc:.3f}")])


def spread_verdict(runs: dict) -> stats.Verdict:
    """Part (b): spread(LoRA) - spread(SingLoRA) > 0 over the rate sweep (module docstring)."""
    per_seed = next(iter(runs.values()))
    s = sweep_spread_difference(_arrays(per_seed, "lora_test_correct"), _arrays(per_seed, "singlora_test_correct"))
    return stats.decide(
        s["effect"], s["low"], s["high"], threshold=0.0,
        test=(f"spread = max - min over {len(per_seed[0]['lrs'])} rates of test accuracy; LoRA "
              f"{s['spread_a']:.3f}, SingLoRA {s['spread_b']:.3f}; nested bootstrap over {s['seeds']} seeds x "
              f"{s['problems']} problems"))


def summarize(results: dict, workdir: Path) -> str:
    """The sweep pooled over seeds (table and plot) and the verdict of part (b)."""
    per_seed = next(iter(results.values()))
    lrs = per_seed[0]["lrs"]
    pooled = {m: _arrays(per_seed, f"{m}_test_correct").mean(axis=(0, 2)).tolist() for m in METHODS}
    plot_sweep(lrs, pooled, Path(workdir) / "sweep.png", f"test accuracy over {len(per_seed)} seeds")
    v = spread_verdict(results)
    lines = ["## Accuracy over the learning-rate sweep (pooled over seeds)", "",
             "| lr | LoRA | SingLoRA |", "|---|---|---|",
             *[f"| {lr:g} | {a:.3f} | {b:.3f} |" for lr, a, b in zip(lrs, pooled["lora"], pooled["singlora"])],
             "", "![sweep](sweep.png)", "",
             f"**Part (b), SingLoRA's accuracy varies less over the rates: {v.outcome}** ({v.sentence()}).", ""]
    return "\n".join(lines) + "\n"
