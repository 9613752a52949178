"""The experiment config: every setting of a run, one frozen dataclass per concern."""

from __future__ import annotations

import dataclasses

from jaxlab.data.pipeline import DataConfig
from jaxlab.models import transformer
from jaxlab.samplers import SampleConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 16  # sequences per optimizer step, over all devices and processes
    seq_len: int = 256
    grad_accum: int = 1  # micro-batches per step (batch_size must divide by it)
    z_loss: float = 0.0
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    eval_batches: int = 8  # validation batches per evaluation (fewer if the split is smaller)
    checkpoint_every: int = 200
    keep_checkpoints: int = 3

    def __post_init__(self):
        for name in ("steps", "batch_size", "seq_len", "grad_accum", "log_every", "eval_every",
                     "eval_batches", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"train.batch_size ({self.batch_size}) must be a multiple of "
                             f"train.grad_accum ({self.grad_accum})")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    model: transformer.Config = transformer.Config()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    mesh: MeshConfig = MeshConfig()
    sample: SampleConfig = SampleConfig()
    prompt: str = "The "  # the report shows the model's continuation of this text


# Keys that may change between a run and its resumption (they do not change the trajectory).
RESUMABLE_KEYS = ("train.log_every", "train.eval_every", "train.eval_batches",
                  "train.checkpoint_every", "train.keep_checkpoints", "prompt", "name")
