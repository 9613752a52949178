"""DFT vs SFT from a model with a prior on the task (Wu et al. 2025, "On the Generalization of
SFT: A Reinforcement Learning Perspective with Reward Rectification").

Method. SFT minimises the token cross-entropy of the reference answer; DFT ("one-line change")
weights each token's cross-entropy by its own stop-gradient probability,

    L_SFT = E [ - sum_t log pi(y*_t | y*_<t, x) ]
    L_DFT = E [ - sum_t sg(pi(y*_t | y*_<t, x)) log pi(y*_t | y*_<t, x) ]

(``jaxlab.losses.lm.dft_sums``). SFT's gradient is a policy gradient with the implicit reward
1 / pi on the reference tokens; DFT removes it. DFT moves tokens in proportion to the
probability the model already gives them, so it needs a model with a prior on the targets: a
pretrained model on a task it partly solves (from a random model, pi ~ 1 / V and DFT barely
moves).

Task: ``instructed_arithmetic`` (:mod:`jaxlab.tasks.instructed`), additions of 1- and 2-digit
operands asked in words ("What is 12+34? Answer with the number only."), answered through the
model's chat template; the verifier takes the last integer of the answer line, so
SmolLM2-135M-Instruct's "12 + 34 = 46" counts and it partly solves the task before any
training (3 of 16 sums of numbers below 100 in a probe before the claim was fixed; 10 of 24
test problems, well above their floor of 2, in a 2-step pipeline check of the paper preset).
The train split (the reference answer is the bare number) and the test split are disjoint
(commuted sums are one problem); OOD (3-digit operands) is reported, not claimed.

Protocol. From the same pretrained weights, two arms train for ``steps`` steps on the same
data in the same order, with the same optimiser and learning rate: SFT (cross-entropy) and
DFT. Each arm, and the shared start, answers every test problem greedily; the curves show
test accuracy every ``eval_every`` steps. A seed changes the train / test split and the data
order.

Claim (version 2, fixed before any run of this design): after the same number of steps, DFT's
greedy test accuracy exceeds SFT's. Effect: mean over seeds and test problems of
correct_DFT - correct_SFT; held when its 95% interval (nested paired bootstrap over seeds and
problems, ``jaxlab.stats.paired_bootstrap_interval``) lies above 0, not held when it lies at
or below 0, otherwise inconclusive. McNemar's exact test on the pooled pairs is reported
beside it. Precondition: the shared start partly solves the task, i.e. its test accuracy
(pooled over seeds) is above the constant-guess floor (the share of the most common answer)
by 2 standard errors (``jaxlab.evals.floor``); a model at the floor has no prior for DFT to
use, and two arms at 0 say nothing. (Version 1 compared a byte model warm-started from
scratch; its OOD was 0 against 0.)

Presets. ``smoke`` (the tests; about half a minute on 2 CPU cores): a tiny random byte-level
model, a few steps; its start is at the floor, so its verdict is inconclusive by the
precondition. ``paper``: SmolLM2-135M-Instruct, 3 seeds, 2000 train and 500 test (and 500 OOD)
problems, 100 steps of 16 packed rows of 128 tokens. It needs a GPU (on 2 shared CPU cores one
SmolLM2 step took 15-60 s: 2 x 3 x 100 steps and 2 x 3 x 5 evaluations of 1000 problems would
take most of a day). On one H200, an estimate from the step and generation counts (not yet
measured): about 15 minutes:

    jaxlab run experiments/dft_vs_sft.py --preset smoke --seeds 2 --publish
    jaxlab run experiments/dft_vs_sft.py --workdir OUT/dft_vs_sft --preset paper --seeds 3 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.evals.floor import clear_of_floor, constant_guess_floor
from jaxlab.evals.generation import greedy_correct
from jaxlab.tasks.instructed import InstructedArithmetic
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.plots import plot_curves
from jaxlab.train.sft import SFTConfig, train_sft
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.interop.models import load_experiment_model

CLAIM = ("After the same number of fine-tuning steps from a model that partly solves the task "
         "(SmolLM2-135M-Instruct, additions asked in words), DFT's greedy test accuracy exceeds SFT's.")
CLAIM_VERSION = 2
REPORT_KEYS = ["dft_minus_sft", "start_test_accuracy", "sft_test_accuracy", "dft_test_accuracy",
               "sft_ood_accuracy", "dft_ood_accuracy", "floor"]
ARMS = (("sft", "ce"), ("dft", "dft"))
PRESETS = {
    "smoke": {"model": "tiny-random", "n_train": 64, "n_test": 32, "n_ood": 16, "steps": 8,
              "eval_every": 4, "batch_size": 8, "seq_len": 64, "max_new_tokens": 6,
              "optim.lr": 3e-3, "optim.warmup_steps": 2},
    "paper": {"model": "smollm2-135m-instruct", "n_train": 2000, "n_test": 500, "n_ood": 500,
              "steps": 100, "eval_every": 25, "batch_size": 16, "seq_len": 128, "max_new_tokens": 16,
              "optim.lr": 2e-5, "optim.warmup_steps": 10},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "dft_vs_sft"
    model: str = "smollm2-135m-instruct"  # or "tiny-random" (a byte-level model, for the tests)
    train_digits: tuple[int, int] = (1, 2)
    ood_digits: tuple[int, int] = (3, 3)
    n_train: int = 2000
    n_test: int = 500
    n_ood: int = 500
    steps: int = 100
    eval_every: int = 25
    batch_size: int = 16
    seq_len: int = 128
    max_new_tokens: int = 16
    eval_batch_size: int = 64
    optim: OptimConfig = OptimConfig(lr=2e-5, warmup_steps=10, schedule="constant", weight_decay=0.0,
                                     clip_norm=1.0)
    seed: int = 0
    mesh: MeshConfig = MeshConfig(data=1)  # --set mesh.data=8 or mesh.fsdp=8: 8 devices


def get_config() -> Config:
    return Config()


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    task = InstructedArithmetic(ops="+", train_difficulty=tuple(cfg.train_digits),
                                ood_difficulty=tuple(cfg.ood_digits))
    splits = task.splits(cfg.seed, cfg.n_train, cfg.n_test, cfg.n_ood)
    records = [{"prompt": e.prompt, "response": e.answer} for e in splits["train"]]
    model_cfg, params0, tok = load_experiment_model(cfg.model, cfg.seed)
    mesh = experiment_mesh(cfg.mesh)

    examples = splits["test"] + splits["ood"]  # one generation shape for both splits
    n_test = len(splits["test"])

    def correct(params):
        """{"test": int8 [n_test], "ood": int8 [n_ood]} of greedy answers (host params: one
        compilation, whatever sharding the training left them in)."""
        c = greedy_correct(model_cfg, jax.device_get(params), tok, task, examples,
                           max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size)
        return {"test": c[:n_test], "ood": c[n_test:]}

    start = correct(params0)
    out = {"floor": constant_guess_floor([e.answer for e in splits["test"]]),
           "start_test_correct": start["test"].tolist(), "start_ood_correct": start["ood"].tolist(),
           "start_test_accuracy": float(start["test"].mean()), "start_ood_accuracy": float(start["ood"].mean())}
    curves = {}
    for label, loss in ARMS:
        final = {}

        def evaluate(params, step, final=final):
            final.clear()
            final.update(step=step, **correct(params))
            return {"test_accuracy": float(final["test"].mean()), "ood_accuracy": float(final["ood"].mean())}

        sft = SFTConfig(loss=loss, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                        loop=LoopConfig(steps=cfg.steps, seed=cfg.seed, log_every=max(cfg.steps // 20, 1),
                                        eval_every=cfg.eval_every, checkpoint_every=cfg.steps))
        result = train_sft(workdir / label, records, model_cfg=model_cfg, sft=sft, optim=cfg.optim, mesh=mesh,
                           init_params=params0, evaluate=evaluate, progress=progress, tokenizer=tok)
        assert final.get("step") == cfg.steps  # the loop evaluates at its last step
        ood = final["ood"]
        evals = [r for r in result.records if "val/test_accuracy" in r]
        curves[label] = [{"step": 0, "val/test_accuracy": out["start_test_accuracy"],
                          "val/ood_accuracy": out["start_ood_accuracy"]}] + evals
        losses = [r["train/loss"] for r in result.records if "train/loss" in r]
        out.update({f"{label}_test_correct": final["test"].tolist(), f"{label}_ood_correct": ood.tolist(),
                    f"{label}_test_accuracy": float(final["test"].mean()), f"{label}_ood_accuracy": float(ood.mean()),
                    f"{label}_test_curve": [[r["step"], r["val/test_accuracy"]] for r in curves[label]],
                    f"{label}_ood_curve": [[r["step"], r["val/ood_accuracy"]] for r in curves[label]],
                    f"{label}_first_loss": losses[0], f"{label}_last_loss": losses[-1]})
    out["dft_minus_sft"] = out["dft_test_accuracy"] - out["sft_test_accuracy"]
    plot_curves(curves, ["val/test_accuracy", "val/ood_accuracy"], workdir / "accuracy.png",
                title=f"DFT vs SFT from {cfg.model} (seed {cfg.seed})", ylabel="greedy accuracy")
    out["report"] = "\n".join([
        f"{cfg.model}: additions of {tuple(cfg.train_digits)}-digit operands asked in words, "
        f"{cfg.n_train} train / {cfg.n_test} test / {cfg.n_ood} OOD ({tuple(cfg.ood_digits)} digits) "
        f"problems; {cfg.steps} steps of each arm, batch {cfg.batch_size} x {cfg.seq_len}, lr {cfg.optim.lr}.", "",
        "| model | test accuracy | OOD accuracy |", "|---|---|---|",
        f"| start | {out['start_test_accuracy']:.3f} | {out['start_ood_accuracy']:.3f} |",
        *[f"| {k.upper()} | {out[f'{k}_test_accuracy']:.3f} | {out[f'{k}_ood_accuracy']:.3f} |" for k, _ in ARMS],
        "", f"Constant-guess floor of the test split: {out['floor']:.3f}.", "", "![accuracy](accuracy.png)"])
    return out


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    dft_SP = np.array([r["dft_test_correct"] for r in per_seed], np.float64)
    sft_SP = np.array([r["sft_test_correct"] for r in per_seed], np.float64)
    start_SP = np.array([r["start_test_correct"] for r in per_seed], np.float64)
    floor = float(np.mean([r["floor"] for r in per_seed]))
    b = stats.paired_bootstrap_interval(dft_SP, sft_SP)
    mc = stats.mcnemar_exact(dft_SP.reshape(-1), sft_SP.reshape(-1))
    clear, detail = clear_of_floor(start_SP, floor)
    return stats.decide(
        b["effect"], b["low"], b["high"], threshold=0.0,
        test=(f"nested paired bootstrap over {b['seeds']} seeds x {b['problems']} test problems; "
              f"McNemar exact p = {mc['p_value']:.3g} (DFT-only {mc['b']}, SFT-only {mc['c']})"),
        preconditions=[("the start partly solves the task (above the constant-guess floor by 2 SE)",
                        clear, f"start {detail}")])


def summarize(results: dict, workdir: Path) -> str:
    """Each seed's accuracy curves, side by side (copied from the seeds' folders)."""
    lines = ["## Test accuracy per seed", ""]
    for name, per_seed in results.items():
        for k, r in enumerate(per_seed if isinstance(per_seed, list) else [per_seed]):
            curve = lambda arm: ", ".join(f"{s}: {a:.3f}" for s, a in r[f"{arm}_test_curve"])  # noqa: E731
            lines.append(f"- seed {k}: SFT [{curve('sft')}]; DFT [{curve('dft')}] "
                         f"([plot]({name}/seed{k}/accuracy.png))")
    return "\n".join(lines) + "\n"
