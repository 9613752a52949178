"""A wall-clock budget for training (``loop.max_seconds``), with the schedule sized to it.

With a budget, ``loop.steps`` is a cap and the run stops when the next step would not finish in
time. The learning-rate schedule (:func:`jaxlab.train.optim.make_schedule`) needs its length
in steps, which a budget does not give in advance, so it is re-sized as the run goes: before
step s (1-based) the horizon is

    H_s = min(cap, s - 1 + floor(remaining_s / step_s))

with ``step_s`` the mean wall time of the steps so far (the first, which compiles, left out)
and ``remaining_s`` the budget minus the time spent, and the step runs with
``make_schedule(optim, H_s)(s - 1)`` (computed on the host by :func:`lr_at`). Warm-up is in steps and the same under any horizon; after
it the decay stretches or shrinks to end where the budget ends, so the last steps run at the
final learning rate as in a run of known length. The optimizer takes the rate from the host
each step (``optax.inject_hyperparams``; :func:`set_learning_rate`).

The time spent is kept beside the checkpoints (``budget.json``: seconds per saved step), so a
resumed run spends what is left of the budget, not a new one. A budgeted run's length depends
on the machine's speed, so unlike a run of fixed length it is not bitwise reproducible.

Everything here but :func:`set_learning_rate` is plain Python, importable without JAX (the
PyTorch side of ``scripts/bench_recipe.py`` sizes its schedule with the same functions).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

BUDGET_FILE = "budget.json"

_now = time.perf_counter  # the clock (tests replace it)


class Clock:
    """The budget's clock for a loop whose first step is ``start + 1`` (``start``: 0, or the
    restored step) with ``spent_before`` seconds already spent: the seconds spent, and the mean
    step time from the second step on (the first compiles). Call :meth:`timing` once before
    each step."""

    def __init__(self, spent_before: float = 0.0, start: int = 0):
        self.before, self.start, self.t0, self.second = spent_before, start, _now(), None

    def spent(self) -> float:
        return self.before + _now() - self.t0

    def timing(self, step: int, *, max_seconds: float, cap: int) -> dict:
        """Before step ``step``: the keyword arguments of :func:`horizon` and :func:`is_last`."""
        if step == self.start + 2:
            self.second = _now()
        step_s = None
        if self.second is not None and step > self.start + 2:
            step_s = (_now() - self.second) / (step - self.start - 2)
        return dict(spent_s=self.spent(), step_s=step_s, max_seconds=max_seconds, cap=cap)


def horizon(step: int, *, spent_s: float, step_s: float | None, max_seconds: float, cap: int) -> int:
    """H_s of the module docstring: the schedule's length seen from step ``step`` (1-based),
    never below ``step`` nor above ``cap``; ``cap`` until a step time has been measured."""
    if step_s is None or step_s <= 0:
        return cap
    ahead = math.floor(max(max_seconds - spent_s, 0.0) / step_s)
    return max(step, min(cap, step - 1 + ahead))


def is_last(step: int, *, spent_s: float, step_s: float | None, max_seconds: float, cap: int) -> bool:
    """Whether step ``step`` is the run's last: the cap, no time left, or the step after it
    would not end within the budget (``spent + 2 step_s > max_seconds``)."""
    if step >= cap or spent_s >= max_seconds:
        return True
    return step_s is not None and spent_s + 2 * step_s > max_seconds


def lr_at(optim, total_steps: int, step: int) -> float:
    """``make_schedule(optim, total_steps)(step)`` in plain Python (``optim``: anything with
    ``lr``, ``schedule``, ``warmup_steps`` and ``final_lr_fraction``):

        lr(s) = lr * s / w                                  s < w = min(warmup, total - 1)
        lr(s) = lr * (f + (1 - f) * decay(min(s - w, n) / n))   n = max(total - w, 1)
    """
    lr, f = float(optim.lr), float(optim.final_lr_fraction)
    warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
    if step < warmup:
        return lr * step / warmup
    n = max(total_steps - warmup, 1)
    u = min(step - warmup, n) / n
    if optim.schedule == "cosine":
        return lr * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * u)))
    if optim.schedule == "linear":
        return lr + (lr * f - lr) * u
    if optim.schedule == "constant":
        return lr
    raise ValueError(f"unknown schedule {optim.schedule!r}")


def set_learning_rate(opt_state, lr: float):
    """``opt_state`` with the host-set learning rate of every ``inject_hyperparams`` state
    replaced by ``lr`` (float32, replicated like the value it replaces)."""
    import jax
    import jax.numpy as jnp
    import optax

    # inject_hyperparams' state types (the stateful one is what recent optax returns).
    injected = tuple(t for t in (getattr(optax, "InjectHyperparamsState", None),
                                 getattr(optax, "InjectStatefulHyperparamsState", None)) if t is not None)

    def swap(node):
        if isinstance(node, injected):
            old = node.hyperparams["learning_rate"]
            new = jnp.asarray(lr, old.dtype)
            if isinstance(old, jax.Array):
                new = jax.device_put(new, old.sharding)
            return node._replace(hyperparams={**node.hyperparams, "learning_rate": new})
        return node

    return jax.tree.map(swap, opt_state, is_leaf=lambda n: isinstance(n, injected))


def _table(workdir: str | Path) -> dict:
    path = Path(workdir) / BUDGET_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def spent_at(workdir: str | Path, step: int) -> float:
    """Seconds of budget spent up to the checkpoint at ``step`` (0 when none is recorded)."""
    return float(_table(workdir).get("spent", {}).get(str(step), 0.0))


def finished_at(workdir: str | Path) -> int | None:
    """The step at which the budget ran out, if it has."""
    return _table(workdir).get("finished")


def record_spent(workdir: str | Path, step: int, spent_s: float, *, finished: bool = False) -> None:
    """Notes the seconds spent at a saved step, and whether the run ended there (written
    whole, then renamed)."""
    path = Path(workdir) / BUDGET_FILE
    table = _table(workdir)
    table.setdefault("spent", {})[str(step)] = round(spent_s, 3)
    if finished:
        table["finished"] = step
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, sort_keys=True))
    tmp.replace(path)
