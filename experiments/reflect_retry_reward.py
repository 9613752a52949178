"""Reflect, Retry, Reward on a byte model. The SFT warm start teaches the format: direct
answers, and after a wrong answer "\\nWrong. Reflect:" + a reflection (the problem restated,
one line) + "Retry:" + the right answer. RL (GRPO over G reflections of each failed first
attempt) then rewards only the reflection tokens when the retry succeeds.
Evaluation (greedy): first-try success, and second-try success = solved at the first try or
by the retry after one reflection.
Paper scale: --set model_dim=512 --set rl.loop.steps=2000 --set task.train_difficulty=[2,4] ...
"""

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxlab.rl import RLConfig, train_rl
from jaxlab.rl import reflect as reflect_lib
from jaxlab.rl.rollout import decode_response, default_sample_config, sample_completions, score_responses
from jaxlab.data.chat import encode_prompt
from jaxlab.rl.warmstart import TaskConfig, model_config, sft_records, warm_start
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.train.sft import SFTConfig

CLAIM = ("After training that rewards only reflection tokens, both first-try and second-try "
         "success rise (greedy, on the test split).")
REPORT_KEYS = ["first_before", "first_after", "second_before", "second_after"]


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "reflect_retry_reward"
    task: TaskConfig = TaskConfig(train_difficulty=(1, 2), ood_difficulty=(3, 3))
    model_dim: int = 64
    model_layers: int = 2
    sft: SFTConfig = SFTConfig(batch_size=32, seq_len=96,
                               loop=LoopConfig(steps=500, eval_every=10_000,
                                               checkpoint_every=10_000))
    sft_optim: OptimConfig = OptimConfig(lr=3e-3, warmup_steps=20)
    reflect_share: float = 0.5  # share of SFT records in the reflect-and-retry format
    rl: RLConfig = RLConfig(prompts_per_step=8, group_size=8, ppo_epochs=2, max_new_tokens=8,
                            reflect_max_tokens=16, mode="reflect", eps_high=0.28,
                            loop=LoopConfig(steps=80, log_every=1, eval_every=10,
                                            checkpoint_every=40))
    rl_optim: OptimConfig = OptimConfig(lr=5e-5, warmup_steps=10, schedule="constant", weight_decay=0.0)
    mesh: MeshConfig = MeshConfig(data=1)  # --set mesh.data=8 or mesh.fsdp=8: 8 devices


def get_config():
    return Config()


def reflect_records(examples, share: float, seed: int = 0) -> list[dict]:
    """Direct records plus reflect-format records with a wrong first answer (the right
    answer off by 1..9)."""
    rng = np.random.default_rng(seed)
    records = sft_records(examples)
    for ex in examples[:int(share * len(examples))]:
        wrong = str(int(ex.answer) + int(rng.choice([-1, 1])) * int(rng.integers(1, 10)))
        records.append({"prompt": ex.prompt + wrong + reflect_lib.REFLECT_PROMPT,
                        "response": f"{ex.prompt}\nRetry:{ex.answer}"})
    return records


def first_and_second(params, model_cfg, examples, rl: RLConfig) -> tuple[float, float]:
    key = jax.random.key(0)
    greedy = default_sample_config(rl.max_new_tokens, 0.0)
    out = sample_completions(params, model_cfg, [encode_prompt(e.prompt) for e in examples], key, greedy)
    texts = [decode_response(t, m) for t, m in zip(out["tokens"], out["mask"])]
    first = score_responses(examples, texts)[1]
    failed = np.flatnonzero(first == 0)
    second = first.copy()
    if len(failed):
        contexts = [reflect_lib.reflection_context(examples[i].prompt, out["tokens"][i, :out["lengths"][i]]) for i in failed]
        reflect_greedy = dataclasses.replace(rl.reflect_sample_config(), temperature=0.0)
        retry = reflect_lib.reflect_and_retry(params, model_cfg, contexts, key,
                                              reflect_cfg=reflect_greedy, answer_cfg=greedy)
        second[failed] = score_responses([examples[i] for i in failed], retry["answer_text"])[1]
    return float(first.mean()), float(second.mean())


def run(cfg: Config, workdir: Path, *, progress):
    splits = cfg.task.splits()
    model_cfg = model_config(cfg.model_dim, cfg.model_layers)
    mesh = experiment_mesh(cfg.mesh)
    params = warm_start(workdir / "sft", splits["train"], model_cfg=model_cfg, sft=cfg.sft,
                        optim=cfg.sft_optim, mesh=mesh, progress=progress,
                        records=reflect_records(splits["train"], cfg.reflect_share))
    first_before, second_before = first_and_second(params, model_cfg, splits["test"], cfg.rl)
    result = train_rl(workdir / "rl", splits["train"], model_cfg=model_cfg, rl=cfg.rl, optim=cfg.rl_optim,
                      mesh=mesh, init_params=params, progress=progress)
    first_after, second_after = first_and_second(jax.device_get(result.state.params), model_cfg,
                                                 splits["test"], cfg.rl)
    retry = [r["train/retry_success"] for r in result.records if "train/retry_success" in r]
    out = {"first_before": first_before, "first_after": first_after, "second_before": second_before,
           "second_after": second_after, "retry_success_curve": retry}
    out["report"] = ("| | first try | second try |\n|---|---|---|\n"
                     f"| before RL | {first_before:.3f} | {second_before:.3f} |\n"
                     f"| after RL | {first_after:.3f} | {second_after:.3f} |\n\n"
                     f"Training retry success (sampled), first vs last 5 rollouts: "
                     f"{np.mean(retry[:5]) if retry else float('nan'):.3f} -> "
                     f"{np.mean(retry[-5:]) if retry else float('nan'):.3f}")
    return out


def check(results):
    r = results[next(iter(results))]
    held = r["first_after"] > r["first_before"] and r["second_after"] > r["second_before"]
    return held, (f"first try {r['first_before']:.3f} -> {r['first_after']:.3f}, second try "
                  f"{r['second_before']:.3f} -> {r['second_after']:.3f}. Criterion: both rise strictly.")
