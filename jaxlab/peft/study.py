"""One fine-tuning arm of an adapter study: SFT on a task's examples with an adapter (or full
fine-tuning), then greedy accuracy on held-out examples. The adapter claims (SingLoRA,
FourierFT, EVA, intruder dimensions, BitDelta) compare such arms from one starting model.

    base = pretrain_byte_model(workdir / "base", models.get("quickstart"), steps=600)
    arm = finetune_arm(workdir / "lora", base, model_cfg, task, train, test,
                       spec=AdapterSpec(method="lora", rank=8), lr=1e-3, steps=200)
    arm.accuracy, arm.trainable_params, arm.losses_S, arm.params   # params: the merged model

An arm is a resumable run in its workdir (:func:`jaxlab.train.sft.train_sft`); rerunning a
finished arm loads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from jaxlab.data.tokenizer import BYTES
from jaxlab.evals.generation import greedy_correct
from jaxlab.models import transformer
from jaxlab.peft.adapters import AdapterSpec
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sft import SFTConfig, train_sft
from jaxlab.train.sharding import MeshConfig, experiment_mesh


@dataclasses.dataclass
class Arm:
    params: dict                 # the fine-tuned model (base merged with the adapter)
    trainable: dict              # what trained: the adapter leaves, or every param
    trainable_params: int
    losses_S: np.ndarray         # train loss at every logged step
    steps_S: np.ndarray          # those steps
    correct_P: np.ndarray        # int8 [P]: greedy answers on the held-out examples, verified
    train_seconds: float | None  # None when the arm was already complete

    @property
    def accuracy(self) -> float:
        return float(self.correct_P.mean())


def finetune_arm(workdir: str | Path, base: dict, model_cfg: transformer.Config, task, train: Sequence,
                 test: Sequence, *, spec: AdapterSpec, lr: float, steps: int, batch_size: int = 16,
                 seq_len: int = 64, seed: int = 0, warmup_steps: int = 10, max_new_tokens: int = 16,
                 eval_batch_size: int = 64, tokenizer=BYTES, log_every: int | None = None,
                 progress: bool = False) -> Arm:
    """SFT (cross-entropy on the answer) of ``base`` on ``train`` examples (``prompt`` ->
    ``answer``) for ``steps`` steps of AdamW at ``lr`` (linear warm-up, then constant; no weight
    decay), with the adapter ``spec`` (method "none": every parameter trains), on one device;
    then greedy accuracy on ``test`` verified by ``task``."""
    if not train or not test:
        raise ValueError(f"an arm needs train and test examples, got {len(train)} and {len(test)}")
    if lr <= 0 or steps < 1:
        raise ValueError(f"lr must be > 0 and steps >= 1, got lr={lr}, steps={steps}")
    records = [{"prompt": e.prompt, "response": e.answer} for e in train]
    sft = SFTConfig(batch_size=batch_size, seq_len=seq_len, peft=spec,
                    loop=LoopConfig(steps=steps, seed=seed, log_every=log_every or max(1, steps // 20),
                                    eval_every=steps, checkpoint_every=steps, keep_checkpoints=1))
    optim = OptimConfig(lr=lr, warmup_steps=min(warmup_steps, max(1, steps // 5)), schedule="constant",
                        weight_decay=0.0, clip_norm=1.0)
    result = train_sft(workdir, records, model_cfg=model_cfg, sft=sft, optim=optim,
                       mesh=experiment_mesh(MeshConfig(data=1)), init_params=base, progress=progress,
                       tokenizer=tokenizer)
    params = jax.device_get(result.params)
    logged = [r for r in result.records if "train/loss" in r]
    correct = greedy_correct(model_cfg, params, tokenizer, task, list(test), max_new_tokens=max_new_tokens,
                             batch_size=eval_batch_size)
    trainable = jax.device_get(result.state.params)
    return Arm(params=params, trainable=trainable,
               trainable_params=int(sum(np.size(x) for x in jax.tree.leaves(trainable))),
               losses_S=np.array([r["train/loss"] for r in logged], np.float64),
               steps_S=np.array([r["step"] for r in logged], np.int64),
               correct_P=correct, train_seconds=result.train_wall_s)


def steps_to_reach(losses_S: np.ndarray, steps_S: np.ndarray, target: float) -> float:
    """The first logged step whose train loss is <= ``target`` (inf if none)."""
    hit = np.nonzero(np.asarray(losses_S) <= target)[0]
    return float(np.asarray(steps_S)[hit[0]]) if hit.size else float("inf")
