"""FourierFT against LoRA at a matched, very small trainable budget (Gao et al. 2024,
"Parameter-Efficient Fine-Tuning with Discrete Fourier Transform", arXiv 2405.03003).

Method. FourierFT learns n spectral coefficients c per adapted matrix at n fixed positions E
(drawn once, shared by the layers of one kernel shape) and adds their inverse 2-D DFT,

    dW = alpha Re(IDFT2(F)),     F [n_in, n_out] zero except F[E] = c

(:mod:`jaxlab.peft.adapters`): n parameters per matrix, whatever its rank, against LoRA's
r (n_in + n_out). The paper claims far more compression than rank-limited methods such as LoRA.

Setting. The pre-trained byte base of the adapter studies (``configs.models`` "quickstart", 600
steps on the embedded corpus) is fine-tuned with SFT (:func:`jaxlab.peft.study.finetune_arm`)
on the ``last_letters`` task ("last vobu ke tamin:" -> "uen", 2 or 3 words), chosen in a pilot
(seed 100, before the claim was fixed) where the untuned base scores 0 (floor 0.027), full
fine-tuning reaches 0.30 in 100 steps (lr 1e-3) and LoRA rank 4 on attention 0.10 in 250 steps
(lr 5e-3; 0.00 in 100 steps at 3e-3 or 1.5e-2), while ``count`` stayed at its 0.37 floor and
2-digit ``arithmetic`` at 0.06 even fully fine-tuned. Both adapters sit on the attention
kernels q, k, v, o (3 layers x 4 square 128 x 128 matrices): LoRA rank ``rank`` = 2 has 12 x 2
x 256 = 6,144 trainable parameters, and FourierFT gets the same count, n = round(LoRA's count /
12) = 512 coefficients per matrix (:func:`jaxlab.peft.compare.matching_frequencies`; 6,144
parameters: matched exactly, inside 1k-10k). Uniformly drawn positions, alpha = 16 (under Adam,
alpha and the learning rate trade off, so each method gets its own rate grid). Each method
trains at 3 learning rates (``lora_lrs``, ``fourier_lrs``; an arm whose loss turns non-finite
counts as wrong on every problem) for ``steps`` steps, every arm from the same base on the same
data in the same order; a seed draws the train / validation / test problems and the data order.

Claim (version 1, fixed before any run): at the matched budget, FourierFT's greedy test
accuracy is at least LoRA's. Each method is taken at its own best rate, the one with the
highest validation accuracy pooled over seeds (validation problems are disjoint from the test
problems). Effect: mean over seeds and test problems of correct_FourierFT - correct_LoRA; 95%
interval by nested paired bootstrap over seeds and problems
(``jaxlab.stats.paired_bootstrap_interval``). Held when the lower end is above the
non-inferiority margin -0.05, not held when the upper end is at or below -0.05, otherwise
inconclusive. Preconditions: (1) the trainable counts match within 10% and both lie in
[1,000, 10,000]; (2) fine-tuning learns: LoRA's pooled test accuracy at its best rate is above
both the untuned base's and the constant-guess floor by 2 standard errors
(``jaxlab.evals.floor.clear_of_floor``); (3) LoRA is below the ceiling 0.95.

Presets. ``smoke`` (the tests): a random 1-layer byte model, one rate per method, a few steps;
LoRA is at the floor, so the verdict is inconclusive by precondition (2) (the budget there is
below 1,000 too). ``paper``: the pre-trained base, 3 rates per method (LoRA 5e-3, 1e-2, 2e-2 around
the pilot's working rate; FourierFT 2e-2, 5e-2, 1e-1), 200 steps of 16 packed rows of 64 tokens,
2000 train / 128 validation / 256 test problems, 1 seed (its interval covers the test problems
only; one arm of 200 steps took about 8 minutes on the 2 heavily shared CPU cores, so the six
arms were trained in 3 parallel processes into the run's arm folders, which ``jaxlab run`` then
loads: 28 minutes of training and 5 minutes of loading and evaluating, measured):

    jaxlab run experiments/fourierft_vs_lora.py --preset smoke --seeds 2 --publish
    jaxlab run experiments/fourierft_vs_lora.py --preset paper --seeds 1 --workdir OUT/fourierft \\
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
from jaxlab.data.tokenizer import BYTES  # noqa: E402
from jaxlab.evals.floor import clear_of_floor, constant_guess_floor  # noqa: E402
from jaxlab.evals.generation import greedy_correct  # noqa: E402
from jaxlab.peft.adapters import AdapterSpec  # noqa: E402
from jaxlab.peft.compare import (matching_frequencies, study_base, sweep_arm, trainable_count,  # noqa: E402
                                 train_val_test)

CLAIM = ("At a matched trainable budget of 1k-10k parameters (LoRA rank 2 against 512 spectral "
         "coefficients per matrix on the attention kernels), FourierFT's test accuracy is at least "
         "LoRA's (non-inferiority margin 0.05), each at its best learning rate.")
CLAIM_VERSION = 1
REPORT_KEYS = ["fourierft_minus_lora", "lora_best_test_accuracy", "fourierft_best_test_accuracy",
               "base_test_accuracy", "lora_params", "fourierft_params"]
METHODS = ("lora", "fourierft")
MARGIN = -0.05
CEILING = 0.95
BUDGET = (1_000, 10_000)
MATCH = 0.10        # the counts may differ by at most this share of LoRA's

PRESETS = {
    "smoke": {"model": "tiny-random", "lora_lrs": (1e-2,), "fourier_lrs": (1e-1,), "n_train": 64, "n_val": 16,
              "n_test": 16, "steps": 4, "batch_size": 8, "seq_len": 32, "max_new_tokens": 4, "rank": 1},
    "paper": {"model": "quickstart", "base_steps": 600, "lora_lrs": (5e-3, 1e-2, 2e-2),
              "fourier_lrs": (2e-2, 5e-2, 1e-1), "n_train": 2000, "n_val": 128, "n_test": 256, "steps": 200,
              "batch_size": 16, "seq_len": 64, "max_new_tokens": 4, "rank": 2},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "fourierft_vs_lora"
    model: str = "quickstart"      # a configs.models preset pre-trained here, or "tiny-random"
    base_dir: str = ""             # where the pre-trained base lives (empty: <workdir>/base)
    base_steps: int = 600
    task: str = "last_letters"
    train_difficulty: tuple[int, int] = (2, 3)
    n_train: int = 2000
    n_val: int = 128
    n_test: int = 256
    targets: str = "attn"
    rank: int = 2                  # LoRA's rank; FourierFT's n matches its count
    lora_alpha: float = 16.0
    fourier_alpha: float = 16.0
    lora_lrs: tuple[float, ...] = (5e-3, 1e-2, 2e-2)
    fourier_lrs: tuple[float, ...] = (2e-2, 5e-2, 1e-1)
    steps: int = 200
    batch_size: int = 16
    seq_len: int = 64
    max_new_tokens: int = 4
    eval_batch_size: int = 64
    seed: int = 0


def get_config() -> Config:
    return Config()


def specs(cfg, base: dict) -> dict[str, AdapterSpec]:
    lora = AdapterSpec(method="lora", targets=cfg.targets, rank=cfg.rank, alpha=cfg.lora_alpha)
    fourier = AdapterSpec(method="fourierft", targets=cfg.targets, alpha=cfg.fourier_alpha,
                          n_frequencies=matching_frequencies(base, lora), seed=0)
    return {"lora": lora, "fourierft": fourier}


def plot_bars(acc: dict, low_high: dict, path: Path, title: str) -> None:
    """One bar per method: test accuracy at its best rate, with a 95% interval."""
    fig, ax = plt.subplots(figsize=(4, 3.5))
    names = list(acc)
    means = [acc[m] for m in names]
    err = np.array([[acc[m] - low_high[m][0] for m in names], [low_high[m][1] - acc[m] for m in names]])
    ax.bar(names, means, yerr=err, capsize=6, color=["tab:blue", "tab:orange"][: len(names)])
    ax.set_ylabel("greedy test accuracy (best rate)")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    workdir = Path(workdir)
    task = task_lib.get(cfg.task, train_difficulty=tuple(cfg.train_difficulty))
    train, val, test = train_val_test(task, cfg.seed, cfg.n_train, cfg.n_val, cfg.n_test)
    model_cfg, base = study_base(cfg.model, base_dir=cfg.base_dir, base_steps=cfg.base_steps,
                                 workdir=workdir, seed=cfg.seed)
    base_correct = greedy_correct(model_cfg, base, BYTES, task, test, max_new_tokens=cfg.max_new_tokens,
                                  batch_size=cfg.eval_batch_size)
    out = {"floor": constant_guess_floor([e.answer for e in test]), "base_test_correct": base_correct.tolist(),
           "base_test_accuracy": float(base_correct.mean())}
    rates = {"lora": cfg.lora_lrs, "fourierft": cfg.fourier_lrs}
    for method, spec in specs(cfg, base).items():
        val_c, test_c = [], []
        for lr in rates[method]:
            correct, loss = sweep_arm(workdir / f"{method}_lr{lr:g}", base, model_cfg, task, train, val + test,
                               spec=spec, lr=lr, steps=cfg.steps, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                               seed=cfg.seed, max_new_tokens=cfg.max_new_tokens,
                               eval_batch_size=cfg.eval_batch_size, progress=progress)
            val_c.append(correct[: len(val)].tolist())
            test_c.append(correct[len(val):].tolist())
        out[f"{method}_lrs"] = list(rates[method])
        out[f"{method}_params"] = trainable_count(base, spec)
        out[f"{method}_val_correct"] = val_c
        out[f"{method}_test_correct"] = test_c
        out[f"{method}_test_accuracy"] = [float(np.mean(c)) for c in test_c]
        out[f"{method}_val_accuracy"] = [float(np.mean(c)) for c in val_c]
        best = int(np.argmax(out[f"{method}_val_accuracy"]))
        out[f"{method}_best_test_accuracy"] = out[f"{method}_test_accuracy"][best]
    out["n_frequencies"] = specs(cfg, base)["fourierft"].n_frequencies
    out["fourierft_minus_lora"] = out["fourierft_best_test_accuracy"] - out["lora_best_test_accuracy"]
    rows = [f"| {m} | {out[f'{m}_params']:,} | " + ", ".join(f"{lr:g}: {a:.3f}" for lr, a in
                                                        zip(out[f"{m}_lrs"], out[f"{m}_test_accuracy"])) + " |"
            for m in METHODS]
    out["report"] = "\n".join([
        f"{cfg.model} base, task {cfg.task} {tuple(cfg.train_difficulty)}: {cfg.n_train} train / {cfg.n_val} "
        f"validation / {cfg.n_test} test problems; adapters on {cfg.targets}, LoRA rank {cfg.rank}, FourierFT "
        f"n = {out['n_frequencies']}; {cfg.steps} steps.", "",
        f"Untuned base: test accuracy {out['base_test_accuracy']:.3f}; constant-guess floor {out['floor']:.3f}.",
        "", "| method | trainable | test accuracy per rate |", "|---|---|---|", *rows])
    return out


def _best_test_SP(per_seed: list, method: str) -> tuple[np.ndarray, int]:
    val = np.array([r[f"{method}_val_correct"] for r in per_seed], np.float64)  # [S, rates, problems]
    best = int(np.argmax(val.mean(axis=(0, 2))))
    return np.array([r[f"{method}_test_correct"][best] for r in per_seed], np.float64), best


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    lora_SP, lb = _best_test_SP(per_seed, "lora")
    four_SP, fb = _best_test_SP(per_seed, "fourierft")
    base_SP = np.array([r["base_test_correct"] for r in per_seed], np.float64)
    floor = float(np.mean([r["floor"] for r in per_seed]))
    b = stats.paired_bootstrap_interval(four_SP, lora_SP)
    n_lora, n_four = per_seed[0]["lora_params"], per_seed[0]["fourierft_params"]
    matched = abs(n_four - n_lora) <= MATCH * n_lora and all(BUDGET[0] <= n <= BUDGET[1] for n in (n_lora, n_four))
    learns, detail = clear_of_floor(lora_SP, max(floor, float(base_SP.mean())))
    lora_acc = float(lora_SP.mean())
    return stats.decide(
        b["effect"], b["low"], b["high"], threshold=MARGIN,
        test=(f"nested paired bootstrap over {b['seeds']} seeds x {b['problems']} test problems; best rates by "
              f"validation: LoRA {per_seed[0]['lora_lrs'][lb]:g}, FourierFT {per_seed[0]['fourierft_lrs'][fb]:g}"),
        preconditions=[
            (f"budgets matched within {MATCH:.0%}, both in [{BUDGET[0]:,}, {BUDGET[1]:,}]", matched,
             f"LoRA {n_lora:,}, FourierFT {n_four:,}"),
            ("fine-tuning learns (LoRA above the untuned base and the floor by 2 SE)", learns, f"LoRA {detail}"),
            (f"LoRA below the ceiling {CEILING}", lora_acc < CEILING, f"LoRA accuracy {lora_acc:.3f}")])


def summarize(results: dict, workdir: Path) -> str:
    """Accuracy at each method's best rate, pooled over seeds, with intervals (plot and table)."""
    per_seed = next(iter(results.values()))
    acc, ci, lines = {}, {}, []
    for m in METHODS:
        x_SP, best = _best_test_SP(per_seed, m)
        acc[m] = float(x_SP.mean())
        z = stats.paired_bootstrap_interval(x_SP, np.zeros_like(x_SP))
        ci[m] = (z["low"], z["high"])
        lines.append(f"| {m} | {per_seed[0][f'{m}_params']:,} | {per_seed[0][f'{m}_lrs'][best]:g} | "
                     f"{acc[m]:.3f} [{ci[m][0]:.3f}, {ci[m][1]:.3f}] |")
    plot_bars(acc, ci, Path(workdir) / "accuracy.png", f"best-rate test accuracy, {len(per_seed)} seeds")
    return "\n".join(["## Accuracy at each method's best rate (pooled over seeds)", "",
                      "| method | trainable | best lr | test accuracy [95% interval] |", "|---|---|---|---|",
                      *lines, "", "![accuracy](accuracy.png)", ""]) + "\n"
