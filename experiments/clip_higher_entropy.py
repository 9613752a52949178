"""Clip-higher and policy entropy (DAPO: Yu et al. 2025, "DAPO: An Open-Source LLM
Reinforcement Learning System at Scale", section 3.1 "Clip-Higher").

Two RL arms start from one SFT warm start (a tiny byte-level transformer trained from scratch
on the task's train prompts) and differ ONLY in the upper clip bound of the surrogate

    l_t = -min(rho_t A, clip(rho_t, 1 - eps_low, 1 + eps_high) A),  rho_t = pi(y_t) / pi_old(y_t)

    symmetric     eps_low = 0.2, eps_high = 0.2
    clip_higher   eps_low = 0.2, eps_high = 0.28      (the DAPO value)

Everything else is one RLConfig: the same warm start, the same train prompts in the same order
(the rollout RNG is the same seed in both arms), GRPO advantages, token-mean aggregation, no
dynamic sampling, no overlong shaping, no KL, no entropy bonus. Each rollout batch serves
``ppo_epochs`` = 4 updates, so updates 2..4 are off-policy and the clip binds. The report gives
each arm's clip fractions over those off-policy updates: the share of tokens whose ratio is
clipped on the low side (A < 0, rho < 1 - eps_low) and on the high side (A > 0, rho > 1 + eps_high).

Entropy is measured on a FIXED set of probe prompts (the first ``n_probe`` prompts of the test
split, never trained on), the same for both arms and every evaluation, with one fixed sampling
key (common random numbers): for probe prompt x_p,

    H_p = sum_{j,t} H(pi(. | x_p, y_j,<t)) / sum_j |y_j|,   y_1 .. y_4 ~ pi(. | x_p)  (T = 1)

(:func:`jaxlab.rl.probes.probe_entropy`), the policy's mean token entropy along its own samples.

Claim (fixed before any run, version 1): clip-higher keeps the policy entropy higher than
symmetric clipping. Effect: mean over seeds and probe prompts of
H_p(clip_higher, end) - H_p(symmetric, end), nats per token; held when its 95% interval
(nested paired bootstrap over seeds x probe prompts) lies above 0, not held when it lies at or
below 0, inconclusive otherwise. Preconditions (fixed in advance): (1) there is an entropy fall
to prevent: in every seed the symmetric arm's mean probe entropy at the end is at most 0.8 x
the warm start's (a fall of at least 20%); (2) the clip binds: in every seed the symmetric
arm's clipped share of tokens (low + high side, mean over its off-policy updates) is > 0.
The RL settings (learning rate, steps) were chosen from pilot runs of the symmetric arm alone,
for the preconditions, before any clip-higher run (seed 0, default size, 128 probes): at lr 3e-4
and 160 steps its probe entropy fell 0.555 -> 0.314 with clipped shares 0.038 (low) and 0.015
(high); at 1e-4 and 320 steps it fell only to 0.442 (ratio 0.80, on the margin); at 3e-5 to 0.525.
In every pilot the train reward (pass rate at T = 1) did not rise (3e-4: 0.20 -> 0.13): this tiny
model memorises the train prompts rather than learning addition, and RL on some prompts disturbs
others (on 16 fixed prompts the same loop raises the reward 0.30 -> 0.43). The claim is about
entropy, which falls here either way; the report gives the rewards beside it.

    jaxlab run experiments/clip_higher_entropy.py --preset smoke --seeds 2 --publish   # minutes
    jaxlab run experiments/clip_higher_entropy.py --preset paper --seeds 3 --publish   # CPU, see PRESETS

Seeds shift the task split (so the probe prompts), the SFT data order and init, and the RL
rollouts (both arms alike).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.rl import RLConfig, train_rl
from jaxlab.rl.probes import probe_entropy
from jaxlab.rl.warmstart import TaskConfig, model_config, warm_start
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.train.sft import SFTConfig

CLAIM = ("Clip-higher (eps_high 0.28 > eps_low 0.2) keeps the policy's entropy on fixed probe prompts "
         "higher than symmetric clipping (0.2 / 0.2) at the end of RL from the same warm start.")
CLAIM_VERSION = 1
ENTROPY_FALL = 0.8  # precondition: symmetric end entropy <= ENTROPY_FALL x warm-start entropy, every seed
REPORT_KEYS = ["entropy_gap_end", "entropy_start", "symmetric_entropy_end", "clip_higher_entropy_end",
               "symmetric_clip_low", "symmetric_clip_high", "clip_higher_clip_low", "clip_higher_clip_high",
               "symmetric_reward_end", "clip_higher_reward_end"]
ARMS = ("symmetric", "clip_higher")
PRESETS = {
    # minutes on 2 CPU cores; what the tests run
    "smoke": {"task.n_train": 256, "task.n_test": 64, "n_probe": 64, "model_dim": 32, "model_layers": 1,
              "sft.loop.steps": 300, "rl.prompts_per_step": 8, "rl.group_size": 4, "rl.loop.steps": 48,
              "rl.loop.eval_every": 16, "rl.loop.checkpoint_every": 48},
    # the fair setting: 512 probe prompts, 3+ seeds (3 seeds took 15 minutes on 2 busy CPU cores)
    "paper": {"task.n_test": 512, "n_probe": 512},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "clip_higher_entropy"
    task: TaskConfig = TaskConfig(n_train=2000, n_test=128, n_ood=8)
    n_probe: int = 128          # probe prompts: the first n_probe of the test split
    probe_samples: int = 4      # completions per probe prompt
    probe_key: int = 0          # the probes' sampling key (the same for both arms and every step)
    model_dim: int = 64
    model_layers: int = 2
    sft: SFTConfig = SFTConfig(batch_size=32, seq_len=64,
                               loop=LoopConfig(steps=500, eval_every=10_000, checkpoint_every=10_000))
    sft_optim: OptimConfig = OptimConfig(lr=3e-3, warmup_steps=20)
    rl_optim: OptimConfig = OptimConfig(lr=3e-4, warmup_steps=8, schedule="constant", weight_decay=0.0)
    rl: RLConfig = RLConfig(prompts_per_step=16, group_size=8, ppo_epochs=4, max_new_tokens=8,
                            eps_low=0.2, eps_high=0.2, aggregation="token-mean",
                            loop=LoopConfig(steps=160, log_every=1, eval_every=40, checkpoint_every=40))
    clip_higher_eps_high: float = 0.28
    mesh: MeshConfig = MeshConfig(data=1)


def get_config():
    return Config()


def arm_configs(cfg: Config) -> dict[str, RLConfig]:
    """The two arms: ``cfg.rl`` (symmetric) and the same with eps_high raised; nothing else."""
    if cfg.rl.eps_high != cfg.rl.eps_low:
        raise ValueError(f"rl must clip symmetrically (eps_low = eps_high), got {cfg.rl.eps_low} / {cfg.rl.eps_high}")
    if not cfg.clip_higher_eps_high > cfg.rl.eps_low:
        raise ValueError(f"clip_higher_eps_high={cfg.clip_higher_eps_high} must exceed eps_low={cfg.rl.eps_low}")
    return {"symmetric": cfg.rl, "clip_higher": dataclasses.replace(cfg.rl, eps_high=cfg.clip_higher_eps_high)}


def off_policy_mean(records: list[dict], key: str, ppo_epochs: int) -> float:
    """Mean of ``key`` over the updates that reuse a rollout (step - 1 not a multiple of
    ``ppo_epochs``): the only ones where a ratio differs from 1 and the clip can bind."""
    values = [r[key] for r in records if key in r and (r["step"] - 1) % ppo_epochs]
    return float(np.mean(values)) if values else 0.0


def run(cfg: Config, workdir: Path, *, progress):
    splits = cfg.task.splits()
    model_cfg = model_config(cfg.model_dim, cfg.model_layers)
    mesh = experiment_mesh(cfg.mesh)
    params = warm_start(workdir / "sft", splits["train"], model_cfg=model_cfg, sft=cfg.sft,
                        optim=cfg.sft_optim, mesh=mesh, progress=progress)
    if len(splits["test"]) < cfg.n_probe:
        raise ValueError(f"n_probe={cfg.n_probe} needs task.n_test >= {cfg.n_probe}, got {len(splits['test'])}")
    probes = [ex.prompt for ex in splits["test"][:cfg.n_probe]]
    sample = cfg.rl.sample_config()
    key = jax.random.key(cfg.probe_key)

    def entropy_P(p):
        return probe_entropy(p, model_cfg, probes, key, sample, n_samples=cfg.probe_samples)

    start_P = entropy_P(params)
    out = {"n_probe": len(probes), "entropy_start": float(start_P.mean()),
           "entropy_start_per_probe": start_P.tolist()}
    for arm, rl in arm_configs(cfg).items():
        probed = {}  # step -> per-probe entropies of this process's evaluations

        def evaluate(p, step):
            probed[step] = entropy_P(p)
            return {"probe_entropy": float(probed[step].mean())}

        result = train_rl(workdir / arm, splits["train"], model_cfg=model_cfg, rl=rl, optim=cfg.rl_optim,
                          mesh=mesh, init_params=params, progress=progress, evaluate=evaluate)
        rec = result.records
        # the last evaluation is at the last step (a finished run resumed here evaluates again)
        end_P = probed[rl.loop.steps] if rl.loop.steps in probed else entropy_P(jax.device_get(result.params))
        train = [r for r in rec if "train/reward" in r]
        out.update({
            f"{arm}_eps_high": rl.eps_high,
            f"{arm}_entropy_end": float(end_P.mean()),
            f"{arm}_entropy_end_per_probe": end_P.tolist(),
            f"{arm}_clip_low": off_policy_mean(rec, "train/clip_low", rl.ppo_epochs),
            f"{arm}_clip_high": off_policy_mean(rec, "train/clip_high", rl.ppo_epochs),
            f"{arm}_reward_start": float(np.mean([r["train/reward"] for r in train[:rl.ppo_epochs * 3]])),
            f"{arm}_reward_end": float(np.mean([r["train/reward"] for r in train[-rl.ppo_epochs * 3:]])),
            f"{arm}_curve_step": [0] + [r["step"] for r in rec if "val/probe_entropy" in r],
            f"{arm}_curve_entropy": [out["entropy_start"]] + [r["val/probe_entropy"] for r in rec
                                                              if "val/probe_entropy" in r],
            f"{arm}_clip_low_per_step": [r["train/clip_low"] for r in rec if "train/clip_low" in r],
            f"{arm}_clip_high_per_step": [r["train/clip_high"] for r in rec if "train/clip_high" in r],
            f"{arm}_step1_loss": rec[0].get("train/loss"),
            f"{arm}_step1_reward": rec[0].get("train/reward"),
        })
    out["entropy_gap_end"] = out["clip_higher_entropy_end"] - out["symmetric_entropy_end"]
    _plot(out, workdir / "entropy.png")
    out["report"] = "\n".join([
        f"Probe entropy (nats / token, {len(probes)} probe prompts x {cfg.probe_samples} samples): warm start "
        f"{out['entropy_start']:.4f}", "",
        "| arm | eps_high | entropy end | clip low | clip high | reward start | reward end |",
        "|---|---|---|---|---|---|---|",
        *[f"| {a} | {out[f'{a}_eps_high']} | {out[f'{a}_entropy_end']:.4f} | {out[f'{a}_clip_low']:.4f} | "
          f"{out[f'{a}_clip_high']:.4f} | {out[f'{a}_reward_start']:.3f} | {out[f'{a}_reward_end']:.3f} |"
          for a in ARMS], "",
        "Clip fractions are shares of tokens over the off-policy updates (2nd to last of each rollout).", "",
        "![probe entropy and clip fractions](entropy.png)"])
    return out


def _plot(out: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for arm in ARMS:
        a.plot(out[f"{arm}_curve_step"], out[f"{arm}_curve_entropy"], marker="o", label=arm)
        steps = np.arange(1, len(out[f"{arm}_clip_low_per_step"]) + 1)
        b.plot(steps, out[f"{arm}_clip_low_per_step"], label=f"{arm}: low side", lw=1)
        b.plot(steps, out[f"{arm}_clip_high_per_step"], label=f"{arm}: high side", lw=1, linestyle="--")
    a.set_xlabel("RL step")
    a.set_ylabel("probe entropy (nats / token)")
    a.legend(fontsize=8)
    b.set_xlabel("RL step")
    b.set_ylabel("share of tokens clipped")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    higher_SP = np.array([r["clip_higher_entropy_end_per_probe"] for r in per_seed])
    sym_SP = np.array([r["symmetric_entropy_end_per_probe"] for r in per_seed])
    r = stats.paired_bootstrap_interval(higher_SP, sym_SP)
    ratios = [run["symmetric_entropy_end"] / run["entropy_start"] for run in per_seed]
    clipped = [run["symmetric_clip_low"] + run["symmetric_clip_high"] for run in per_seed]
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=f"nested paired bootstrap over {r['seeds']} seeds x {r['problems']} probe prompts",
        preconditions=[
            ("the symmetric arm's entropy falls", all(q <= ENTROPY_FALL for q in ratios),
             "end / start per seed " + ", ".join(f"{q:.3f}" for q in ratios) + f" (need <= {ENTROPY_FALL})"),
            ("the clip binds in the symmetric arm", all(c > 0 for c in clipped),
             "clipped share of tokens per seed " + ", ".join(f"{c:.4f}" for c in clipped) + " (need > 0)")])


def summarize(results: dict, workdir: Path) -> str:
    """Every seed's probe-entropy curves in one plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_seed = next(iter(results.values()))
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, run in enumerate(per_seed):
        for arm, color in zip(ARMS, ("#b03a2e", "#1f4e79")):
            ax.plot(run[f"{arm}_curve_step"], run[f"{arm}_curve_entropy"], color=color, alpha=0.8,
                    label=arm if k == 0 else None)
    ax.set_xlabel("RL step")
    ax.set_ylabel("probe entropy (nats / token)")
    ax.set_title("probe entropy, every seed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(workdir / "entropy_curves.png", dpi=110)
    plt.close(fig)
    return "![probe entropy, every seed](entropy_curves.png)\n"
