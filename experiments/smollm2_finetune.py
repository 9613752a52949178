"""Fine-tune SmolLM2-135M-Instruct (or any model jaxlab.interop.models.load_model takes) on a
verifiable task with SFT, DPO or RL, and measure greedy accuracy before and after on held-out
problems of the same task. One command per method:

    jaxlab run experiments/smollm2_finetune.py --workdir runs/ft_sft --preset sft --publish
    jaxlab run experiments/smollm2_finetune.py --workdir runs/ft_dpo --preset dpo --publish
    jaxlab run experiments/smollm2_finetune.py --workdir runs/ft_rl --preset rl --publish  # SFT warm start, then GRPO

(``--publish`` copies the report and results to results/smollm2_finetune/<method>/.)

The task's prompt is the user turn of the model's chat template (ChatML with SmolLM2's default
system message), the training target is the bare answer and the end of turn, and evaluation
reads the same format (``jaxlab.evals.evaluate_task``). DPO pairs prefer the
right answer to a wrong one (the right value plus or minus 1 to 10). The RL arm starts from
``warm_steps`` of SFT, since the untuned model writes sentences the verifier cannot score.
Everything is resumable like any run; --set mesh.data=N shards the batch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import jax
import numpy as np

from jaxlab import tasks
from jaxlab.evals import evaluate_task
from jaxlab.rl import RLConfig, train_rl
from jaxlab.train.dpo import DPOConfig, train_dpo
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sft import SFTConfig, train_sft
from jaxlab.train.sharding import MeshConfig, experiment_mesh

REPORT_KEYS = ["before_accuracy", "after_accuracy", "before_well_formed", "after_well_formed", "train_seconds"]
PRESETS = {
    "sft": {"method": "sft"}, "dpo": {"method": "dpo"}, "rl": {"method": "rl"},
    "smoke": {"n_train": 32, "n_eval": 8, "sft.loop.steps": 2, "dpo.loop.steps": 2, "rl.loop.steps": 1,
              "warm_steps": 2, "sft.batch_size": 2, "dpo.batch_size": 2, "rl.prompts_per_step": 2,
              "rl.group_size": 2, "rl.pass_k": 2},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "smollm2_finetune"
    method: Literal["sft", "dpo", "rl"] = "sft"
    model: str = "smollm2-135m-instruct"
    task: str = "arithmetic"
    train_difficulty: tuple[int, int] = (1, 2)
    n_train: int = 1000
    n_eval: int = 100
    seed: int = 0
    sft: SFTConfig = SFTConfig(batch_size=8, seq_len=48,
                               loop=LoopConfig(steps=60, log_every=5, eval_every=10_000, checkpoint_every=20))
    dpo: DPOConfig = DPOConfig(beta=0.1, batch_size=8, seq_len=48,
                               loop=LoopConfig(steps=40, log_every=5, eval_every=10_000, checkpoint_every=20))
    rl: RLConfig = RLConfig(prompts_per_step=4, group_size=4, max_new_tokens=8, eps_high=0.28,
                            loop=LoopConfig(steps=20, log_every=1, eval_every=10_000, checkpoint_every=10))
    warm_steps: int = 20
    optim: OptimConfig = OptimConfig(lr=3e-5, warmup_steps=5, schedule="constant", weight_decay=0.0)
    mesh: MeshConfig = MeshConfig(data=1)


def get_config():
    return Config()


def _wrong(answer: str, rng: np.random.Generator) -> str:
    value = int(answer)
    return str(value + int(rng.choice([-1, 1])) * int(rng.integers(1, 11)))


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    import time

    from jaxlab.interop.models import load_model

    model_cfg, params, tok = load_model(cfg.model)
    task = tasks.get(cfg.task, train_difficulty=tuple(cfg.train_difficulty), **({"ops": "+"} if cfg.task == "arithmetic" else {}))
    train = task.splits(cfg.seed, cfg.n_train, 0, 0)["train"]
    mesh = experiment_mesh(cfg.mesh)

    def accuracy(p):
        r = evaluate_task(model_cfg, p, tok, task, n=cfg.n_eval, samples=0, key=jax.random.key(cfg.seed),
                          split="test", seed=cfg.seed + 1, progress=progress)
        return r["overall"]["greedy"]["accuracy"], r["overall"]["format_rate"]

    before, before_wf = accuracy(params)
    records = [{"prompt": e.prompt, "response": e.answer} for e in train]
    start = time.perf_counter()
    if cfg.method == "sft":
        out = train_sft(workdir / "sft", records, model_cfg=model_cfg, sft=cfg.sft, optim=cfg.optim, mesh=mesh,
                        init_params=params, progress=progress, tokenizer=tok)
    elif cfg.method == "dpo":
        rng = np.random.default_rng(cfg.seed)
        pairs = [{"prompt": e.prompt, "chosen": e.answer, "rejected": _wrong(e.answer, rng)} for e in train]
        out = train_dpo(workdir / "dpo", pairs, model_cfg=model_cfg, dpo=cfg.dpo, optim=cfg.optim, mesh=mesh,
                        init_params=params, progress=progress, tokenizer=tok)
    else:
        warm_cfg = dataclasses.replace(cfg.sft, loop=dataclasses.replace(cfg.sft.loop, steps=cfg.warm_steps))
        warm = train_sft(workdir / "warm", records, model_cfg=model_cfg, sft=warm_cfg, optim=cfg.optim, mesh=mesh,
                         init_params=params, progress=progress, tokenizer=tok)
        out = train_rl(workdir / "rl", train, model_cfg=model_cfg, rl=cfg.rl, optim=cfg.optim, mesh=mesh,
                       init_params=jax.device_get(warm.params), progress=progress, tokenizer=tok)
    seconds = time.perf_counter() - start
    after, after_wf = accuracy(jax.device_get(out.params))
    return {"method": cfg.method, "before_accuracy": before, "after_accuracy": after,
            "before_well_formed": before_wf, "after_well_formed": after_wf, "train_seconds": seconds,
            "report": (f"Greedy accuracy on {cfg.n_eval} held-out {cfg.task} problems: {before:.3f} before "
                       f"{cfg.method}, {after:.3f} after (well-formed answers {before_wf:.2f} -> {after_wf:.2f}).")}
