"""The shared start of RL experiments: task splits and a short SFT phase on the train prompts
(prompt -> reference answer), so that RL begins from a policy that sometimes succeeds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax

from jaxlab import tasks as tasks_lib
from jaxlab.models import transformer
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sft import SFTConfig, train_sft


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    name: str = "arithmetic"
    train_difficulty: tuple[int, int] = (1, 2)
    ood_difficulty: tuple[int, int] = (3, 3)
    extra: tuple[tuple[str, str], ...] = (("ops", "+"),)  # other task fields (name, value)
    n_train: int = 2000
    n_test: int = 128
    n_ood: int = 128
    seed: int = 0

    def splits(self) -> dict:
        task = tasks_lib.get(self.name, train_difficulty=self.train_difficulty,
                             ood_difficulty=self.ood_difficulty, **dict(self.extra))
        return task.splits(self.seed, self.n_train, self.n_test, self.n_ood)


def sft_records(examples) -> list[dict]:
    return [{"prompt": ex.prompt, "response": ex.answer} for ex in examples]


def warm_start(workdir: Path, examples, *, model_cfg: transformer.Config, sft: SFTConfig,
               optim: OptimConfig, mesh, progress: bool = True, records=None) -> dict:
    """SFT from scratch on ``records`` (default: the examples' prompt -> answer) in
    ``workdir`` (resumable); returns the params."""
    result = train_sft(workdir, records or sft_records(examples), model_cfg=model_cfg, sft=sft,
                       optim=optim, mesh=mesh, progress=progress)
    return jax.device_get(result.params)


def model_config(d_model: int = 64, n_layers: int = 2) -> transformer.Config:
    """A tiny byte-level model for CPU experiments (head_dim 32, MLP 3 x d_model)."""
    return transformer.Config(vocab_size=264, d_model=d_model, n_layers=n_layers,
                              n_heads=max(d_model // 32, 1), n_kv_heads=max(d_model // 32, 1),
                              head_dim=32, mlp_dim=3 * d_model, scan_unroll=n_layers)


def tail_mean(records, key: str, n: int = 5):
    """Mean of the last ``n`` logged values of ``key`` (None when never logged)."""
    values = [r[key] for r in records if isinstance(r.get(key), (int, float))][-n:]
    return float(sum(values) / len(values)) if values else None


def head_mean(records, key: str, n: int = 5):
    values = [r[key] for r in records if isinstance(r.get(key), (int, float))][:n]
    return float(sum(values) / len(values)) if values else None
