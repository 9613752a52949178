"""Supervised fine-tuning on prompt/response records: masked cross-entropy, DFT, or distillation.

Records are ``{"prompt": str, "response": str}`` (or chat ``messages``; see
``jaxlab.data.chat``); the loss covers the response tokens and EOS only. Rows are packed
with segment ids, so several short examples share a row without attending to each other.

Distillation (``sft.loss=distill``) trains on a frozen teacher's token distributions as soft
labels (:func:`jaxlab.losses.lm.distill_sums`) over the same response tokens: with records
whose responses the teacher sampled itself, this is how a speculative-decoding draft learns the
target (``train_sft(..., teacher=(teacher_cfg, teacher_params))``). The teacher's params ride
along as the loop's frozen pytree, so it is sharded like the student and never trained.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import jax

from jaxlab.data.chat import sft_dataset
from jaxlab.data.tokenizer import BYTES, Tokenizer
from jaxlab.losses.lm import cross_entropy_sums, dft_sums, distill_sums
from jaxlab import models
from jaxlab.models import transformer
from jaxlab.peft.adapters import AdapterSpec
from jaxlab.peft.runs import trainer_adapter
from jaxlab.train.batch import apply_batch
from jaxlab.train.fit import FitResult, IteratorSource, LoopConfig, fit
from jaxlab.train.optim import OptimConfig

SFT_LOSSES = ("ce", "dft", "distill")


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    """loss: "ce" (masked cross-entropy), "dft" (cross-entropy weighted by the stop-gradient
    target probability) or "distill" (soft labels from a teacher, module docstring). batch_size: packed rows per optimizer step; seq_len:
    tokens per row. loop: steps, seed, grad_accum and intervals (:class:`LoopConfig`).
    peft: an adapter to train on the frozen starting params (``--set sft.peft.method=lora
    sft.peft.rank=16``); method "none" (the default) trains every parameter."""
    loss: Literal["ce", "dft", "distill"] = "ce"
    batch_size: int = 16
    seq_len: int = 128
    loop: LoopConfig = LoopConfig(steps=200, log_every=10, eval_every=50, checkpoint_every=100)
    peft: AdapterSpec = AdapterSpec(method="none")

    def __post_init__(self):
        if self.loss not in SFT_LOSSES:
            raise ValueError(f"sft loss {self.loss!r} is not one of {SFT_LOSSES}")
        for name in ("batch_size", "seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"sft.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.loop.grad_accum:
            raise ValueError(f"sft.batch_size={self.batch_size} is not a multiple of "
                             f"sft.loop.grad_accum={self.loop.grad_accum}")


def sft_loss_sums(params: dict, batch: dict, key: jax.Array, teacher: dict | None = None, *,
                  model_cfg: transformer.Config, loss: str = "ce", teacher_cfg=None) -> dict:
    """Loss sums of a packed SFT batch (inputs, targets, positions, segment_ids, mask = loss
    mask): ``ce`` = masked cross-entropy, ``dft`` = DFT (see ``jaxlab.losses.lm.dft_sums``),
    ``distill`` = soft labels from ``teacher`` params under ``teacher_cfg``."""
    del key
    logits_BTV = apply_batch(params, batch, model_cfg)
    if loss == "distill":
        if teacher is None:
            raise ValueError("sft.loss=distill needs the teacher's params")
        teacher_BTV = apply_batch(teacher, batch, teacher_cfg)
        return distill_sums(logits_BTV, teacher_BTV, batch["mask"], batch["targets"])
    if loss == "dft":
        return dft_sums(logits_BTV, batch["targets"], batch["mask"])
    return cross_entropy_sums(logits_BTV, batch["targets"], batch["mask"])


def train_sft(workdir: str | Path, records: Sequence[Mapping], *, model_cfg: transformer.Config,
              sft: SFTConfig, optim: OptimConfig, mesh, init_params: Callable | dict | None = None,
              evaluate: Callable[[dict, int], dict] | None = None, progress: bool = True,
              tokenizer: Tokenizer = BYTES, base_path: str | Path | None = None,
              teacher: tuple | None = None) -> FitResult:
    """Fine-tunes on ``records`` in ``workdir`` (resumable); ``init_params`` is a params pytree
    to start from (a warm start), a function of a key, or None for a fresh model. Records are
    encoded by ``tokenizer`` with its chat template (default: bytes). With ``sft.peft`` an
    adapter trains on ``init_params`` held frozen (``base_path``: where they came from, recorded
    in the checkpoints); ``FitResult.params`` is the merged model. ``teacher``: (cfg, params) of
    the model whose distributions ``sft.loss=distill`` learns (same vocabulary)."""
    if len(records) == 0:
        raise ValueError("SFT needs at least one record")
    if (sft.loss == "distill") != (teacher is not None):
        raise ValueError("sft.loss=distill needs teacher=(cfg, params), and only it takes one")
    teacher_cfg, teacher_params = teacher if teacher is not None else (None, None)
    if teacher_cfg is not None and teacher_cfg.vocab_size != model_cfg.vocab_size:
        raise ValueError(f"the teacher's vocabulary ({teacher_cfg.vocab_size}) is not the student's "
                         f"({model_cfg.vocab_size})")
    per_process = sft.batch_size // jax.process_count()
    ds = sft_dataset(list(records), seq_len=sft.seq_len, batch_size=per_process, seed=sft.loop.seed,
                     shard_index=jax.process_index(), shard_count=jax.process_count(), repeat=True,
                     tokenizer=tokenizer)
    if init_params is None:
        init_params = models.init_fn(model_cfg)
    init_params, adapter = trainer_adapter(
        sft.peft, init_params, seed=sft.loop.seed, base_path=base_path, model_cfg=model_cfg, progress=progress,
        eva_batches=lambda: iter(sft_dataset(list(records), seq_len=sft.seq_len, batch_size=per_process,
                                             seed=sft.loop.seed, repeat=True, tokenizer=tokenizer)))
    return fit(workdir, name=f"sft-{sft.loss}", loop=sft.loop, optim=optim, mesh=mesh,
               init_params=init_params, param_axes=models.param_axes(model_cfg),
               loss_sums_fn=functools.partial(sft_loss_sums, model_cfg=model_cfg, loss=sft.loss,
                                              teacher_cfg=teacher_cfg),
               source=IteratorSource(iter(ds)), evaluate=evaluate, progress=progress, adapter=adapter,
               frozen=teacher_params)
