"""BitDelta: a fine-tune's delta in one bit per weight (Liu et al. 2024, "BitDelta: Your
Fine-Tune May Only Be Worth One Bit").

Method (:mod:`jaxlab.peft.bitdelta`). A base model is fully fine-tuned on a task
(:func:`jaxlab.peft.study.finetune_arm`). Every attention and MLP kernel's delta, per layer
matrix, is replaced by sign(delta) x alpha with one scale alpha per matrix:

    W_hat = W_base + alpha sign(W_ft - W_base)

alpha starts at mean |delta| (the L2-optimal scale; "init") and is then calibrated by
distillation ("calibrated"): with the signs fixed, the scales alone minimise the squared logit
distance || z_ft - z_hat ||^2 to the fine-tuned model on the fine-tune's training texts (prompt
and answer; the paper used generic C4 text), with Adam for ``calib_steps`` steps. The embeddings
and norms are kept from the fine-tune at full precision (their bits are counted in the whole
delta's ratio). Four models answer the same test problems greedily: the base, the full
fine-tune, BitDelta-init and BitDelta-calibrated. The compression is reported in bits: the
compressed kernels' delta at 1 bit per weight plus a 16-bit scale per matrix, against 16 bits
per weight (the paper's fp16) and 32.

Claim (fixed before any run, version 1): the BitDelta-calibrated model keeps the fine-tune's
task accuracy: non-inferiority at a margin of 0.05. Effect: the mean over seeds and test
problems of correct(BitDelta calibrated) - correct(full FT); held when the lower end of its 95%
interval (nested paired bootstrap over seeds x problems) is above -0.05, not held when the upper
end is at or below -0.05, otherwise inconclusive. Precondition: the full fine-tune learned the
task (its accuracy, pooled over seeds, is above the constant-guess floor by 2 standard errors):
keeping the accuracy of a model that learned nothing is no test. BitDelta-init's accuracy, the
distillation loss before and after calibration, and the compression ratios are reported.

Setting. The quickstart byte model (3 layers, d_model 128) pre-trained 600 steps on the embedded
corpus (``base_dir`` shares one base between experiments), fully fine-tuned on
``arithmetic`` additions of 1- and 2-digit operands ("83+66=" -> "149"; constant-guess floor
0.03): 300 steps of batch 16 at lr 3e-4 (test accuracy 0.21 in a one-seed probe on this base
before the claim was fixed). The scales are distilled 200 steps (batch 16, lr 1e-4, the paper's)
on 512 training texts. Seeds change the data split and order; the base is shared.

Presets. ``smoke`` (the tests): the 1-layer "tiny-random" byte model, a few steps; its
fine-tune learns nothing, so the verdict is inconclusive by the precondition. ``paper``: see
PRESETS; 3 seeds took 18 minutes on 2 shared, heavily loaded CPU cores (4-8 min per seed):

    jaxlab run experiments/bitdelta.py --preset smoke --seeds 1 --workdir /tmp/bitdelta_smoke
    jaxlab run experiments/bitdelta.py --preset paper --seeds 3 --publish --workdir /tmp/bitdelta_paper \\
        --set base_dir=/tmp/byte_base_q600
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from jaxlab import stats

CLAIM = ("A full fine-tune's delta compressed to sign x one distillation-calibrated scale per matrix "
         "(BitDelta) keeps the fine-tune's task accuracy within 0.05.")
CLAIM_VERSION = 1
MARGIN = -0.05
ARMS = ("base", "full", "bitdelta_init", "bitdelta_calibrated")
REPORT_KEYS = ["calibrated_minus_full", "full_accuracy", "bitdelta_init_accuracy", "bitdelta_calibrated_accuracy",
               "base_accuracy", "distill_loss_init", "distill_loss_calibrated", "ratio_vs_fp16"]
PRESETS = {
    "smoke": {"model": "tiny-random", "n_train": 64, "n_test": 8, "steps": 3, "batch_size": 8, "seq_len": 32,
              "max_new_tokens": 2, "eval_batch_size": 8, "calib_steps": 4, "calib_batch_size": 8, "calib_rows": 16,
              "lr": 3e-3},
    "paper": {"model": "quickstart", "base_steps": 600, "n_train": 2000, "n_test": 256, "steps": 300,
              "batch_size": 16, "seq_len": 32, "max_new_tokens": 4, "calib_steps": 200, "calib_rows": 512},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "bitdelta"
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
    lr: float = 3e-4
    targets: str = "all"            # the kernels compressed
    calib_steps: int = 200
    calib_lr: float = 1e-4
    calib_batch_size: int = 16
    calib_rows: int = 512           # training texts the scales are distilled on
    max_new_tokens: int = 4
    eval_batch_size: int = 64
    seed: int = 0


def get_config():
    return Config()


def _rows(records, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [N, T] int32, mask [N, T]): each record's prompt + answer as a right-padded row,
    mask 1 on its tokens (prompt and answer alike: the teacher's logits everywhere count)."""
    from jaxlab.data.chat import encode_record, pad_rows

    rows = pad_rows([encode_record(r) for r in records], seq_len)
    return rows["inputs"], (rows["segment_ids"] > 0).astype(np.float32)


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    import jax

    import jaxlab.tasks as tasks
    from jaxlab.data.tokenizer import BYTES
    from jaxlab.evals.floor import constant_guess_floor
    from jaxlab.evals.generation import greedy_correct
    from jaxlab.peft import bitdelta
    from jaxlab.peft.adapters import AdapterSpec
    from jaxlab.peft.compare import study_base
    from jaxlab.peft.study import finetune_arm
    start = time.time()
    mcfg, base = study_base(cfg.model, base_dir=cfg.base_dir, base_steps=cfg.base_steps, workdir=workdir,
                            seed=0)  # one base for every seed
    task = tasks.get(cfg.task, train_difficulty=tuple(cfg.train_difficulty),
                     **({"ops": cfg.ops} if cfg.task == "arithmetic" else {}))
    splits = task.splits(cfg.seed, cfg.n_train, cfg.n_test, 0)

    def correct(params) -> np.ndarray:
        return greedy_correct(mcfg, params, BYTES, task, splits["test"], max_new_tokens=cfg.max_new_tokens,
                              batch_size=cfg.eval_batch_size)

    arm = finetune_arm(workdir / "full", base, mcfg, task, splits["train"], splits["test"],
                       spec=AdapterSpec(method="none"), lr=cfg.lr, steps=cfg.steps, batch_size=cfg.batch_size,
                       seq_len=cfg.seq_len, seed=cfg.seed, max_new_tokens=cfg.max_new_tokens,
                       eval_batch_size=cfg.eval_batch_size, progress=progress)
    ft = arm.params
    signs, scales = bitdelta.compress(base, ft, targets=cfg.targets)
    records = [{"prompt": e.prompt, "response": e.answer} for e in splits["train"][:cfg.calib_rows]]
    inputs, mask = _rows(records, cfg.seq_len)
    held_inputs, held_mask = _rows([{"prompt": e.prompt, "response": e.answer} for e in splits["test"]], cfg.seq_len)
    calib_start = time.time()
    tuned, losses = bitdelta.calibrate(mcfg, base, signs, scales, ft, inputs, mask, steps=cfg.calib_steps,
                                       lr=cfg.calib_lr, batch_size=cfg.calib_batch_size, seed=cfg.seed, others=ft)
    calib_seconds = time.time() - calib_start
    models = {"base": base, "full": ft, "bitdelta_init": bitdelta.apply(base, signs, scales, others=ft),
              "bitdelta_calibrated": bitdelta.apply(base, signs, tuned, others=ft)}
    out = {"floor": constant_guess_floor([e.answer for e in splits["test"]])}
    for name, params in models.items():
        c = arm.correct_P if name == "full" else correct(params)
        out[f"{name}_correct"] = c.tolist()
        out[f"{name}_accuracy"] = float(np.mean(c))
    for name in ("init", "calibrated"):
        out[f"distill_loss_{name}"] = bitdelta.distillation_loss(mcfg, models[f"bitdelta_{name}"], ft, held_inputs,
                                                                 held_mask)
    out["calibrated_minus_full"] = out["bitdelta_calibrated_accuracy"] - out["full_accuracy"]
    n_compressed = sum(int(np.size(s)) for s in signs.values())
    n_all = sum(int(np.size(x)) for x in jax.tree.leaves(ft))
    bits = bitdelta.size_bits(signs, scales, scale_bits=16)
    out.update({
        "calib_losses": losses.tolist(), "calib_seconds": calib_seconds,
        "scales_init": {k: np.asarray(v).tolist() for k, v in scales.items()},
        "scales_calibrated": {k: np.asarray(v).tolist() for k, v in tuned.items()},
        "compressed_weights": n_compressed, "other_weights": n_all - n_compressed, "delta_bits": bits,
        "ratio_vs_fp16": 16 * n_compressed / bits, "ratio_vs_fp32": 32 * n_compressed / bits,
        "whole_ratio_vs_fp16": 16 * n_all / (bits + 16 * (n_all - n_compressed)),
        "full_first_loss": float(arm.losses_S[0]), "full_last_loss": float(arm.losses_S[-1]),
        "full_train_seconds": arm.train_seconds, "wall_seconds": time.time() - start})
    _plot_calibration(losses, workdir / "calibration.png")
    out["report"] = "\n".join([
        f"{cfg.model} base, task {cfg.task} {tuple(cfg.train_difficulty)}: full FT {cfg.steps} steps of batch "
        f"{cfg.batch_size} at lr {cfg.lr}; BitDelta on {cfg.targets} kernels ({len(signs)} kernels, "
        f"{n_compressed:,} weights), scales distilled {cfg.calib_steps} steps at lr {cfg.calib_lr} on "
        f"{len(inputs)} training texts.", "",
        "| model | test accuracy |", "|---|---|",
        *[f"| {n} | {out[f'{n}_accuracy']:.3f} |" for n in ARMS], "",
        f"Distillation loss on the test texts: init {out['distill_loss_init']:.4g}, calibrated "
        f"{out['distill_loss_calibrated']:.4g}. Delta: {bits:,} bits = {out['ratio_vs_fp16']:.1f}x smaller than "
        f"fp16 ({out['ratio_vs_fp32']:.1f}x than fp32); with the embeddings and norms kept in fp16, the whole "
        f"fine-tune's delta is {out['whole_ratio_vs_fp16']:.1f}x smaller.", "",
        "![calibration](calibration.png)"])
    return out


def _plot_calibration(losses, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(len(losses)), losses)
    ax.set(xlabel="calibration step", ylabel="logit distance ||z_ft - z_hat||^2", title="BitDelta scale distillation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    from jaxlab.evals.floor import clear_of_floor

    per_seed = next(iter(runs.values()))
    cal_SP = np.array([r["bitdelta_calibrated_correct"] for r in per_seed], np.float64)
    full_SP = np.array([r["full_correct"] for r in per_seed], np.float64)
    b = stats.paired_bootstrap_interval(cal_SP, full_SP)
    floor = float(np.mean([r["floor"] for r in per_seed]))
    clear, detail = clear_of_floor(full_SP, floor)
    return stats.decide(
        b["effect"], b["low"], b["high"], threshold=MARGIN,
        test=(f"non-inferiority at margin {MARGIN}, nested paired bootstrap over {b['seeds']} seeds x "
              f"{b['problems']} test problems"),
        preconditions=[("the full fine-tune learned the task (above the constant-guess floor by 2 SE)", clear,
                        f"full FT {detail}")])


def summarize(results: dict, workdir: Path) -> str:
    """Accuracies with intervals (plot and table) and the compression."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = []
    for name, per_seed in results.items():
        per_seed = per_seed if isinstance(per_seed, list) else [per_seed]
        rows = []
        for arm in ARMS:
            c = np.array([r[f"{arm}_correct"] for r in per_seed], np.float64)
            b = stats.paired_bootstrap_interval(c, np.zeros_like(c))
            rows.append((arm, b["effect"], b["low"], b["high"]))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.errorbar(range(len(rows)), [m for _, m, _, _ in rows],
                    yerr=[[m - lo for _, m, lo, _ in rows], [hi - m for _, m, _, hi in rows]], fmt="o", capsize=4)
        ax.set_xticks(range(len(rows)), [a for a, *_ in rows], rotation=15)
        ax.set(ylabel="greedy test accuracy (95% CI)", title=f"BitDelta, {len(per_seed)} seeds")
        fig.tight_layout()
        fig.savefig(workdir / f"{name}_accuracy.png", dpi=110)
        plt.close(fig)
        r0 = per_seed[0]
        lines += [f"## {name}: accuracies", "", "| model | accuracy [95% nested bootstrap over seeds x problems] |",
                  "|---|---|", *[f"| {a} | {m:.3f} [{lo:.3f}, {hi:.3f}] |" for a, m, lo, hi in rows], "",
                  f"![accuracies]({name}_accuracy.png)", "",
                  f"Distillation loss on the test texts (mean over seeds): init "
                  f"{np.mean([r['distill_loss_init'] for r in per_seed]):.4g}, calibrated "
                  f"{np.mean([r['distill_loss_calibrated'] for r in per_seed]):.4g}.", "",
                  f"Compression: {r0['compressed_weights']:,} kernel weights in {r0['delta_bits']:,} bits "
                  f"(1 bit each + a 16-bit scale per matrix): {r0['ratio_vs_fp16']:.2f}x smaller than fp16, "
                  f"{r0['ratio_vs_fp32']:.2f}x than fp32; the whole delta with {r0['other_weights']:,} embedding "
                  f"and norm weights kept in fp16: {r0['whole_ratio_vs_fp16']:.2f}x.", ""]
    return "\n".join(lines) + "\n"
