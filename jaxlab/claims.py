"""Seeds and three-way verdicts for experiments (the runner's side of a claim).

``jaxlab run EXP --seeds N`` runs every variant of an experiment under N seeds, each in
``WORKDIR/<variant>/seed<k>/`` (resumable, like any run), and hands the experiment's
``verdict(runs)`` all of them:

    runs = {variant: [results of seed 0, results of seed 1, ...]}
    verdict(runs) -> jaxlab.stats.Verdict      (held / not held / inconclusive, effect, interval,
                                                test, preconditions; see jaxlab.stats.decide)

Seed k of a config adds k to every field named ``seed`` (``seed``, ``train.seed``,
``task.seed`` ...), so the model's initialisation, the data order and, where a task draws its
splits from a seed, the test problems all change with k. An experiment that defines
``SEED_KEYS`` (a tuple of dotted keys) varies only those.
"""

from __future__ import annotations

from pathlib import Path

from jaxlab import config as config_lib
from jaxlab.stats import Verdict

SEED_DIR = "seed{k}"


def seed_keys(cfg, module=None) -> list[str]:
    """The dotted keys seed k shifts: ``module.SEED_KEYS`` or every leaf named ``seed``."""
    keys = list(getattr(module, "SEED_KEYS", None) or
                [k for k in config_lib.leaf_keys(cfg) if k.rsplit(".", 1)[-1] == "seed"])
    if not keys:
        raise config_lib.ConfigError(
            f"{type(cfg).__name__} has no field named 'seed' to vary; add one (or SEED_KEYS to the "
            "experiment) to run it under several seeds")
    return keys


def seeded(cfg, k: int, module=None):
    """``cfg`` with ``k`` added to each of its :func:`seed_keys`."""
    return config_lib.apply_overrides(cfg, {key: config_lib._get(cfg, key) + k for key in seed_keys(cfg, module)})


def seed_dir(variant_dir: Path, k: int) -> Path:
    return Path(variant_dir) / SEED_DIR.format(k=k)


def verdict_markdown(v: Verdict) -> str:
    """The verdict block of a report: outcome, effect and interval, test, preconditions."""
    lines = [f"**Verdict: {v.outcome}.** {v.sentence()}.", ""]
    if v.preconditions:
        lines += ["| precondition | passed | detail |", "|---|---|---|"]
        lines += [f"| {n} | {'yes' if p else 'no'} | {d} |" for n, p, d in v.preconditions]
        lines.append("")
    return "\n".join(lines)


def per_seed_table(runs: dict, keys: list[str], cell) -> str:
    """One row per (variant, seed), one column per result key."""
    rows = ["| variant | seed | " + " | ".join(keys) + " |", "|---|---" + "|---" * len(keys) + "|"]
    for name, per_seed in runs.items():
        for k, r in enumerate(per_seed):
            rows.append(f"| [{name}]({name}/{SEED_DIR.format(k=k)}/report.md) | {k} | "
                        + " | ".join(cell(r.get(key)) for key in keys) + " |")
    return "\n".join(rows)


def plot_per_seed(runs: dict, key: str, path: Path, verdict: Verdict | None = None) -> bool:
    """``key`` of each seed as a dot per variant with the variants' means as bars; with a
    verdict, a second panel draws its effect, interval and threshold. False when no run
    has a numeric ``key``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = {n: [r[key] for r in rs if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
              for n, rs in runs.items()}
    if not any(values.values()):
        return False
    panels = 2 if verdict is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels + 1, 3.2), squeeze=False)
    ax = axes[0, 0]
    for i, (name, vs) in enumerate(values.items()):
        if vs:
            ax.bar(i, sum(vs) / len(vs), color="#cfd8e3", width=0.6)
            ax.scatter([i] * len(vs), vs, color="#1f4e79", zorder=3, s=18)
    ax.set_xticks(range(len(values)), list(values), rotation=20)
    ax.set_ylabel(key)
    ax.set_title(f"{key}: seeds (dots) and mean (bars)")
    if verdict is not None:
        ax = axes[0, 1]
        ax.errorbar([0], [verdict.effect], yerr=[[verdict.effect - verdict.low], [verdict.high - verdict.effect]],
                    fmt="o", color="#1f4e79", capsize=6)
        ax.axhline(verdict.threshold, color="#b03a2e", linestyle="--", label="threshold")
        ax.set_xticks([0], ["effect"])
        ax.set_title(f"{verdict.outcome} (95% interval)")
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
