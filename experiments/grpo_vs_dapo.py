"""GRPO vs DAPO from the same SFT warm start on a verifiable task (arithmetic by default).

GRPO: symmetric clip eps 0.2, seq-mean-token-mean, no dynamic sampling, no overlong shaping.
DAPO: clip-higher (eps_low 0.2, eps_high 0.28), dynamic sampling, token-mean, soft overlong
penalty. Both do ppo_epochs = 2 updates per rollout batch so the clip range acts.
Defaults: a warm start whose sampled pass rate on the train prompts is about 0.2-0.5 (groups
of mixed rewards carry the signal) and a small RL learning rate with warmup (Adam's first
steps are sign-like; at 5e-4 they erase the warm start within a few rollouts).
Paper scale: --set model_dim=512 --set model_layers=8 --set rl.loop.steps=2000 ...
"""

import dataclasses
from pathlib import Path

import jax

from jaxlab.rl import RLConfig, solve_rates, train_rl
from jaxlab.rl.rollout import default_sample_config
from jaxlab.rl.warmstart import TaskConfig, head_mean, model_config, tail_mean, warm_start
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.train.sft import SFTConfig

CLAIM = ("With clip-higher the policy entropy does not collapse as under symmetric clipping "
         "(DAPO's final entropy >= GRPO's), and dynamic sampling keeps every update's groups "
         "informative (DAPO's share of zero-advantage groups in the batch < GRPO's).")
REPORT_KEYS = ["grpo_entropy_end", "dapo_entropy_end", "grpo_zero_std_in_batch",
               "dapo_zero_std_in_batch", "grpo_test_pass@1", "dapo_test_pass@1"]


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "grpo_vs_dapo"
    task: TaskConfig = TaskConfig()
    model_dim: int = 64
    model_layers: int = 2
    sft: SFTConfig = SFTConfig(batch_size=32, seq_len=64,
                               loop=LoopConfig(steps=500, eval_every=10_000,
                                               checkpoint_every=10_000))
    sft_optim: OptimConfig = OptimConfig(lr=3e-3, warmup_steps=20)
    rl_optim: OptimConfig = OptimConfig(lr=5e-5, warmup_steps=10, schedule="constant", weight_decay=0.0)
    grpo: RLConfig = RLConfig(prompts_per_step=16, group_size=8, ppo_epochs=2, max_new_tokens=8,
                              eps_low=0.2, eps_high=0.2, aggregation="seq-mean-token-mean",
                              loop=LoopConfig(steps=80, log_every=1, eval_every=10,
                                              checkpoint_every=40))
    dapo: RLConfig = RLConfig(prompts_per_step=16, group_size=8, ppo_epochs=2, max_new_tokens=8,
                              eps_low=0.2, eps_high=0.28, dynamic_sampling=True,
                              max_sample_rounds=4, aggregation="token-mean", overlong="soft",
                              overlong_buffer=4,
                              loop=LoopConfig(steps=80, log_every=1, eval_every=10,
                                              checkpoint_every=40))
    eval_samples: int = 8  # samples per test prompt for pass@k at temperature 1
    mesh: MeshConfig = MeshConfig(data=1)  # --set mesh.data=8 or mesh.fsdp=8: 8 devices


def get_config():
    return Config()


def run(cfg: Config, workdir: Path, *, progress):
    splits = cfg.task.splits()
    model_cfg = model_config(cfg.model_dim, cfg.model_layers)
    mesh = experiment_mesh(cfg.mesh)
    params = warm_start(workdir / "sft", splits["train"], model_cfg=model_cfg, sft=cfg.sft,
                        optim=cfg.sft_optim, mesh=mesh, progress=progress)
    greedy = default_sample_config(cfg.grpo.max_new_tokens, 0.0)
    sampled = default_sample_config(cfg.grpo.max_new_tokens, 1.0)
    k = cfg.grpo.pass_k
    key = jax.random.key(0)
    out = {"warm_test_pass@1": solve_rates(params, model_cfg, splits["test"], key=key, sample_cfg=greedy)["pass@1"]}
    lines = ["| arm | entropy start | entropy end | reward end | zero-std groups in batch | "
             "groups filtered | clip low | clip high | test pass@1 (greedy) | test pass@%d (T=1) |" % k,
             "|---|---|---|---|---|---|---|---|---|---|"]
    for arm, rl in (("grpo", cfg.grpo), ("dapo", cfg.dapo)):
        result = train_rl(workdir / arm, splits["train"], model_cfg=model_cfg, rl=rl, optim=cfg.rl_optim,
                          mesh=mesh, init_params=params, progress=progress)
        final = jax.device_get(result.state.params)
        rec = result.records
        zero_std = tail_mean(rec, "train/groups_zero_std", 10**6)
        if rl.dynamic_sampling:  # kept groups are all informative unless rounds ran out
            kept = [r["train/groups_kept"] for r in rec if "train/groups_kept" in r]
            zero_std = 1.0 - sum(kept) / (len(kept) * rl.prompts_per_step)
        test = solve_rates(final, model_cfg, splits["test"], key=key, sample_cfg=greedy)
        test_k = solve_rates(final, model_cfg, splits["test"], key=key, sample_cfg=sampled,
                             n_samples=cfg.eval_samples, k=k)
        out.update({f"{arm}_entropy_start": head_mean(rec, "train/entropy"),
                    f"{arm}_entropy_end": tail_mean(rec, "train/entropy"),
                    f"{arm}_reward_end": tail_mean(rec, "train/reward"),
                    f"{arm}_zero_std_in_batch": zero_std,
                    f"{arm}_groups_filtered": tail_mean(rec, "train/groups_filtered", 10**6),
                    f"{arm}_clip_low": tail_mean(rec, "train/clip_low", 10**6),
                    f"{arm}_clip_high": tail_mean(rec, "train/clip_high", 10**6),
                    f"{arm}_test_pass@1": test["pass@1"], f"{arm}_test_pass@{k}": test_k[f"pass@{k}"],
                    f"{arm}_entropy_curve": [r["train/entropy"] for r in rec if "train/entropy" in r],
                    f"{arm}_reward_curve": [r["train/reward"] for r in rec if "train/reward" in r]})
        lines.append(f"| {arm} | {out[f'{arm}_entropy_start']:.3f} | {out[f'{arm}_entropy_end']:.3f} | "
                     f"{out[f'{arm}_reward_end']:.3f} | {zero_std:.3f} | {out[f'{arm}_groups_filtered']:.3f} | "
                     f"{out[f'{arm}_clip_low']:.4f} | {out[f'{arm}_clip_high']:.4f} | "
                     f"{test['pass@1']:.3f} | {test_k[f'pass@{k}']:.3f} |")
    out["report"] = (f"Warm start (SFT) test pass@1: {out['warm_test_pass@1']:.3f}\n\n" + "\n".join(lines)
                     + "\n\nEntropy and reward per step are in each arm's metrics.jsonl.")
    return out


def check(results):
    r = results[next(iter(results))]
    entropy_ok = r["dapo_entropy_end"] >= r["grpo_entropy_end"]
    informative_ok = r["dapo_zero_std_in_batch"] < r["grpo_zero_std_in_batch"]
    text = (f"final entropy DAPO {r['dapo_entropy_end']:.3f} vs GRPO {r['grpo_entropy_end']:.3f} "
            f"({'held' if entropy_ok else 'not held'}); zero-advantage groups in the batch DAPO "
            f"{r['dapo_zero_std_in_batch']:.3f} vs GRPO {r['grpo_zero_std_in_batch']:.3f} "
            f"({'held' if informative_ok else 'not held'}). Criterion: both must hold.")
    return entropy_ok and informative_ok, text
