"""Self-augmented prompting against direct prompting on table-structure tasks (Sui et al. 2024,
"Table Meets LLM: Can Large Language Models Understand Structured Table Data?", section 4:
asking the model first to describe the table, then giving its description back with the
question, raised GPT-3.5's accuracy).

Why a second experiment and not a variant of experiments/table_serialization.py: the runner
judges one claim per experiment module (``CLAIM``, ``claim_verdict(runs)``), and the two
claims compare different arms (serialisations there, prompting methods here); one module with
two variants would need one verdict over both. The arms here share problems, shots and the
serialisation, and run in one process (one model load, one set of compiled shapes).

Tasks (:mod:`jaxlab.tasks.documents.tables`): cell lookup, reverse lookup, row retrieval,
column retrieval, size detection, table partition and merged-cell detection, every table
serialised as ``fmt`` (HTML: the only serialisation that writes merged cells, and the paper's
choice). Per seed and task, ``n_problems`` problems at ``difficulty`` and ``n_shots`` shot
problems (difficulty 1, another random stream; :func:`jaxlab.evals.tables.paired_problems`).

Arms, both greedy, on the same problems with the same instruction
(:data:`jaxlab.evals.tables.SYSTEM`) and the same shots:
  direct          system, shots as user / assistant turns (prompt / bare answer), question
                  (:func:`jaxlab.ttc.self_augment.direct_messages`; the prompts of
                  table_serialization's HTML arm);
  self-augmented  stage 1: the model describes each table's structure (size, headers, critical
                  values; zero-shot, ``describe_tokens`` tokens); stage 2: the conversation
                  "describe this table" / the model's own description / the question, after
                  the shots laid out the same way with the model's descriptions of the shot
                  tables (:func:`jaxlab.ttc.self_augment.self_augment`).

Claim (version 1, fixed before any run): self-augmented accuracy exceeds direct accuracy.
Effect = acc(self-augmented) - acc(direct), paired over (seed, problem); interval: nested
paired bootstrap over seeds and problems (:func:`jaxlab.stats.paired_bootstrap_interval`),
95%; threshold 0: held when the interval lies above 0, not held when it lies at or below 0,
inconclusive otherwise. McNemar's exact test on the pooled pairs is reported beside it.
Preconditions: (1) answers are well formed in at least half of the problems of each arm
(a format failure is inconclusive, not a verdict); (2) the model solves some problems: the
better arm's accuracy is at least 0.10. The prompt layout was piloted (on the direct arm, the
pilot of table_serialization) before the claim was fixed; nothing was changed after a run of
the test problems.

Presets.
  smoke: a tiny random byte-level model, 2 tasks x 2 problems; seconds; inconclusive by the
    preconditions (it answers nothing right).
  paper: SmolLM2-135M-Instruct, 7 tasks x 2 problems x 2 seeds (28 paired problems),
    difficulty 1, 1 shot; three greedy passes per seed (direct, describe, augmented), about
    25 minutes on the 2 shared CPU cores (measured: 27 minutes at a load average near 10). Small: the interval will be wide; on a GPU raise
    n_problems (e.g. --set n_problems=50) and seeds.

    jaxlab run experiments/table_self_augmented.py --preset smoke --seeds 2 --publish
    jaxlab run experiments/table_self_augmented.py --preset paper --seeds 2 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.evals import tables as T
from jaxlab.ttc.self_augment import direct_messages, self_augment

CLAIM = ("On table-structure tasks with HTML tables, SmolLM2-135M-Instruct answers more questions correctly "
         "with self-augmented prompting (it first describes the table, then answers with its description in "
         "context) than with direct prompting.")
CLAIM_VERSION = 1
REPORT_KEYS = ["self_augmented_minus_direct", "direct_accuracy", "self_augmented_accuracy",
               "direct_well_formed", "self_augmented_well_formed"]
ARMS = ("direct", "self_augmented")
WELL_FORMED_MIN = 0.5
SOLVES_MIN = 0.10
ALL_TASKS = tuple(T.TASKS)
PRESETS = {
    "smoke": {"model": T.TINY_RANDOM, "tasks": ("table_lookup", "table_size"), "n_problems": 2, "n_shots": 1,
              "max_new_tokens": 8, "describe_tokens": 8, "batch_size": 16},
    "paper": {"model": "smollm2-135m-instruct", "tasks": ALL_TASKS, "n_problems": 2, "n_shots": 1,
              "difficulty": (1, 1), "max_new_tokens": 32, "describe_tokens": 48, "batch_size": 16},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "table_self_augmented"
    model: str = "smollm2-135m-instruct"   # or "tiny-random"
    tasks: tuple[str, ...] = ALL_TASKS
    fmt: str = "html"
    n_problems: int = 2        # per task
    n_shots: int = 1
    difficulty: tuple[int, int] = (1, 1)
    max_new_tokens: int = 32   # answers
    describe_tokens: int = 48  # stage-1 descriptions
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self):
        T.check_names(self.tasks, (self.fmt,))
        if self.n_problems < 1 or self.n_shots < 0:
            raise ValueError(f"need n_problems >= 1 and n_shots >= 0, got {self.n_problems}, {self.n_shots}")


def get_config() -> Config:
    return Config()


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    """Per-problem rows (task, index, answer, and for each arm correct / well_formed /
    response; the stage-1 description) and each arm's accuracy."""
    model_cfg, params, tok = T.load(cfg.model, cfg.seed)
    items = []  # (task, index, Example, shots as (prompt, answer))
    for task in cfg.tasks:
        shots = T.paired_problems(task, (cfg.fmt,), seed=cfg.seed, n=cfg.n_shots, difficulty=(1, 1), stream="shots")
        shot_pairs = [(s[cfg.fmt].prompt, s[cfg.fmt].answer) for s in shots]
        for i, p in enumerate(T.paired_problems(task, (cfg.fmt,), seed=cfg.seed, n=cfg.n_problems,
                                                difficulty=tuple(cfg.difficulty))):
            items.append((task, i, p[cfg.fmt], shot_pairs))

    def complete(conversations, stage):
        tokens = cfg.describe_tokens if stage == "describe" else cfg.max_new_tokens
        return T.greedy_texts(model_cfg, params, tok, conversations, max_new_tokens=tokens,
                              batch_size=cfg.batch_size, progress=progress, desc=stage)

    direct = complete([direct_messages(T.SYSTEM, shots, e.prompt) for _, _, e, shots in items], "direct")
    sa = self_augment(complete, T.SYSTEM, [(shots, e.prompt) for _, _, e, shots in items])
    rows = []
    for (task, i, e, _), d_text, s_text, desc in zip(items, direct, sa["responses"], sa["descriptions"],
                                                     strict=True):
        row = {"task": task, "index": i, "answer": e.answer, "description": desc[:400]}
        for arm, text in (("direct", d_text), ("self_augmented", s_text)):
            c, w = T.score(task, [e], [text])
            row.update({f"{arm}_correct": int(c[0]), f"{arm}_well_formed": int(w[0]), f"{arm}_response": text[:200]})
        rows.append(row)
    out = {"rows": rows, **arm_summary(rows)}
    plot_arms(rows, workdir / "arms.png", title=f"{cfg.model}, {cfg.fmt}, seed {cfg.seed}")
    out["report"] = "\n".join([
        f"{cfg.model}, {cfg.fmt} tables, {cfg.n_problems} problems per task at difficulty {tuple(cfg.difficulty)}, "
        f"{cfg.n_shots} shot(s), greedy.", "", arms_markdown(rows), "", "![accuracy by task](arms.png)", "",
        "Example stage-1 descriptions:", ""]
        + [f"- {r['task']}: `{' '.join(r['description'].split())[:200]}`" for r in rows[::max(len(rows) // 4, 1)]])
    return out


def arm_summary(rows: list[dict]) -> dict:
    """Each arm's accuracy and well-formed rate, and their difference."""
    out = {}
    for arm in ARMS:
        out[f"{arm}_accuracy"] = float(np.mean([r[f"{arm}_correct"] for r in rows]))
        out[f"{arm}_well_formed"] = float(np.mean([r[f"{arm}_well_formed"] for r in rows]))
    out["self_augmented_minus_direct"] = out["self_augmented_accuracy"] - out["direct_accuracy"]
    return out


def arms_markdown(rows: list[dict]) -> str:
    """Task x arm accuracy with 95% Wilson intervals, an "all tasks" row, and well-formed rates."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))

    def cell(sel, arm):
        k, n = sum(r[f"{arm}_correct"] for r in sel), len(sel)
        lo, hi = stats.wilson_interval(k, n)
        return f"{k / n:.2f} [{lo:.2f}, {hi:.2f}]"

    lines = ["| task | problems | direct | self-augmented |", "|---|---|---|---|"]
    for t in tasks + ["all tasks"]:
        sel = [r for r in rows if t in (r["task"], "all tasks")]
        lines.append(f"| {t} | {len(sel)} | {cell(sel, 'direct')} | {cell(sel, 'self_augmented')} |")
    s = arm_summary(rows)
    lines.append(f"| well formed | | {s['direct_well_formed']:.2f} | {s['self_augmented_well_formed']:.2f} |")
    return "\n".join(lines)


def plot_arms(rows: list[dict], path: Path, title: str = "") -> None:
    """Accuracy per task, the two arms side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows)) + ["all tasks"]
    fig, ax = plt.subplots(figsize=(0.9 * len(tasks) + 2.5, 3.4))
    for k, (arm, color) in enumerate((("direct", "#9fb6cd"), ("self_augmented", "#1f4e79"))):
        acc = [np.mean([r[f"{arm}_correct"] for r in rows if t in (r["task"], "all tasks")]) for t in tasks]
        ax.bar(np.arange(len(tasks)) + (k - 0.5) * 0.38, acc, width=0.38, color=color, label=arm)
    ax.set_xticks(range(len(tasks)), [t.replace("table_", "") for t in tasks], rotation=25, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title or "accuracy", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _arm_arrays(per_seed: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.asarray([[r[k] for r in run["rows"]] for run in per_seed], np.float64)
            for k in ("direct_correct", "self_augmented_correct", "direct_well_formed", "self_augmented_well_formed")}


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    a = _arm_arrays(per_seed)
    b = stats.paired_bootstrap_interval(a["self_augmented_correct"], a["direct_correct"])
    mc = stats.mcnemar_exact(a["self_augmented_correct"].reshape(-1), a["direct_correct"].reshape(-1))
    formed = {arm: float(a[f"{arm}_well_formed"].mean()) for arm in ARMS}
    acc = {arm: float(a[f"{arm}_correct"].mean()) for arm in ARMS}
    return stats.decide(
        b["effect"], b["low"], b["high"], threshold=0.0,
        test=(f"accuracy(self-augmented) - accuracy(direct), nested paired bootstrap over {b['seeds']} seeds x "
              f"{b['problems']} problems; McNemar exact p = {mc['p_value']:.3g} (b = {mc['b']}, c = {mc['c']})"),
        preconditions=[
            ("answers well formed", min(formed.values()) >= WELL_FORMED_MIN,
             ", ".join(f"{k} {v:.2f}" for k, v in formed.items()) + f" (each needs >= {WELL_FORMED_MIN})"),
            ("the model solves some problems", max(acc.values()) >= SOLVES_MIN,
             ", ".join(f"{k} {v:.3f}" for k, v in acc.items()) + f" (the better needs >= {SOLVES_MIN})"),
        ])


def summarize(results: dict, workdir: Path) -> str:
    """Pooled task x arm accuracy over seeds and the bar plot."""
    per_seed = next(iter(results.values()))
    if not isinstance(per_seed, list):
        per_seed = [per_seed]
    rows = [x for r in per_seed for x in r["rows"]]
    plot_arms(rows, Path(workdir) / "arms.png", title=f"accuracy over {len(per_seed)} seed(s)")
    return "\n".join(["## Accuracy over all seeds (95% Wilson intervals)", "", arms_markdown(rows), "",
                      "![accuracy by task and arm](arms.png)", ""])
