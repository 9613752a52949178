"""EVA initialisation against LoRA's random one: steps to reach LoRA's final loss (Paischer et
al. 2024, "One Initialization to Rule them All: Fine-tuning via Explained Variance
Adaptation", arXiv 2410.07170).

Method. EVA runs an incremental SVD of each targeted matrix's input activations on the
fine-tuning data until the top right singular vectors are stable, initialises LoRA's A with
them (B = 0: the model is unchanged at step 0) and re-allocates the total rank r x (number of
matrices) to the components that explain the most variance (:mod:`jaxlab.peft.eva`). LoRA
draws A at random (A ~ N(0, 1/n), B = 0). The paper reports faster convergence and better
final scores than LoRA and other initialisations.

Setting. The pre-trained byte base of the adapter studies (``configs.models`` "quickstart", 600
steps on the embedded corpus) is fine-tuned with SFT (:func:`jaxlab.peft.study.finetune_arm`)
on the ``last_letters`` task ("last vobu ke tamin:" -> "uen", 2 or 3 words), chosen in a pilot
(seed 100, before the claim was fixed) where the untuned base scores 0 (floor 0.027), full
fine-tuning reaches 0.30 in 100 steps (lr 1e-3) and LoRA rank 4 on attention 0.10 in 250 steps
(lr 5e-3; 0.00 in 100 steps at 3e-3 or 1.5e-2), while ``count`` stayed at its 0.37 floor and
2-digit ``arithmetic`` at 0.06 even fully fine-tuned. Both arms adapt q, k, v, gate, up and
down of every layer (EVA does not read o's input) at rank ``rank`` = 4 (EVA: the same total
rank, rho = 2, so a matrix gets 0 to 8), alpha = 16, the same learning rate ``lr``, the same
data in the same order, ``steps`` steps, the train loss logged at every step. A seed draws the
train / test problems, the data order and LoRA's random A.

Claim (version 1, fixed before any run): EVA reaches LoRA's final loss in fewer steps. Per
seed, the target is LoRA's final loss, the mean of its logged train losses over the last 10% of
the steps; each arm's curve is smoothed by a trailing mean over 10 logged steps
(:func:`jaxlab.peft.compare.trailing_mean_S`, one batch's loss is noisy), and its
steps-to-target is the first step whose smoothed loss is <= the target
(:func:`jaxlab.peft.study.steps_to_reach`; a curve that never gets there counts as
``steps`` + 1). Effect: mean over seeds of steps_LoRA - steps_EVA (positive: EVA is faster),
95% Student t interval over seeds (``jaxlab.stats.t_interval``). Held when the interval is
above 0, not held when it is at or below 0, otherwise inconclusive. Preconditions: (1) LoRA
learns: on every seed its final loss is below 0.9 x the mean of its first 10% of losses;
(2) EVA's rank allocation is valid: its total rank equals LoRA's (r x number of matrices) on
every seed. Greedy test accuracy of both arms is reported, not claimed.

Presets. ``smoke`` (the tests): a random 1-layer byte model, a few steps; the claim's numbers
are computed but on a random model they say nothing. ``paper``: the pre-trained base, lr 1e-2
(the pilot's working rate for LoRA), 200 steps of 16 packed rows of 64 tokens, 2000 train / 256
test problems, 5 seeds. One arm of 200 steps took about 8 minutes on the 2 heavily shared CPU
cores, so the seeds were trained in parallel processes into the run's seed folders, which
``jaxlab run`` then loads: seeds 0-2 took 33 minutes of training, seeds 3-4 (on a less loaded
machine) 6, and loading and evaluating the 10 arms 1 more (measured):

    jaxlab run experiments/eva_init.py --preset smoke --seeds 2 --publish
    jaxlab run experiments/eva_init.py --preset paper --seeds 5 --workdir OUT/eva \\
        --set base_dir=OUT/byte_base_q600 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab import tasks as task_lib
from jaxlab.evals.floor import constant_guess_floor
from jaxlab.peft.adapters import AdapterSpec
from jaxlab.peft.compare import study_base, trailing_mean_S
from jaxlab.peft.study import finetune_arm, steps_to_reach
from jaxlab.train.plots import plot_curves

CLAIM = ("From the same pre-trained base, at the same total rank and learning rate, LoRA initialised "
         "by EVA reaches randomly initialised LoRA's final train loss in fewer steps.")
CLAIM_VERSION = 1
REPORT_KEYS = ["lora_minus_eva_steps", "lora_steps_to_target", "eva_steps_to_target", "target_loss",
               "lora_test_accuracy", "eva_test_accuracy"]
METHODS = ("lora", "eva")
EVA_TARGETS = r"^layers/(attn/(q|k|v)|mlp/(gate|up|down))$"
TAIL = 0.10          # the last (first) share of the steps whose mean loss is LoRA's final (first) loss
WINDOW = 10          # trailing mean over this many logged steps
LEARNS = 0.9         # LoRA's final loss must be below this share of its first loss

PRESETS = {
    "smoke": {"model": "tiny-random", "n_train": 64, "n_test": 16, "steps": 6, "batch_size": 8,
              "seq_len": 32, "max_new_tokens": 4, "rank": 2, "lr": 1e-2},
    "paper": {"model": "quickstart", "base_steps": 600, "n_train": 2000, "n_test": 256, "steps": 200,
              "batch_size": 16, "seq_len": 64, "max_new_tokens": 4, "rank": 4, "lr": 1e-2},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "eva_init"
    model: str = "quickstart"      # a configs.models preset pre-trained here, or "tiny-random"
    base_dir: str = ""             # where the pre-trained base lives (empty: <workdir>/base)
    base_steps: int = 600
    task: str = "last_letters"
    train_difficulty: tuple[int, int] = (2, 3)
    n_train: int = 2000
    n_test: int = 256
    rank: int = 4
    alpha: float = 16.0
    rho: float = 2.0
    targets: str = EVA_TARGETS
    lr: float = 1e-2
    steps: int = 200
    batch_size: int = 16
    seq_len: int = 64
    max_new_tokens: int = 4
    eval_batch_size: int = 64
    seed: int = 0


def get_config() -> Config:
    return Config()


def steps_to_target(losses_S, steps_S, target: float, steps: int) -> int:
    """The first logged step whose trailing-mean loss (``WINDOW`` steps) is <= ``target``;
    ``steps`` + 1 when the curve never gets there (module docstring). A relative tolerance of
    1e-9 absorbs rounding: LoRA's smoothed loss at its last step is its own target."""
    s = steps_to_reach(trailing_mean_S(losses_S, WINDOW), steps_S, target + 1e-9 * abs(target))
    return steps + 1 if not np.isfinite(s) else int(s)


def tail_mean(losses_S, share: float, last: bool = True) -> float:
    """Mean of the last (``last``) or first ``share`` of the logged losses (at least one)."""
    x = np.asarray(losses_S, np.float64)
    k = max(1, int(round(share * x.size)))
    return float(x[-k:].mean() if last else x[:k].mean())


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    workdir = Path(workdir)
    task = task_lib.get(cfg.task, train_difficulty=tuple(cfg.train_difficulty))
    s = task.splits(cfg.seed, cfg.n_train, cfg.n_test, 0)
    train, test = s["train"], s["test"]
    model_cfg, base = study_base(cfg.model, base_dir=cfg.base_dir, base_steps=cfg.base_steps,
                                 workdir=workdir, seed=cfg.seed)
    out = {"floor": constant_guess_floor([e.answer for e in test])}
    arms = {}
    for method in METHODS:
        spec = AdapterSpec(method=method, targets=cfg.targets, rank=cfg.rank, alpha=cfg.alpha, rho=cfg.rho)
        arm = finetune_arm(workdir / method, base, model_cfg, task, train, test, spec=spec, lr=cfg.lr,
                           steps=cfg.steps, batch_size=cfg.batch_size, seq_len=cfg.seq_len, seed=cfg.seed,
                           max_new_tokens=cfg.max_new_tokens, eval_batch_size=cfg.eval_batch_size,
                           log_every=1, progress=progress)
        arms[method] = arm
        out[f"{method}_losses"] = arm.losses_S.tolist()
        out[f"{method}_steps"] = arm.steps_S.tolist()
        out[f"{method}_test_correct"] = arm.correct_P.tolist()
        out[f"{method}_test_accuracy"] = arm.accuracy
        out[f"{method}_params"] = arm.trainable_params
    # EVA's total rank: the columns of its A that are not zero, over layers and modules
    out["eva_total_rank"] = int(sum(int(np.count_nonzero(np.abs(np.asarray(a)).sum(axis=-2) > 0))
                                    for a in _leaves(arms["eva"].trainable, "lora_a")))
    out["lora_total_rank"] = int(sum(np.prod(np.shape(a)[:-2] or (1,)) * np.shape(a)[-1]
                                     for a in _leaves(arms["lora"].trainable, "lora_a")))
    target = tail_mean(arms["lora"].losses_S, TAIL)
    out["target_loss"] = target
    out["lora_first_loss"] = tail_mean(arms["lora"].losses_S, TAIL, last=False)
    for method in METHODS:
        out[f"{method}_steps_to_target"] = steps_to_target(arms[method].losses_S, arms[method].steps_S, target,
                                                           cfg.steps)
    out["lora_minus_eva_steps"] = out["lora_steps_to_target"] - out["eva_steps_to_target"]
    curves = {m: [{"step": int(st), "train/loss": float(l)} for st, l in
                  zip(arms[m].steps_S, trailing_mean_S(arms[m].losses_S, WINDOW))] for m in METHODS}
    plot_curves(curves, ["train/loss"], workdir / "loss.png",
                title=f"train loss, trailing mean of {WINDOW} (seed {cfg.seed}); target {target:.3f}",
                ylabel="loss")
    out["report"] = "\n".join([
        f"{cfg.model} base, task {cfg.task} {tuple(cfg.train_difficulty)}: {cfg.n_train} train / {cfg.n_test} "
        f"test problems; rank {cfg.rank} on q, k, v, gate, up, down; lr {cfg.lr:g}; {cfg.steps} steps.", "",
        "| arm | trainable | steps to target | final loss | test accuracy |", "|---|---|---|---|---|",
        *[f"| {m} | {out[f'{m}_params']:,} | {out[f'{m}_steps_to_target']} | "
          f"{tail_mean(arms[m].losses_S, TAIL):.3f} | {out[f'{m}_test_accuracy']:.3f} |" for m in METHODS],
        "", f"Target (LoRA's final loss): {target:.4f}. Total rank: LoRA {out['lora_total_rank']}, "
        f"EVA {out['eva_total_rank']}.", "", "![loss](loss.png)"])
    return out


def _leaves(tree: dict, name: str) -> list:
    found = []
    for key, value in tree.items():
        if isinstance(value, dict):
            found += _leaves(value, name)
        elif key == name:
            found.append(value)
    return found


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``: the
    targets and steps are recomputed from the logged losses."""
    per_seed = next(iter(runs.values()))
    diffs, learns, ranks = [], [], []
    for r in per_seed:
        steps = int(r["lora_steps"][-1])
        target = tail_mean(r["lora_losses"], TAIL)
        d = (steps_to_target(r["lora_losses"], r["lora_steps"], target, steps)
             - steps_to_target(r["eva_losses"], r["eva_steps"], target, steps))
        diffs.append(d)
        learns.append(target < LEARNS * tail_mean(r["lora_losses"], TAIL, last=False))
        ranks.append(r["eva_total_rank"] == r["lora_total_rank"])
    effect = float(np.mean(diffs))
    low, high = stats.t_interval(diffs) if len(diffs) >= 2 else (effect, effect)
    low, high = min(low, effect), max(high, effect)
    return stats.decide(
        effect, low, high, threshold=0.0,
        test=(f"Student t over {len(diffs)} seeds of steps_LoRA - steps_EVA to LoRA's final loss "
              f"(per seed: {', '.join(str(d) for d in diffs)})"),
        preconditions=[
            ("at least 2 seeds", len(diffs) >= 2, f"{len(diffs)} seeds"),
            (f"LoRA learns (final loss < {LEARNS} x first loss on every seed)", all(learns),
             f"{sum(learns)} of {len(learns)} seeds"),
            ("EVA's total rank equals LoRA's", all(ranks), f"{sum(ranks)} of {len(ranks)} seeds")])


def summarize(results: dict, workdir: Path) -> str:
    """Per-seed steps to target and accuracy, and the mean loss curves over seeds."""
    per_seed = next(iter(results.values()))
    curves = {}
    for m in METHODS:
        mean_S = np.mean([trailing_mean_S(r[f"{m}_losses"], WINDOW) for r in per_seed], axis=0)
        curves[m] = [{"step": int(s), "train/loss": float(l)} for s, l in zip(per_seed[0][f"{m}_steps"], mean_S)]
    plot_curves(curves, ["train/loss"], Path(workdir) / "loss.png",
                title=f"train loss (trailing mean of {WINDOW}), mean over {len(per_seed)} seeds", ylabel="loss")
    acc = {m: float(np.mean([r[f"{m}_test_accuracy"] for r in per_seed])) for m in METHODS}
    rows = [f"| {k} | {r['target_loss']:.4f} | {r['lora_steps_to_target']} | {r['eva_steps_to_target']} | "
            f"{r['lora_test_accuracy']:.3f} | {r['eva_test_accuracy']:.3f} |" for k, r in enumerate(per_seed)]
    return "\n".join(["## Steps to LoRA's final loss per seed", "",
                      "| seed | target loss | LoRA steps | EVA steps | LoRA test acc | EVA test acc |",
                      "|---|---|---|---|---|---|", *rows, "",
                      f"Mean test accuracy (reported, not claimed): LoRA {acc['lora']:.3f}, EVA {acc['eva']:.3f}.",
                      "", "![loss](loss.png)", ""]) + "\n"
