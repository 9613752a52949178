"""PNG plots of training curves (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(runs: dict[str, list[dict]], keys: list[str], path: str | Path, *,
                title: str = "", ylabel: str = "loss", logy: bool = False) -> Path:
    """One line per (run, key) of ``metrics.jsonl`` records against the step."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for run, records in runs.items():
        for key in keys:
            steps, values = series(records, key)
            if steps:
                label = key if len(runs) == 1 else f"{run}: {key}"
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
