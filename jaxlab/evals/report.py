"""Writing an evaluation: ``results.json`` (settings and metrics), ``completions.jsonl`` (one
problem per line: prompt, answer, responses, scores), ``report.md`` (tables) and ``eval.png``
(accuracy per difficulty with its 95% intervals)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS_FILE = "results.json"
COMPLETIONS_FILE = "completions.jsonl"
REPORT_FILE = "report.md"
PLOT_FILE = "eval.png"


def metric_columns(summary: dict) -> list[str]:
    """The metric names of a summary in report order: greedy, then pass@k ascending, then maj@k."""
    names = ["greedy"] if "greedy" in summary else []
    passes = sorted((k for k in summary if k.startswith("pass@")), key=lambda k: int(k[5:]))
    return names + passes + [k for k in summary if k.startswith("maj@")]


def metric_value(summary: dict, name: str) -> tuple[float, float, float]:
    """(value, low, high) of one metric of a summary."""
    m = summary[name]
    return (m["accuracy"] if name == "greedy" else m["value"]), m["low"], m["high"]


def _row(label: str, summary: dict, columns: list[str]) -> str:
    cells = [label, str(summary["n"])]
    for name in columns:
        value, low, high = metric_value(summary, name)
        cells.append(f"{value:.3f} [{low:.3f}, {high:.3f}]")
    if "format_rate" in summary:
        cells.append(f"{summary['format_rate']:.3f}")
    return "| " + " | ".join(cells) + " |"


def task_table(results: dict) -> str:
    """Markdown: one row overall, one per split and one per difficulty, each metric with its
    interval."""
    overall = results["overall"]
    columns = metric_columns(overall)
    head = ["difficulty", "n"] + columns + (["well formed"] if "format_rate" in overall else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), _row("all", overall, columns)]
    lines += [_row(f"{split} split", s, columns) for split, s in results.get("by_split", {}).items()]
    lines += [_row(d, s, columns) for d, s in results["by_difficulty"].items()]
    return "\n".join(lines)


def text_table(text: dict) -> str:
    keys = ["bits_per_byte", "bits_per_token", "perplexity", "n_tokens", "n_bytes", "window", "stride"]
    cells = [f"{text[k]:.4f}" if isinstance(text[k], float) else str(text[k]) for k in keys]
    return "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n| " + " | ".join(cells) + " |"


def render_report(results: dict) -> str:
    """The markdown report of :func:`write_results`'s ``results``."""
    lines = [f"# Evaluation of {results.get('model', 'a model')}\n"]
    if results.get("command"):
        lines.append(f"`{results['command']}`\n")
    task = results.get("task_results")
    if task is not None:
        conf = round(100 * task["confidence"])
        lines += [
            f"## Task `{task['task']}`\n",
            f"{task['n']} problems (split {task['split']}, seed {task['seed']}), "
            f"{'chat template' if task['chat'] else 'plain prompts'}, at most "
            f"{task['max_new_tokens']} new tokens; greedy decoding"
            + (f" and {task['samples']} samples per problem at temperature {task['temperature']:g}"
               if task["samples"] else "") + ".",
            f"Values with {conf}% intervals: Wilson for greedy accuracy, percentile bootstrap over "
            "problems for pass@k and maj@k. pass@k is the unbiased estimator "
            "1 - C(n-c, k)/C(n, k) over the samples; maj@k verifies the most voted answer. A "
            "bootstrap interval shrinks to a point when every problem scores the same (e.g. none "
            "solved); Wilson's does not. \"well formed\": greedy answers the task can parse.\n",
            task_table(task), "", f"![accuracy per difficulty]({PLOT_FILE})\n"]
        if "truncated_rate" in task["overall"]:
            lines.append(f"Greedy completions cut off at the token budget: "
                         f"{task['overall']['truncated_rate']:.1%}.\n")
    text = results.get("text")
    if text is not None:
        lines += [f"## Text `{text.get('file', '')}`\n", text_table(text), ""]
    return "\n".join(lines)


def plot_columns(summary: dict) -> list[str]:
    """The plotted metrics: greedy, pass@1, the largest pass@k and maj@k (when present)."""
    columns = metric_columns(summary)
    passes = [c for c in columns if c.startswith("pass@")]
    keep = {"greedy", *passes[:1], *passes[-1:]} | {c for c in columns if c.startswith("maj@")}
    return [c for c in columns if c in keep]


def plot_by_difficulty(task: dict, path: Path) -> None:
    """Accuracy per difficulty, one series per metric of :func:`plot_columns`, error bars at
    the intervals."""
    levels = list(task["by_difficulty"])
    columns = plot_columns(task["overall"])
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    offsets = [(i - (len(columns) - 1) / 2) * 0.12 for i in range(len(columns))]
    for name, dx in zip(columns, offsets, strict=True):
        vals = [metric_value(task["by_difficulty"][d], name) for d in levels]
        x = [int(d) + dx for d in levels]
        y = [v for v, _, _ in vals]
        # a percentile bootstrap interval need not contain the mean: no negative bar lengths
        yerr = [[max(0.0, v - lo) for v, lo, _ in vals], [max(0.0, hi - v) for v, _, hi in vals]]
        ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, label=name)
    ax.set_xticks([int(d) for d in levels])
    ax.set_xlabel(f"difficulty ({task.get('knob', 'level')})")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{task['task']}: {task['n']} problems, {round(100 * task['confidence'])}% intervals")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cell(metric: dict | None, value_key: str = "value") -> str:
    if metric is None:
        return ""
    return f"{metric[value_key]:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"


def results_table(folders) -> str:
    """Markdown: one row per evaluation folder (its results.json, linked by the folder name):
    the task, chat or plain prompts, the task's overall greedy accuracy, pass@1, the largest
    pass@k and maj@k with their intervals, and the share of well-formed greedy answers.
    Raises FileNotFoundError naming a folder without results."""
    head = ["run", "task", "prompt", "n", "split", "samples", "greedy", "pass@1", "pass@k", "maj@k",
            "well formed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for folder in folders:
        path = Path(folder) / RESULTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: not an evaluation folder")
        task = json.loads(path.read_text()).get("task_results")
        if task is None:
            continue
        overall, k = task["overall"], task["samples"]
        name = Path(folder).name
        cells = [f"[{name}]({name}/{REPORT_FILE})", task["task"], "chat" if task["chat"] else "plain",
                 str(task["n"]), task["split"],
                 str(k), _cell(overall.get("greedy"), "accuracy"), _cell(overall.get("pass@1")),
                 f"k={k}: {_cell(overall[f'pass@{k}'])}" if k else "", _cell(overall.get(f"maj@{k}")),
                 f"{overall['format_rate']:.3f}" if "format_rate" in overall else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """Writes the files of the module docstring into ``out_dir`` (created) and returns their
    paths by kind. ``results``: ``{"model", "task_results": evaluate_task(...) or None,
    "text": text_bits_per_byte(...) or None}``; the per-problem records go to
    completions.jsonl, everything else to results.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / RESULTS_FILE, "report": out / REPORT_FILE}
    task = results.get("task_results")
    summary = dict(results)
    if task is not None:
        summary["task_results"] = {k: v for k, v in task.items() if k != "problems"}
        paths["completions"] = out / COMPLETIONS_FILE
        with open(paths["completions"], "w") as f:
            for record in task["problems"]:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    paths["results"].write_text(json.dumps(summary, indent=2) + "\n")
    paths["report"].write_text(render_report(summary))
    if task is not None:
        paths["plot"] = out / PLOT_FILE
        plot_by_difficulty(task, paths["plot"])
    return paths
