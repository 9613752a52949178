"""The optimizer from config: AdamW, a warmup + decay schedule, clipping, a weight-decay mask.

    lr(s) = lr * s / warmup                                   for s < warmup
    lr(s) = lr * (f + (1 - f) * decay((s - warmup) / (steps - warmup)))   afterwards,
    decay(u) = (1 + cos(pi u)) / 2 (cosine) | 1 - u (linear) | 1 (constant),  f = final_lr_fraction
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-3
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 100
    final_lr_fraction: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    decay_embeddings: bool = True  # norms and biases are never decayed
    clip_norm: float | None = 1.0

    def __post_init__(self):
        if self.lr < 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("optim.lr, optim.warmup_steps and optim.weight_decay must be >= 0")
        if not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError(f"optim.final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ValueError(f"optim.clip_norm must be > 0 or None, got {self.clip_norm}")


def make_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Learning rate as a function of the step (see the module docstring)."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    final = cfg.lr * cfg.final_lr_fraction
    if cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.final_lr_fraction)
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(cfg.lr, final, decay_steps)
    elif cfg.schedule == "constant":
        decay = optax.constant_schedule(cfg.lr)
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), decay], [warmup])


FROZEN_SUBTREES = ("entropy",)  # top-level params a model keeps frozen (a BLT's entropy model)


def weight_decay_mask(params, *, decay_embeddings: bool = True):
    """True for leaves that get weight decay: every ``kernel`` (and ``embedding`` if chosen),
    except under the top-level keys of :data:`FROZEN_SUBTREES` (no gradient reaches them, and
    decoupled decay would still shrink them)."""
    def decide(path, _):
        top = path[0].key if hasattr(path[0], "key") else str(path[0])
        name = path[-1].key if hasattr(path[-1], "key") else str(path[-1])
        return top not in FROZEN_SUBTREES and (name == "kernel" or (decay_embeddings and name == "embedding"))
    return jax.tree_util.tree_map_with_path(decide, params)


def make_optimizer(cfg: OptimConfig, total_steps: int, *, host_lr: bool = False) -> optax.GradientTransformation:
    """AdamW on :func:`make_schedule`, after clipping. With ``host_lr`` the learning rate is
    a value in the optimizer state that the loop sets before each step
    (:func:`jaxlab.train.budget.set_learning_rate`; a run with a time budget) instead of a
    function of the step count."""
    def adamw_of(learning_rate):
        return optax.adamw(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                           mask=lambda p: weight_decay_mask(p, decay_embeddings=cfg.decay_embeddings))

    if host_lr:
        adamw = optax.inject_hyperparams(adamw_of)(learning_rate=float(make_schedule(cfg, total_steps)(0)))
    else:
        adamw = adamw_of(make_schedule(cfg, total_steps))
    if cfg.clip_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw)
