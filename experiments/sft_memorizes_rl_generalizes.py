"""SFT memorizes, RL generalizes (Chu et al. 2025, "SFT Memorizes, RL Generalizes: A
Comparative Study of Foundation Model Post-training"), on a RULE variant of a card task.

Task: ``card_sum`` (:mod:`jaxlab.tasks.instructed`), the textual GeneralPoints of the paper
reduced to a sum: "Cards: 7, K, 3. J, Q and K count as 10. What is the sum of the cards?
Answer with the number only." -> "20", hands of 3 to 5 cards, each holding a face card. In
distribution (train and test) the prompt states J, Q, K = 10; out of distribution (OOD) it
states J, Q, K = 11, 12, 13, on the same hands as the test split, so the rule is the only
change and reading it is the only way to answer. The verifier takes the last integer of the
answer line (the model's chat template, greedy decoding).

Protocol (the paper's): a short SFT warm start on the train split (``warm``; it teaches the
answer format) gives the shared start. From it two arms train on the same train prompts with
the same optimiser: SFT on the reference answers, and RL (GRPO: group-normalised advantages,
clipped ratio, reward = the verifier's 1/0, no KL). Both are evaluated (greedy, every test and
OOD problem) at ``n_points`` points of equal compute and at the end.

Compute matching. The arms are compared at equal training compute, as in the paper's figures
(x-axis: FLOPs, 6 N per trained token and 2 N per generated token, Kaplan et al.): RL runs
``rl.loop.steps`` steps, and SFT runs the steps of the same compute,

    S_sft = S_rl * (6 R W + 2 R W / E) / (6 B T)       (``jaxlab.rl.compute.matched_sft_steps``)

with R = prompts x group rows of W columns, E = ppo_epochs, B x T the SFT batch. Equal
samples seen would hand RL its rollouts for free (each RL sample costs a generation and a
training pass, each SFT sample a training pass); equal optimizer steps would compare batches
of different sizes. Equal compute asks which use of the same budget generalises, which is the
paper's question.

Claim (version 2, fixed before any run of this design): RL's OOD accuracy gain over the shared
start exceeds SFT's. Effect: mean over seeds and OOD problems of
(correct_RL - correct_start) - (correct_SFT - correct_start) = correct_RL - correct_SFT; held
when its 95% interval (nested paired bootstrap over seeds and problems) lies above 0, not held
when it lies at or below 0, otherwise inconclusive. Preconditions: (1) both arms improve in
distribution (for each arm, the paired bootstrap interval of its test gain over the start lies
above 0): a comparison of arms that did not learn the task says nothing about generalisation;
(2) the OOD split is off its floor: the start or an arm answers OOD problems above the
constant-guess floor by 2 SE (with every model at the floor, 0 against 0, the effect is no
evidence either way). A seed changes the splits, the warm start's and both arms' data order
and RL's samples. (Version 1 compared a byte model's accuracy on longer inputs, one seed.)

Presets. ``smoke`` (the tests; about a minute on 2 CPU cores): a tiny random byte-level model,
a few steps; it does not learn the task, so its verdict is inconclusive by precondition (1).
``paper``: SmolLM2-135M-Instruct, 3 seeds, 1000 train / 500 test / 500 OOD problems, 30 warm
steps, 100 RL steps of 16 prompts x 8 samples (rows of 88 columns under SmolLM2's chat
template) against the compute-matched 732 SFT steps of 16 x 128 tokens
(100 * 8 * 128 * 88 / (6 * 16 * 128) = 733, rounded to a multiple of the 4 points). It needs a
GPU (on 2 CPU cores, shared, one SmolLM2 SFT step took 15-60 s and one RL step over a minute in
a pipeline check). On one H200, an estimate from the step and generation counts (not yet
measured): about 30 to 45 minutes:

    jaxlab run experiments/sft_memorizes_rl_generalizes.py --preset smoke --seeds 2 --publish
    jaxlab run experiments/sft_memorizes_rl_generalizes.py --workdir OUT/sft_memorizes_rl_generalizes \\
        --preset paper --seeds 3 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.evals.floor import clear_of_floor, constant_guess_floor
from jaxlab.evals.generation import greedy_correct
from jaxlab.rl import RLConfig, row_width, train_rl
from jaxlab.rl.compute import matched_sft_steps, rl_step_flops, sft_step_flops
from jaxlab.tasks.instructed import CardSum
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sft import SFTConfig, train_sft
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.interop.models import load_experiment_model

CLAIM = ("At equal training compute from a shared SFT start, RL's gain in accuracy on the OOD "
         "rule variant (J, Q, K = 11, 12, 13 instead of 10) exceeds SFT's.")
CLAIM_VERSION = 2
REPORT_KEYS = ["rl_minus_sft_ood", "start_test", "sft_test", "rl_test", "start_ood", "sft_ood", "rl_ood",
               "sft_steps", "rl_steps"]
SEED_KEYS = ("seed",)  # the loops' seeds are derived from it
PRESETS = {
    "smoke": {"model": "tiny-random", "card_counts": (3, 4), "n_train": 64, "n_test": 16, "n_ood": 16,
              "warm_steps": 4, "batch_size": 8, "seq_len": 128, "n_points": 2, "max_new_tokens": 6,
              "rl.prompts_per_step": 2, "rl.group_size": 4, "rl.max_new_tokens": 6, "rl.loop.steps": 2,
              "warm_optim.lr": 3e-3, "optim.lr": 1e-3},
    "paper": {"model": "smollm2-135m-instruct", "card_counts": (3, 5), "n_train": 1000, "n_test": 500,
              "n_ood": 500, "warm_steps": 30, "batch_size": 16, "seq_len": 128, "n_points": 4,
              "max_new_tokens": 16, "rl.prompts_per_step": 16, "rl.group_size": 8, "rl.max_new_tokens": 8,
              "rl.loop.steps": 100, "warm_optim.lr": 2e-5, "optim.lr": 1e-5},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "sft_memorizes_rl_generalizes"
    model: str = "smollm2-135m-instruct"  # or "tiny-random" (a byte-level model, for the tests)
    card_counts: tuple[int, int] = (3, 5)
    n_train: int = 1000
    n_test: int = 500
    n_ood: int = 500
    warm_steps: int = 30
    batch_size: int = 16  # SFT rows per step (warm start and SFT arm)
    seq_len: int = 128
    warm_optim: OptimConfig = OptimConfig(lr=2e-5, warmup_steps=5, schedule="constant", weight_decay=0.0,
                                          clip_norm=1.0)
    # the two arms: the same optimiser; RL's steps set SFT's (compute-matched)
    optim: OptimConfig = OptimConfig(lr=1e-5, warmup_steps=5, schedule="constant", weight_decay=0.0,
                                     clip_norm=1.0)
    rl: RLConfig = RLConfig(prompts_per_step=16, group_size=8, ppo_epochs=1, max_new_tokens=8,
                            temperature=1.0, eps_low=0.2, eps_high=0.28,
                            loop=LoopConfig(steps=100, log_every=1))
    n_points: int = 4  # evaluation points at equal compute (after the start)
    max_new_tokens: int = 16  # greedy evaluation
    eval_batch_size: int = 64
    seed: int = 0
    mesh: MeshConfig = MeshConfig(data=1)  # --set mesh.data=8 or mesh.fsdp=8: 8 devices


def get_config() -> Config:
    return Config()


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    task = CardSum(train_difficulty=tuple(cfg.card_counts), ood_difficulty=tuple(cfg.card_counts))
    splits = task.splits(cfg.seed, cfg.n_train, cfg.n_test, cfg.n_ood)
    records = [{"prompt": e.prompt, "response": e.answer} for e in splits["train"]]
    model_cfg, params0, tok = load_experiment_model(cfg.model, cfg.seed)
    n_params = sum(x.size for x in jax.tree.leaves(params0))
    mesh = experiment_mesh(cfg.mesh)
    examples = splits["test"] + splits["ood"]  # one generation shape for both splits
    n_test = len(splits["test"])

    def correct(params):
        c = greedy_correct(model_cfg, jax.device_get(params), tok, task, examples,
                           max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size)
        return {"test": c[:n_test], "ood": c[n_test:]}

    def sft_cfg(steps, points):
        return SFTConfig(batch_size=cfg.batch_size, seq_len=cfg.seq_len, loop=LoopConfig(
            steps=steps, seed=cfg.seed, log_every=max(steps // 20, 1), eval_every=max(steps // points, 1),
            checkpoint_every=max(steps // points, 1)))

    warm = train_sft(workdir / "warm", records, model_cfg=model_cfg, sft=sft_cfg(cfg.warm_steps, 1),
                     optim=cfg.warm_optim, mesh=mesh, init_params=params0, progress=progress, tokenizer=tok)
    start_params = jax.device_get(warm.params)
    start = correct(start_params)

    # compute matching (module docstring)
    rl_steps = cfg.rl.loop.steps
    if rl_steps % cfg.n_points:
        raise ValueError(f"rl.loop.steps={rl_steps} must divide into n_points={cfg.n_points} evaluations")
    width = row_width(splits["train"], cfg.rl, tok)
    sft_steps = matched_sft_steps(rl_steps, rows=cfg.rl.rows, width=width, ppo_epochs=cfg.rl.ppo_epochs,
                                  batch_size=cfg.batch_size, seq_len=cfg.seq_len, multiple_of=cfg.n_points)
    flops = {"sft": sft_step_flops(n_params, cfg.batch_size, cfg.seq_len),
             "rl": rl_step_flops(n_params, cfg.rl.rows, width, cfg.rl.ppo_epochs)}

    out = {"sft_steps": sft_steps, "rl_steps": rl_steps, "rl_width": width, "n_params": int(n_params),
           "sft_step_flops": flops["sft"], "rl_step_flops": flops["rl"],
           "ood_floor": constant_guess_floor([e.answer for e in splits["ood"]])}
    for s in ("test", "ood"):
        out[f"start_{s}_correct"] = start[s].tolist()
        out[f"start_{s}"] = float(start[s].mean())
    curves = {}
    for arm in ("sft", "rl"):
        final = {}

        def evaluate(params, step, final=final):
            final.clear()
            final.update(step=step, **correct(params))
            return {"test_accuracy": float(final["test"].mean()), "ood_accuracy": float(final["ood"].mean())}

        if arm == "sft":
            result = train_sft(workdir / "sft", records, model_cfg=model_cfg, sft=sft_cfg(sft_steps, cfg.n_points),
                               optim=cfg.optim, mesh=mesh, init_params=start_params, evaluate=evaluate,
                               progress=progress, tokenizer=tok)
            steps = sft_steps
        else:
            every = rl_steps // cfg.n_points
            rl = dataclasses.replace(cfg.rl, loop=dataclasses.replace(
                cfg.rl.loop, seed=cfg.seed, eval_every=every, checkpoint_every=every))
            result = train_rl(workdir / "rl", splits["train"], model_cfg=model_cfg, rl=rl, optim=cfg.optim,
                              mesh=mesh, init_params=start_params, evaluate=evaluate, progress=progress,
                              tokenizer=tok)
            steps = rl_steps
        assert final.get("step") == steps  # the loop evaluates at its last step
        # the curve from metrics.jsonl (a resumed run evaluates only its remaining points)
        curves[arm] = [(0.0, out["start_test"], out["start_ood"])] + [
            (r["step"] * flops[arm], r["val/test_accuracy"], r["val/ood_accuracy"])
            for r in result.records if "val/test_accuracy" in r]
        for s in ("test", "ood"):
            out[f"{arm}_{s}_correct"] = final[s].tolist()
            out[f"{arm}_{s}"] = float(final[s].mean())
            out[f"{arm}_{s}_gain"] = out[f"{arm}_{s}"] - out[f"start_{s}"]
        out[f"{arm}_curve"] = [list(p) for p in curves[arm]]
        out[f"{arm}_train_flops"] = steps * flops[arm]
    out["rl_minus_sft_ood"] = out["rl_ood_gain"] - out["sft_ood_gain"]
    _plot(curves, workdir / "curves.png", title=f"{cfg.model}, seed {cfg.seed}")
    rows = [f"| {name} | {out[f'{k}_test']:.3f} | {out[f'{k}_ood']:.3f} | {steps} |"
            for name, k, steps in (("start (SFT warm start)", "start", cfg.warm_steps),
                                   ("SFT", "sft", sft_steps), ("RL (GRPO)", "rl", rl_steps))]
    out["report"] = "\n".join([
        f"{cfg.model}: card sums of {tuple(cfg.card_counts)} cards, {cfg.n_train} train / {cfg.n_test} test / "
        f"{cfg.n_ood} OOD (rule variant) problems. Compute-matched: {rl_steps} RL steps "
        f"({cfg.rl.rows} rows x {width} columns) = {sft_steps} SFT steps ({cfg.batch_size} x {cfg.seq_len}); "
        f"{out['rl_train_flops']:.3g} vs {out['sft_train_flops']:.3g} FLOPs.", "",
        "| model | test (J, Q, K = 10) | OOD (J, Q, K = 11, 12, 13) | steps |", "|---|---|---|---|", *rows,
        "", f"Constant-guess floor of the OOD split: {out['ood_floor']:.3f}.", "", "![curves](curves.png)"])
    return out


def _plot(curves: dict, path: Path, *, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for arm, points in curves.items():
        x = [p[0] for p in points]
        for ax, i, split in ((axes[0], 1, "in distribution (test)"), (axes[1], 2, "OOD rule variant")):
            ax.plot(x, [p[i] for p in points], marker="o", label=arm.upper())
            ax.set_title(split)
    for ax in axes:
        ax.set_xlabel("training compute (FLOPs)")
        ax.set_ylabel("greedy accuracy")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))

    def stack(key):
        return np.array([r[key] for r in per_seed], np.float64)

    b = stats.paired_bootstrap_interval(stack("rl_ood_correct"), stack("sft_ood_correct"))
    pre = []
    gains = {arm: stats.paired_bootstrap_interval(stack(f"{arm}_test_correct"), stack("start_test_correct"))
             for arm in ("sft", "rl")}
    pre.append(("both arms improve in distribution", all(g["low"] > 0 for g in gains.values()),
                "; ".join(f"{arm.upper()} test gain {g['effect']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}]"
                          for arm, g in gains.items())))
    floor = float(np.mean([r["ood_floor"] for r in per_seed]))
    clear = {m: clear_of_floor(stack(f"{m}_ood_correct"), floor) for m in ("start", "sft", "rl")}
    pre.append(("the OOD split is off its floor for some model", any(c for c, _ in clear.values()),
                "; ".join(f"{m} {d}" for m, (_, d) in clear.items())))
    return stats.decide(b["effect"], b["low"], b["high"], threshold=0.0, preconditions=pre,
                        test=f"nested paired bootstrap over {b['seeds']} seeds x {b['problems']} OOD problems")


def summarize(results: dict, workdir: Path) -> str:
    lines = ["## Per seed (accuracy: test / OOD)", ""]
    for name, per_seed in results.items():
        for k, r in enumerate(per_seed if isinstance(per_seed, list) else [per_seed]):
            lines.append(f"- seed {k}: start {r['start_test']:.3f} / {r['start_ood']:.3f}; SFT ({r['sft_steps']} "
                         f"steps) {r['sft_test']:.3f} / {r['sft_ood']:.3f}; RL ({r['rl_steps']} steps) "
                         f"{r['rl_test']:.3f} / {r['rl_ood']:.3f} ([curves]({name}/seed{k}/curves.png))")
    return "\n".join(lines) + "\n"
