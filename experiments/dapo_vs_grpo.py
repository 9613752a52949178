"""DAPO vs GRPO as whole recipes, on test accuracy (DAPO: Yu et al. 2025, "DAPO: An Open-Source
LLM Reinforcement Learning System at Scale"; GRPO: Shao et al. 2024, DeepSeekMath).

Two RL arms from one SFT warm start (a tiny byte-level transformer trained from scratch on the
task's train prompts), the same train prompts, rollout seed, optimizer, steps and ppo_epochs:

    grpo   eps_low = eps_high = 0.2; every sampled group kept; "seq-mean-token-mean"
           (each completion's token mean, then the mean over completions); reward = correct
    dapo   clip-higher eps_high = 0.28; dynamic sampling (keep groups with
           0 < #correct < G, the paper's filter on correctness, sampling more prompts for up to
           ``max_sample_rounds`` rounds); "token-mean" over all tokens of the batch; soft
           overlong punishment (R_len over the last ``overlong_buffer`` tokens before the limit)

(:mod:`jaxlab.rl.loop`, :mod:`jaxlab.rl.shaping`, :mod:`jaxlab.losses.policy`). Dynamic sampling
draws more completions per update than GRPO does; the report gives each arm's sampled groups.

Claim (fixed before any run, version 1): the DAPO recipe reaches a higher greedy test accuracy
than GRPO. Effect: mean over seeds and test problems of correct_DAPO - correct_GRPO (1/0 per
problem, greedy decoding, the task's exact verifier); held when its 95% interval (nested
paired bootstrap over seeds x test problems) lies above 0, not held when it lies at or below 0,
inconclusive otherwise. McNemar's exact test on the pooled pairs is reported beside it.
Precondition (fixed in advance): the warm start leaves room both ways: its greedy test accuracy
is within [0.05, 0.95] in every seed.

Settings: the learning rate (1e-4, 160 steps of 4 updates per rollout) comes from pilot runs of
a symmetric-clip arm alone (experiments/clip_higher_entropy.py), none with DAPO: in those the
train reward at T = 1 did not rise at any rate tried (3e-5 flat, 1e-4 and 3e-4 falling, 1e-3
collapsing), so RL on this tiny from-scratch model may lower accuracy in both arms; the claim
compares the arms, whichever way the warm start moves.

    jaxlab run experiments/dapo_vs_grpo.py --preset smoke --seeds 2 --publish   # minutes
    jaxlab run experiments/dapo_vs_grpo.py --preset paper --seeds 3 --publish   # CPU, see PRESETS

Seeds shift the task split (so the test problems), the SFT data order and init, and the RL
rollouts (both arms alike).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.rl import RLConfig, train_rl
from jaxlab.rl.probes import problem_correct
from jaxlab.rl.rollout import default_sample_config
from jaxlab.rl.warmstart import TaskConfig, model_config, warm_start
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.train.sft import SFTConfig

CLAIM = ("The DAPO recipe (clip-higher, dynamic sampling on correctness, token-mean loss, soft overlong "
         "punishment) reaches a higher greedy test accuracy than GRPO from the same warm start.")
CLAIM_VERSION = 1
HEADROOM = (0.05, 0.95)  # precondition: warm-start greedy test accuracy within this range, every seed
REPORT_KEYS = ["accuracy_gap", "warm_accuracy", "grpo_accuracy", "dapo_accuracy", "grpo_batch_zero_std",
               "dapo_batch_zero_std", "dapo_groups_sampled_per_step", "grpo_entropy_end", "dapo_entropy_end"]
ARMS = ("grpo", "dapo")
PRESETS = {
    # minutes on 2 CPU cores; what the tests run
    "smoke": {"task.n_train": 256, "task.n_test": 64, "model_dim": 32, "model_layers": 1,
              "sft.loop.steps": 300, "grpo.prompts_per_step": 8, "grpo.group_size": 4, "grpo.loop.steps": 48,
              "dapo.prompts_per_step": 8, "dapo.group_size": 4, "dapo.loop.steps": 48},
    # the fair setting: 512 test problems, 3+ seeds (3 seeds took 12 minutes on 2 busy CPU cores)
    "paper": {"task.n_test": 512},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "dapo_vs_grpo"
    task: TaskConfig = TaskConfig(n_train=2000, n_test=128, n_ood=8)
    model_dim: int = 64
    model_layers: int = 2
    sft: SFTConfig = SFTConfig(batch_size=32, seq_len=64,
                               loop=LoopConfig(steps=500, eval_every=10_000, checkpoint_every=10_000))
    sft_optim: OptimConfig = OptimConfig(lr=3e-3, warmup_steps=20)
    rl_optim: OptimConfig = OptimConfig(lr=1e-4, warmup_steps=8, schedule="constant", weight_decay=0.0)
    grpo: RLConfig = RLConfig(prompts_per_step=16, group_size=8, ppo_epochs=4, max_new_tokens=8,
                              eps_low=0.2, eps_high=0.2, aggregation="seq-mean-token-mean",
                              loop=LoopConfig(steps=160, log_every=1, eval_every=10_000, checkpoint_every=40))
    dapo: RLConfig = RLConfig(prompts_per_step=16, group_size=8, ppo_epochs=4, max_new_tokens=8,
                              eps_low=0.2, eps_high=0.28, dynamic_sampling=True, max_sample_rounds=3,
                              aggregation="token-mean", overlong="soft", overlong_buffer=4,
                              loop=LoopConfig(steps=160, log_every=1, eval_every=10_000, checkpoint_every=40))
    eval_key: int = 0
    mesh: MeshConfig = MeshConfig(data=1)


def get_config():
    return Config()


def check_pairing(cfg: Config) -> None:
    """The arms must share what is not part of a recipe: batch shape, updates, sampling, seed."""
    shared = ("prompts_per_step", "group_size", "ppo_epochs", "max_new_tokens", "temperature", "advantage",
              "eps_low", "format_coef", "kl_coef", "entropy_coef", "loop")
    differ = [f for f in shared if getattr(cfg.grpo, f) != getattr(cfg.dapo, f)]
    if differ:
        raise ValueError(f"grpo and dapo must share {', '.join(differ)}")


def tail(records: list[dict], key: str, n: int) -> float:
    values = [r[key] for r in records if key in r]
    return float(np.mean(values[-n:])) if values else float("nan")


def run(cfg: Config, workdir: Path, *, progress):
    check_pairing(cfg)
    splits = cfg.task.splits()
    model_cfg = model_config(cfg.model_dim, cfg.model_layers)
    mesh = experiment_mesh(cfg.mesh)
    params = warm_start(workdir / "sft", splits["train"], model_cfg=model_cfg, sft=cfg.sft,
                        optim=cfg.sft_optim, mesh=mesh, progress=progress)
    greedy = default_sample_config(cfg.grpo.max_new_tokens, 0.0)
    key = jax.random.key(cfg.eval_key)

    def correct_P(p):
        return problem_correct(p, model_cfg, splits["test"], key, greedy)[:, 0]

    warm_P = correct_P(params)
    out = {"n_test": len(warm_P), "warm_accuracy": float(warm_P.mean()), "warm_correct": warm_P.astype(int).tolist()}
    lines = ["| arm | accuracy [Wilson 95%] | train reward start / end | zero-std groups in batch | "
             "groups sampled per step | entropy end | clip low / high |", "|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        rl = getattr(cfg, arm)
        result = train_rl(workdir / arm, splits["train"], model_cfg=model_cfg, rl=rl, optim=cfg.rl_optim,
                          mesh=mesh, init_params=params, progress=progress)
        rec = [r for r in result.records if "train/reward" in r]
        c_P = correct_P(jax.device_get(result.params))
        low, high = stats.wilson_interval(int(c_P.sum()), len(c_P))
        n_tail = 10 * rl.ppo_epochs
        rollouts = rec[::rl.ppo_epochs]  # one record per rollout batch
        out.update({
            f"{arm}_accuracy": float(c_P.mean()), f"{arm}_accuracy_low": low, f"{arm}_accuracy_high": high,
            f"{arm}_correct": c_P.astype(int).tolist(),
            f"{arm}_reward_start": float(np.mean([r["train/reward"] for r in rec[:n_tail]])),
            f"{arm}_reward_end": tail(rec, "train/reward", n_tail),
            f"{arm}_batch_zero_std": tail(rec, "train/batch_zero_std", 10**6),
            f"{arm}_groups_filtered": tail(rec, "train/groups_filtered", 10**6),
            f"{arm}_groups_sampled_per_step": float(np.mean([r["train/sample_rounds"] for r in rollouts]))
            * rl.prompts_per_step,
            f"{arm}_entropy_end": tail(rec, "train/entropy", n_tail),
            f"{arm}_clip_low": tail(rec, "train/clip_low", 10**6),
            f"{arm}_clip_high": tail(rec, "train/clip_high", 10**6),
            f"{arm}_reward_curve": [r["train/reward"] for r in rollouts],
        })
        lines.append(f"| {arm} | {c_P.mean():.3f} [{low:.3f}, {high:.3f}] | {out[f'{arm}_reward_start']:.3f} / "
                     f"{out[f'{arm}_reward_end']:.3f} | {out[f'{arm}_batch_zero_std']:.3f} | "
                     f"{out[f'{arm}_groups_sampled_per_step']:.1f} | {out[f'{arm}_entropy_end']:.3f} | "
                     f"{out[f'{arm}_clip_low']:.4f} / {out[f'{arm}_clip_high']:.4f} |")
    out["accuracy_gap"] = out["dapo_accuracy"] - out["grpo_accuracy"]
    m = stats.mcnemar_exact(out["dapo_correct"], out["grpo_correct"])
    out["mcnemar_p"] = m["p_value"]
    _plot(out, workdir / "rewards.png")
    out["report"] = "\n".join([
        f"Warm start greedy test accuracy {out['warm_accuracy']:.3f} ({len(warm_P)} problems).", "", *lines, "",
        f"McNemar (this seed): DAPO right / GRPO wrong {m['b']}, the reverse {m['c']}, p = {m['p_value']:.3g}.", "",
        "Clip fractions and zero-std groups are means over all updates; entropy is the train batch's.", "",
        "![train reward per rollout](rewards.png)"])
    return out


def _plot(out: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm in ARMS:
        ax.plot(np.arange(1, len(out[f"{arm}_reward_curve"]) + 1), out[f"{arm}_reward_curve"], label=arm)
    ax.set_xlabel("rollout batch")
    ax.set_ylabel("mean reward of the sampled groups")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    dapo_SP = np.array([r["dapo_correct"] for r in per_seed], np.float64)
    grpo_SP = np.array([r["grpo_correct"] for r in per_seed], np.float64)
    r = stats.paired_bootstrap_interval(dapo_SP, grpo_SP)
    m = stats.mcnemar_exact(dapo_SP.reshape(-1), grpo_SP.reshape(-1))
    warm = [run["warm_accuracy"] for run in per_seed]
    lo, hi = HEADROOM
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=(f"nested paired bootstrap over {r['seeds']} seeds x {r['problems']} test problems; "
              f"McNemar exact p = {m['p_value']:.3g} ({m['b']} vs {m['c']} discordant)"),
        preconditions=[("the warm start leaves room", all(lo <= w <= hi for w in warm),
                        "warm-start greedy test accuracy per seed " + ", ".join(f"{w:.3f}" for w in warm)
                        + f" (need within [{lo}, {hi}])")])
