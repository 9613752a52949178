"""A pass-rate curriculum: train on prompts the policy solves sometimes, not always or never.

Each prompt's last observed pass rate (the share of its G samples that were correct) is kept.
A prompt is eligible when it has not been seen yet, when its pass rate is strictly between 0
and 1, or when ``cooldown`` rollouts have passed since it was last seen (a solved or hopeless
prompt is retried later, as the policy changes). When fewer prompts are eligible than a batch
needs, the batch is topped up from the others, least recently seen first.
"""

from __future__ import annotations

import numpy as np


class PassRateCurriculum:
    """The state is JSON: {"pass": {index: rate}, "seen": {index: rollout}}."""

    def __init__(self, n_prompts: int, *, enabled: bool = True, cooldown: int = 8):
        if n_prompts < 1:
            raise ValueError(f"a curriculum needs at least one prompt, got {n_prompts}")
        self.n, self.enabled, self.cooldown = n_prompts, enabled, cooldown
        self.pass_rate: dict[int, float] = {}
        self.seen: dict[int, int] = {}

    def eligible(self, rollout: int) -> np.ndarray:
        """Bool [n]: which prompts a batch of this rollout may draw."""
        ok = np.ones(self.n, bool)
        if not self.enabled:
            return ok
        for i, rate in self.pass_rate.items():
            if rate in (0.0, 1.0) and rollout - self.seen[i] < self.cooldown:
                ok[i] = False
        return ok

    def select(self, rng: np.random.Generator, count: int, rollout: int) -> np.ndarray:
        """``count`` distinct prompt indices (fewer only when there are fewer prompts)."""
        ok = self.eligible(rollout)
        pool = rng.permutation(np.flatnonzero(ok))[:count]
        if len(pool) < count:
            rest = np.flatnonzero(~ok)
            rest = rest[np.argsort([self.seen.get(int(i), -1) for i in rest], kind="stable")]
            pool = np.concatenate([pool, rest[:count - len(pool)]])
        return pool.astype(np.int64)

    def update(self, indices, pass_rates, rollout: int) -> None:
        for i, rate in zip(indices, pass_rates):
            self.pass_rate[int(i)] = float(rate)
            self.seen[int(i)] = int(rollout)

    def share_active(self) -> float:
        """Share of seen prompts whose pass rate is strictly between 0 and 1."""
        rates = list(self.pass_rate.values())
        return float(np.mean([0.0 < r < 1.0 for r in rates])) if rates else 0.0

    def get_state(self):
        return {"pass": {str(k): v for k, v in self.pass_rate.items()},
                "seen": {str(k): v for k, v in self.seen.items()}}

    def set_state(self, state) -> None:
        self.pass_rate = {int(k): float(v) for k, v in state["pass"].items()}
        self.seen = {int(k): int(v) for k, v in state["seen"].items()}
