"""Private testing inflates arena scores (Singh et al. 2025, "The Leaderboard Illusion").

A simulated arena (jaxlab.analysis.leaderboard): ``n_public`` public models with skills
N(0, 1) battle each other; one provider with skill N(0, 1) tests N private variants of the same
model (identical true skill: ``spread`` = 0) against them, ``battles_per_model`` battles each,
fits Bradley-Terry scores by maximum likelihood and publishes the variant with the best score.
Inflation = published score - true skill in Elo, both against the public models' mean.

Claim (fixed before any run, version 1): publishing the best of 10 privately tested variants
inflates the published score. Effect: mean over seeds and replications of inflation(N = 10) -
inflation(N = 1), Elo; held when its 95% interval (nested paired bootstrap over seeds and
replications; replication r of seed s draws the same public models and provider for every N)
lies above 0. Precondition: the fit orders an evenly sampled arena (mean Kendall tau between
fitted and true skills >= 0.8), so scores mean something before anyone games them.

Reported beside the claim: inflation against N (plot, with intervals), and rank agreement
(Kendall tau of fitted against current true skills) in five arenas: even sampling; 20% of
models sampled 10x as often; skills drifting by N(0, 0.5^2) between two phases; the drift with
30% of the models deprecated after the first phase; and both.

    jaxlab run experiments/leaderboard_illusion.py --preset smoke --seeds 2               # seconds
    jaxlab run experiments/leaderboard_illusion.py --preset paper --seeds 5 --publish     # minutes on 2 cores
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.analysis import leaderboard

CLAIM = ("Publishing the best of 10 privately tested variants of one model inflates its "
         "Bradley-Terry arena score over publishing one.")
CLAIM_VERSION = 1
CLAIM_N = 10
MIN_TAU = 0.8
REPORT_KEYS = ["inflation_at_claim_n", "inflation_at_1", "tau_even", "tau_both"]
ARENAS = {
    "even": {},
    "boosted": {"boosted_fraction": 0.2, "boost": 10.0},
    "drift": {"drift": 0.5},
    "drift_deprecated": {"drift": 0.5, "deprecated_fraction": 0.3},
    "both": {"boosted_fraction": 0.2, "boost": 10.0, "drift": 0.5, "deprecated_fraction": 0.3},
}
PRESETS = {
    "smoke": {"n_variants": (1, 10), "replications": 4, "rank_replications": 2, "battles_per_model": 100},
    "paper": {"n_variants": (1, 2, 5, 10, 20), "replications": 25, "rank_replications": 25},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "leaderboard_illusion"
    n_variants: tuple[int, ...] = (1, 2, 5, 10, 20)
    replications: int = 25          # simulated arenas per seed and N
    n_public: int = 10
    battles_per_model: int = 200
    spread: float = 0.0             # std of the variants' true skills around the provider's
    rank_models: int = 20
    rank_battles: int = 4000
    rank_replications: int = 25
    seed: int = 0

    def __post_init__(self):
        if 1 not in self.n_variants or CLAIM_N not in self.n_variants:
            raise ValueError(f"n_variants must include 1 and {CLAIM_N} (the claim compares them), "
                             f"got {self.n_variants}")
        if any(n < 1 for n in self.n_variants) or min(self.replications, self.rank_replications) < 1:
            raise ValueError("n_variants, replications and rank_replications must be >= 1")


def get_config():
    return Config()


def _sim_seed(cfg: Config, r: int) -> int:
    """Replication r of this seed: the same arena draw for every N (paired)."""
    return 1_000_003 * cfg.seed + r


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    jobs = [("inflation", n, r) for n in cfg.n_variants for r in range(cfg.replications)]
    jobs += [("rank", arena, r) for arena in ARENAS for r in range(cfg.rank_replications)]
    if progress:
        from tqdm.auto import tqdm
        jobs = tqdm(jobs, desc="arenas", unit="fit")
    inflation = {n: [] for n in cfg.n_variants}
    tau = {arena: [] for arena in ARENAS}
    for kind, what, r in jobs:
        if kind == "inflation":
            inflation[what].append(leaderboard.private_testing_inflation(
                _sim_seed(cfg, r), what, n_public=cfg.n_public, spread=cfg.spread,
                battles_per_model=cfg.battles_per_model))
        else:
            tau[what].append(leaderboard.ranking_agreement(
                _sim_seed(cfg, r), n_models=cfg.rank_models, battles=cfg.rank_battles, **ARENAS[what]))
    _plot(inflation, tau, workdir)
    return {"inflation": {str(n): v for n, v in inflation.items()}, "tau": tau,
            "inflation_at_claim_n": float(np.mean(inflation[CLAIM_N])),
            "inflation_at_1": float(np.mean(inflation[1])),
            "tau_even": float(np.mean(tau["even"])), "tau_both": float(np.mean(tau["both"])),
            "report": "![inflation against N and rank agreement per arena](leaderboard.png)"}


def _plot(inflation: dict, tau: dict, workdir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    ns = sorted(inflation)
    means = [np.mean(inflation[n]) for n in ns]
    bands = [stats.bootstrap_mean_interval(np.asarray(inflation[n])) for n in ns]
    a.plot(ns, means, marker="o")
    a.fill_between(ns, [lo for lo, _ in bands], [hi for _, hi in bands], alpha=0.25)
    a.axhline(0.0, color="grey", linestyle="--")
    a.set_xscale("log")
    a.set_xlabel("privately tested variants, N")
    a.set_ylabel("published score - true skill (Elo)")
    a.set_title("inflation of the published best variant")
    names = list(tau)
    b.bar(range(len(names)), [np.mean(tau[k]) for k in names],
          yerr=[np.std(tau[k]) for k in names], capsize=3)
    b.set_xticks(range(len(names)), [k.replace("_", "\n") for k in names], fontsize=8)
    b.set_ylim(0, 1)
    b.set_ylabel("Kendall tau, fitted vs current skill")
    b.set_title("rank agreement per arena")
    fig.tight_layout()
    fig.savefig(workdir / "leaderboard.png", dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    many_SR = np.array([run["inflation"][str(CLAIM_N)] for run in per_seed])
    one_SR = np.array([run["inflation"]["1"] for run in per_seed])
    r = stats.paired_bootstrap_interval(many_SR, one_SR)
    tau_even = float(np.mean([run["tau_even"] for run in per_seed]))
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=f"nested paired bootstrap of inflation(N={CLAIM_N}) - inflation(N=1) over {r['seeds']} seeds x "
             f"{r['problems']} arenas, Elo",
        preconditions=[("the fit orders an evenly sampled arena", tau_even >= MIN_TAU,
                        f"mean Kendall tau {tau_even:.3f} (needs >= {MIN_TAU})")])
