"""The experiment config: every setting of a run, one frozen dataclass per concern."""

from __future__ import annotations

import dataclasses

from jaxlab.data.pipeline import DataConfig
from jaxlab.models import blt, mamba, transformer
from jaxlab.peft.adapters import AdapterSpec
from jaxlab.samplers import SampleConfig
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Pre-training settings: the data shape of a step, the loss's extra term and the
    validation size; ``loop`` holds what every trainer shares (steps, seed, grad_accum,
    log/eval/checkpoint intervals, kept checkpoints: :class:`jaxlab.train.fit.LoopConfig`).
    ``peft``: an adapter trained on the frozen starting params (``model.hf_path``'s weights,
    or a fresh init), e.g. ``--set train.peft.method=lora train.peft.rank=16``; method "none"
    (the default) trains every parameter."""
    batch_size: int = 16  # sequences per optimizer step, over all devices and processes
    seq_len: int = 256
    z_loss: float = 0.0
    eval_batches: int = 8  # validation batches per evaluation (fewer if the split is smaller)
    loop: LoopConfig = LoopConfig(steps=1000)
    peft: AdapterSpec = AdapterSpec(method="none")

    def __post_init__(self):
        for name in ("batch_size", "seq_len", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.loop.grad_accum:
            raise ValueError(f"train.batch_size ({self.batch_size}) must be a multiple of "
                             f"train.loop.grad_accum ({self.loop.grad_accum})")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    # the model family: ``--set model.family=mamba`` / ``blt`` (jaxlab.models.module)
    model: transformer.Config | mamba.Config | blt.Config = transformer.Config()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    mesh: MeshConfig = MeshConfig()
    sample: SampleConfig = SampleConfig()
    prompt: str = "The "  # the report shows the model's continuation of this text


# Keys that may change between a run and its resumption (they do not change the trajectory).
RESUMABLE_KEYS = ("train.loop.log_every", "train.loop.eval_every", "train.eval_batches",
                  "train.loop.checkpoint_every", "train.loop.keep_checkpoints", "prompt", "name")
