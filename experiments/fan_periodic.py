"""FAN extrapolates periodic functions (Dong et al. 2024, "FAN: Fourier Analysis Networks").

A FAN layer is phi(x) = [cos(x W_p) || sin(x W_p) || GELU(x W_q + b_q)] (d_p = width / 4);
an MLP layer is GELU(x W + b). Networks of each kind, ``depth`` layers and a linear read-out,
with parameter counts matched to within 10% (``jaxlab.nn.regression.width_for_budget``),
are fitted full-batch with Adam to periodic targets on the training interval
x in [-train_periods * 2 pi, +train_periods * 2 pi] and scored on the interval beyond it, as
far again on each side: 2 pi train_periods < |x| <= 4 pi train_periods.

Targets (periodic, as the paper's periodicity tasks: a sine, a mixture, a sawtooth from a
modulo, and a product):

    sin        sin(x)
    mixture    sin(x) + 0.5 sin(3 x)
    sawtooth   (x mod 2 pi) / pi - 1
    product    sin(x) cos(2 x)

Claim (fixed before any run, version 1): outside the training interval FAN's mean squared
error is lower than the MLP's. Effect: the mean over seeds and targets of
ln MSE_mlp - ln MSE_fan (> 0: FAN's error is lower; 0.69 is a factor of 2); held when its 95%
interval (nested paired bootstrap over seeds and targets) lies above 0. Preconditions: both
networks fit the training interval (training MSE below 5% of the target's variance there, for
every seed and target), so the comparison is about extrapolation, not fitting; the parameter
counts are within 10% of each other. Seeds change the initialisation and the training points.

    jaxlab run experiments/fan_periodic.py --preset smoke --seeds 2        # seconds (tests)
    jaxlab run experiments/fan_periodic.py --preset paper --seeds 5 --publish   # minutes on 2 cores
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import stats
from jaxlab.nn import regression

CLAIM = ("Outside the training interval, a FAN network's mean squared error on periodic targets "
         "is lower than an MLP's with the same number of parameters.")
CLAIM_VERSION = 1
REPORT_KEYS = ["mean_log_ratio", "params_mlp", "params_fan"]
TARGETS = {
    "sin": lambda x: np.sin(x),
    "mixture": lambda x: np.sin(x) + 0.5 * np.sin(3 * x),
    "sawtooth": lambda x: np.mod(x, 2 * np.pi) / np.pi - 1.0,
    "product": lambda x: np.sin(x) * np.cos(2 * x),
}
FIT_FRACTION = 0.05   # precondition: training MSE < 5% of the target's variance
PARAM_TOLERANCE = 0.10
PRESETS = {
    "smoke": {"targets": ("sin", "mixture"), "steps": 400, "n_train": 512},
    "paper": {"targets": tuple(TARGETS), "steps": 4000, "n_train": 2048},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "fan_periodic"
    targets: tuple[str, ...] = tuple(TARGETS)
    train_periods: float = 2.0   # the training interval spans +-train_periods periods of 2 pi
    n_train: int = 2048
    n_test: int = 2048
    depth: int = 3
    mlp_width: int = 64          # the MLP's width sets the parameter budget
    steps: int = 4000
    lr: float = 2e-3
    seed: int = 0

    def __post_init__(self):
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise ValueError(f"targets must be a non-empty subset of {sorted(TARGETS)}, got {self.targets}")


def get_config():
    return Config()


def _points(cfg: Config, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Training x uniform on [-R, R]; test x evenly spaced on R < |x| <= 2R (R = 2 pi periods)."""
    R = 2 * math.pi * cfg.train_periods
    x_train = rng.uniform(-R, R, size=cfg.n_train)
    half = np.linspace(R, 2 * R, cfg.n_test // 2 + 1)[1:]
    return x_train, np.concatenate([-half[::-1], half])


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    rng = np.random.default_rng(cfg.seed)
    x_train, x_test = _points(cfg, rng)
    budget = regression.count_params(regression.init_net("mlp", jax.random.key(0), width=cfg.mlp_width,
                                                         depth=cfg.depth))
    widths = {"mlp": cfg.mlp_width, "fan": regression.width_for_budget("fan", budget, cfg.depth)}
    rows, curves = [], {}
    R = 2 * math.pi * cfg.train_periods
    x_plot = np.linspace(-2 * R, 2 * R, 1001)
    targets = cfg.targets
    if progress:
        from tqdm.auto import tqdm
        targets = tqdm(targets, desc="targets", unit="target")
    for t, name in enumerate(targets):
        f = TARGETS[name]
        y_train, y_test = f(x_train), f(x_test)
        row = {"target": name, "train_variance": float(np.var(y_train))}
        for kind in ("mlp", "fan"):
            key = jax.random.fold_in(jax.random.key(cfg.seed), 2 * t + (kind == "fan"))
            params = regression.init_net(kind, key, width=widths[kind], depth=cfg.depth)
            row[f"params_{kind}"] = regression.count_params(params)
            params, losses = regression.fit(kind, params, jnp.asarray(x_train[:, None], jnp.float32),
                                            jnp.asarray(y_train[:, None], jnp.float32), steps=cfg.steps, lr=cfg.lr)
            pred_train = np.asarray(regression.net(kind, params, jnp.asarray(x_train[:, None], jnp.float32)))[:, 0]
            pred_test = np.asarray(regression.net(kind, params, jnp.asarray(x_test[:, None], jnp.float32)))[:, 0]
            pred_plot = np.asarray(regression.net(kind, params, jnp.asarray(x_plot[:, None], jnp.float32)))[:, 0]
            row[f"train_mse_{kind}"] = float(np.mean((pred_train - y_train) ** 2))
            row[f"test_mse_{kind}"] = float(np.mean((pred_test - y_test) ** 2))
            curves[(name, kind)] = (np.asarray(losses), pred_plot)
        row["log_ratio"] = math.log(row["test_mse_mlp"]) - math.log(row["test_mse_fan"])
        rows.append(row)
    _plot(x_plot, R, curves, workdir)
    return {"rows": rows, "widths": widths, "params_mlp": rows[0]["params_mlp"],
            "params_fan": rows[0]["params_fan"],
            "mean_log_ratio": float(np.mean([r["log_ratio"] for r in rows])),
            "report": "![fits outside the training interval](fan_periodic.png)"}


def _plot(x_plot: np.ndarray, R: float, curves: dict, workdir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(name for name, _ in curves))
    fig, axes = plt.subplots(2, len(names), figsize=(4 * len(names), 6), squeeze=False)
    for j, name in enumerate(names):
        ax = axes[0, j]
        ax.axvspan(-R, R, color="0.9", label="training interval")
        ax.plot(x_plot, TARGETS[name](x_plot), color="black", lw=1, label="target")
        for kind, color in (("mlp", "tab:orange"), ("fan", "tab:blue")):
            ax.plot(x_plot, curves[(name, kind)][1], color=color, lw=1, label=kind)
        ax.set_title(name)
        ax.set_ylim(-3, 3)
        ax.legend(fontsize=7)
        ax = axes[1, j]
        for kind, color in (("mlp", "tab:orange"), ("fan", "tab:blue")):
            ax.semilogy(curves[(name, kind)][0], color=color, label=kind)
        ax.set_xlabel("step")
        ax.set_ylabel("training MSE")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(workdir / "fan_periodic.png", dpi=100)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    mlp_SP = np.log([[r["test_mse_mlp"] for r in run["rows"]] for run in per_seed])
    fan_SP = np.log([[r["test_mse_fan"] for r in run["rows"]] for run in per_seed])
    r = stats.paired_bootstrap_interval(mlp_SP, fan_SP)
    fits = [(r_["train_mse_mlp"] / r_["train_variance"], r_["train_mse_fan"] / r_["train_variance"])
            for run in per_seed for r_ in run["rows"]]
    worst = max(max(pair) for pair in fits)
    p_mlp, p_fan = per_seed[0]["params_mlp"], per_seed[0]["params_fan"]
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=f"nested paired bootstrap of ln MSE_mlp - ln MSE_fan over {r['seeds']} seeds x {r['problems']} targets",
        preconditions=[
            ("both networks fit the training interval", worst < FIT_FRACTION,
             f"worst training MSE / variance {worst:.3g} (needs < {FIT_FRACTION})"),
            ("parameter counts match", abs(p_fan - p_mlp) <= PARAM_TOLERANCE * p_mlp,
             f"mlp {p_mlp}, fan {p_fan} parameters"),
        ])
