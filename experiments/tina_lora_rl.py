"""LoRA-RL against full-parameter RL (after "Tina: Tiny Reasoning Models via LoRA", Wang et al.
2025: GRPO with LoRA adapters on a small model gains as much reasoning accuracy as full
fine-tuning, at a fraction of the trainable parameters).

Protocol. One SFT warm start of the pretrained model on the task (prompt -> answer; it teaches
the answer format, which the untuned instruct model does not follow), then two RL arms from it
with the same prompts, rollout seed, steps and batch shape:

    full   every parameter trains, AdamW at ``full_lr``
    lora   a LoRA adapter (rank ``lora.rank``, alpha ``lora.alpha``, on ``lora.targets``) trains
           on the frozen warm start, AdamW at ``lora_lr`` = 10 x ``full_lr`` (the usual ratio for
           LoRA; both rates fixed before any run)

RL is GRPO with clip-higher (eps 0.2 / 0.28), token-mean loss, no KL, reward = the task's exact
verifier (:mod:`jaxlab.rl.loop`; the LoRA arm passes ``rl.peft``). Both arms and the warm start
are scored greedily on the same held-out problems.

Claim (fixed before any run, version 1): LoRA-RL's held-out accuracy gain matches full RL's.
Effect: mean over seeds and held-out problems of correct_LoRA - correct_full (1/0 per problem,
paired; since both start from the same warm start this is gain_LoRA - gain_full); 95% interval
by the nested paired bootstrap over seeds x problems. "Matches" is non-inferiority at a margin
of ``MARGIN`` = 0.05: held when the interval's lower end is above -0.05, not held when its upper
end is at or below -0.05, inconclusive otherwise. Preconditions, fixed in advance: (1) the warm
start leaves room: its accuracy is within [0.05, 0.95] in every seed; (2) there is a gain to
match: full RL's gain over the warm start (paired, pooled over seeds) has a 95% interval above 0.

Presets:

    smoke  a tiny random byte model ("tiny-random"), 2 warm steps and 2 RL steps per arm (the
           tests); a random model cannot do the task, so precondition (1) fails: inconclusive
    paper  SmolLM2-135M-Instruct, 1-2 digit additions (1,000 train problems), 40 warm SFT steps of
           8 x 48 tokens, 150 RL steps of 16 prompts x 8 samples of up to 8 tokens per arm, 500
           held-out problems, 3 seeds. Needs a GPU: on the 2 shared CPU cores one RL step of
           8 x 4 samples took 50-190 s (by load), so even 30 steps per arm did not fit. Estimated
           (from step and generation counts, not measured) about 10 minutes per seed on one
           H200; a line of scripts/gpu_claims.sh. Not yet run at the paper preset.

    jaxlab run experiments/tina_lora_rl.py --preset smoke --seeds 2 --publish
    jaxlab run experiments/tina_lora_rl.py --workdir OUT/tina_lora_rl --preset paper --seeds 3 --publish

Seeds change the task split (train and held-out problems), the warm start's data order and the
RL rollouts (both arms alike); the pretrained weights are the same.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats, tasks
from jaxlab.evals.generation import greedy_correct
from jaxlab.interop.models import load_experiment_model
from jaxlab.peft.adapters import AdapterSpec
from jaxlab.rl import RLConfig, train_rl
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sft import SFTConfig, train_sft
from jaxlab.train.sharding import MeshConfig, experiment_mesh

CLAIM = ("RL with a LoRA adapter gains as much held-out accuracy as full-parameter RL from the same warm "
         "start (non-inferior at a margin of 0.05).")
CLAIM_VERSION = 1
MARGIN = 0.05
HEADROOM = (0.05, 0.95)
ARMS = ("full", "lora")
REPORT_KEYS = ["lora_minus_full", "warm_accuracy", "full_accuracy", "lora_accuracy", "full_trainable",
               "lora_trainable", "full_seconds", "lora_seconds"]
PRESETS = {
    "smoke": {"model": "tiny-random", "n_train": 32, "n_test": 8, "warm.loop.steps": 2, "warm.batch_size": 8,
              "rl.loop.steps": 2, "rl.prompts_per_step": 4, "rl.group_size": 2, "rl.pass_k": 2,
              "rl.max_new_tokens": 4, "lora.rank": 2},
    "paper": {},  # the defaults below
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "tina_lora_rl"
    model: str = "smollm2-135m-instruct"  # anything load_model takes, or "tiny-random"
    task: str = "arithmetic"
    train_difficulty: tuple[int, int] = (1, 2)
    n_train: int = 1000
    n_test: int = 500
    seed: int = 0
    warm: SFTConfig = SFTConfig(batch_size=8, seq_len=48,
                                loop=LoopConfig(steps=40, log_every=5, eval_every=10_000, checkpoint_every=10_000))
    warm_lr: float = 3e-5
    rl: RLConfig = RLConfig(prompts_per_step=16, group_size=8, max_new_tokens=8, eps_high=0.28, pass_k=8,
                            loop=LoopConfig(steps=150, log_every=1, eval_every=10_000, checkpoint_every=25))
    full_lr: float = 1e-5
    lora_lr: float = 1e-4
    lora: AdapterSpec = AdapterSpec(method="lora", targets="all", rank=16, alpha=32.0)
    eval_batch_size: int = 64
    mesh: MeshConfig = MeshConfig(data=1)

    def __post_init__(self):
        if self.lora.method not in ("lora", "dora", "singlora", "fourierft"):
            raise ValueError(f"lora.method must be an adapter trained by RL (lora, dora, singlora, fourierft), "
                             f"got {self.lora.method!r}")


def get_config():
    return Config()


def _optim(lr: float) -> OptimConfig:
    return OptimConfig(lr=lr, warmup_steps=3, schedule="constant", weight_decay=0.0, clip_norm=1.0)


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    model_cfg, params0, tok = load_experiment_model(cfg.model, cfg.seed)
    task = tasks.get(cfg.task, train_difficulty=tuple(cfg.train_difficulty),
                     **({"ops": "+"} if cfg.task == "arithmetic" else {}))
    splits = task.splits(cfg.seed, cfg.n_train, cfg.n_test, 0)
    mesh = experiment_mesh(cfg.mesh)

    def correct_P(p) -> np.ndarray:
        return greedy_correct(model_cfg, jax.device_get(p), tok, task, splits["test"],
                              max_new_tokens=cfg.rl.max_new_tokens, batch_size=cfg.eval_batch_size)

    records = [{"prompt": e.prompt, "response": e.answer} for e in splits["train"]]
    warm_cfg = dataclasses.replace(cfg.warm, loop=dataclasses.replace(cfg.warm.loop, seed=cfg.seed))
    warm = train_sft(workdir / "warm", records, model_cfg=model_cfg, sft=warm_cfg, optim=_optim(cfg.warm_lr),
                     mesh=mesh, init_params=params0, progress=progress, tokenizer=tok)
    warm_params = jax.device_get(warm.params)
    warm_P = correct_P(warm_params)
    out = {"n_test": len(warm_P), "warm_accuracy": float(warm_P.mean()), "warm_correct": warm_P.tolist()}
    rl_base = dataclasses.replace(cfg.rl, loop=dataclasses.replace(cfg.rl.loop, seed=cfg.seed))
    lines = ["| arm | trainable params | lr | accuracy [Wilson 95%] | gain over warm start | train reward first / last 5 | "
             "seconds |", "|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        rl = dataclasses.replace(rl_base, peft=cfg.lora) if arm == "lora" else rl_base
        lr = cfg.lora_lr if arm == "lora" else cfg.full_lr
        start = time.perf_counter()
        result = train_rl(workdir / arm, splits["train"], model_cfg=model_cfg, rl=rl, optim=_optim(lr), mesh=mesh,
                          init_params=warm_params, progress=progress, tokenizer=tok, base_path=f"{workdir / 'warm'}")
        seconds = time.perf_counter() - start
        c_P = correct_P(result.params)
        rewards = [r["train/reward"] for r in result.records if "train/reward" in r]
        low, high = stats.wilson_interval(int(c_P.sum()), len(c_P))
        trainable = int(sum(np.size(x) for x in jax.tree.leaves(result.state.params)))
        out.update({f"{arm}_accuracy": float(c_P.mean()), f"{arm}_correct": c_P.tolist(),
                    f"{arm}_trainable": trainable, f"{arm}_seconds": seconds, f"{arm}_reward_curve": rewards})
        lines.append(f"| {arm} | {trainable:,} | {lr:g} | {c_P.mean():.3f} [{low:.3f}, {high:.3f}] | "
                     f"{c_P.mean() - warm_P.mean():+.3f} | {np.mean(rewards[:5]):.3f} / {np.mean(rewards[-5:]):.3f} | "
                     f"{seconds:.0f} |")
    out["lora_minus_full"] = out["lora_accuracy"] - out["full_accuracy"]
    _plot(out, workdir / "rewards.png")
    out["report"] = "\n".join([
        f"{cfg.model}: {cfg.task} ({tuple(cfg.train_difficulty)} digits), {len(splits['train'])} train / "
        f"{out['n_test']} held-out problems; warm start {cfg.warm.loop.steps} SFT steps "
        f"(accuracy {out['warm_accuracy']:.3f}); RL {cfg.rl.loop.steps} steps of {cfg.rl.prompts_per_step} prompts "
        f"x {cfg.rl.group_size} samples per arm; LoRA rank {cfg.lora.rank}, alpha {cfg.lora.alpha:g} on "
        f"{cfg.lora.targets!r}.", "", *lines, "", "![train reward per step](rewards.png)"])
    return out


def _plot(out: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm in ARMS:
        curve = out[f"{arm}_reward_curve"]
        ax.plot(np.arange(1, len(curve) + 1), curve, label=f"{arm} ({out[f'{arm}_trainable']:,} trainable)")
    ax.set_xlabel("RL step")
    ax.set_ylabel("mean reward of the sampled completions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    lora_SP = np.array([r["lora_correct"] for r in per_seed], np.float64)
    full_SP = np.array([r["full_correct"] for r in per_seed], np.float64)
    warm_SP = np.array([r["warm_correct"] for r in per_seed], np.float64)
    r = stats.paired_bootstrap_interval(lora_SP, full_SP)
    gain = stats.paired_bootstrap_interval(full_SP, warm_SP)
    warm = [run["warm_accuracy"] for run in per_seed]
    lo, hi = HEADROOM
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=-MARGIN,
        test=f"nested paired bootstrap of correct(LoRA) - correct(full) over {r['seeds']} seeds x {r['problems']} "
             f"held-out problems; non-inferiority margin {MARGIN}",
        preconditions=[
            ("the warm start leaves room", all(lo <= w <= hi for w in warm),
             "warm-start accuracy per seed " + ", ".join(f"{w:.3f}" for w in warm) + f" (need within [{lo}, {hi}])"),
            ("full RL gains", gain["low"] > 0,
             f"full RL minus warm start {gain['effect']:+.3f} [{gain['low']:+.3f}, {gain['high']:+.3f}] (needs > 0)")])
