"""``fit``: the resumable, checkpointed, observable optimisation loop every trainer shares.

A trainer (LM pre-training, SFT, DPO, RL) supplies what differs:

  init_params                         the starting point of a fresh run: a function of a key
                                      returning params, or a params pytree (e.g. a warm start)
  loss_sums_fn(params, batch, key[, frozen]) -> sums
                                      the loss as sums and a ``count`` (see ``jaxlab.train.step``)
  source                              a :class:`BatchSource`: the next per-process batch (it may
                                      read a data set or sample rollouts from the current params)
  evaluate(params, step) -> dict      optional periodic evaluation
  frozen                              optional pytree the loss reads but does not train (for
                                      instance a reference model's params), sharded like params
  adapter                             optional :class:`jaxlab.peft.runs.AdapterRun`: train an
                                      adapter on a frozen base instead of the params (below)

and ``fit`` does the rest: the sharded, jit-compiled step with gradient accumulation, orbax
checkpoints of the state and of the source's state (resume by running again), metrics in
``metrics.jsonl`` and TensorBoard, a progress bar, a lagged non-finite-loss check that keeps the
last good checkpoint, and a checkpoint on Ctrl-C. On CPU a resumed run is bitwise identical to an
uninterrupted one, provided the source is deterministic given its state, the step and the params.

With ``adapter`` (every trainer's ``peft`` setting) the state's params are the adapter leaves
alone (the optimizer state covers them only); the base is the step's frozen pytree
``{"base": base}`` and the loss sees ``merge(base, adapter, spec, step)``
(:func:`jaxlab.peft.runs.adapted_loss_sums`); sources that read params and ``evaluate`` get the
merged params. Each checkpoint records the spec and the base's path and SHA-256, and resuming
checks them. ``FitResult.params`` is the model's params either way.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxlab.train import budget
from jaxlab.train import sharding as shd
from jaxlab.train import state as state_lib
from jaxlab.train.checkpoint import Checkpointer
from jaxlab.train.metrics import MetricWriter, read_jsonl
from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.state import TrainState
from jaxlab.train.step import jit_train_step, state_shardings

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    pass


class BatchSource(Protocol):
    """Where a trainer's batches come from. ``next`` returns this process's share of the batch
    (numpy arrays, leading axis = rows) and host-side metrics to log with the step (for
    instance rollout rewards); ``get_state`` / ``set_state`` make it resumable (JSON values)."""

    # A source that ignores ``params`` sets ``uses_params = False`` (an adapter run then skips
    # merging the params for it every step).

    def next(self, params, step: int) -> tuple[dict, dict]: ...

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...


class IteratorSource:
    """A :class:`BatchSource` over a checkpointable iterator (a grain iterator)."""

    uses_params = False

    def __init__(self, iterator):
        self.iterator = iterator

    def next(self, params, step):
        del params, step
        return next(self.iterator), {}

    def get_state(self):
        return self.iterator.get_state()

    def set_state(self, state):
        self.iterator.set_state(state)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """The loop's settings, the same in every trainer's config (its ``loop`` field), so that
    ``--set <trainer>.loop.steps=...`` works alike everywhere.

    steps: optimizer steps. grad_accum: micro-batches per step (the step's rows must divide by
    it). seed: the run's seed (init, data order, sampling). log_every / eval_every /
    checkpoint_every: intervals in steps (the last step always logs, evaluates and saves).
    keep_checkpoints: how many of the newest checkpoints are kept. max_seconds: a wall-clock
    budget for the loop (compiling included, the final evaluation not); ``steps`` is then a
    cap and the learning-rate schedule is sized to the budget (:mod:`jaxlab.train.budget`)."""
    steps: int = 100
    grad_accum: int = 1
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    max_seconds: float | None = None

    def __post_init__(self):
        for name in ("steps", "grad_accum", "log_every", "eval_every", "checkpoint_every",
                     "keep_checkpoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"loop.{name} must be an int >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"loop.seed must be an int >= 0, got {self.seed!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"loop.max_seconds must be > 0 (or none), got {self.max_seconds!r}")


@dataclasses.dataclass
class FitResult:
    state: TrainState
    records: list[dict]  # every metrics.jsonl record of the run (train/... and val/... keys)
    last_eval: dict
    train_wall_s: float | None  # None when the run was already complete
    resumed_from: int | None
    adapter: Any = None  # the run's AdapterRun, if it trained an adapter

    @property
    def params(self) -> dict:
        """The model's params: the state's, or under an adapter the base merged with it."""
        if self.adapter is None:
            return self.state.params
        return self.adapter.params(self.state.params, step=self.state.step)

    def last(self, key: str):
        values = [r[key] for r in self.records if isinstance(r.get(key), (int, float))]
        return values[-1] if values else None

    def mean_tail(self, key: str, n: int = 10):
        """Mean of the last ``n`` logged values, skipping the first (it includes compilation)."""
        values = [r[key] for r in self.records if isinstance(r.get(key), (int, float))][1:][-n:]
        return float(np.mean(values)) if values else None


def fit(workdir: str | Path, *, name: str, loop: LoopConfig, optim: OptimConfig, mesh,
        init_params: Callable[[jax.Array], dict] | dict | None, param_axes: Callable[[str], tuple],
        loss_sums_fn: Callable, source: BatchSource, evaluate: Callable[[dict, int], dict] | None = None,
        frozen: Any = None, tokens_per_step: int | None = None, normalize_fn: Callable | None = None,
        progress: bool = True, adapter=None, rules: Mapping | None = None) -> FitResult:
    """Trains (or resumes) in ``workdir``: checkpoints in ``workdir/checkpoints``, metrics in
    ``workdir/metrics.jsonl`` and ``workdir/tensorboard``.

    ``tokens_per_step`` sets the throughput numerator; without it the step's ``count`` (the
    loss's token or sequence count) is used. ``normalize_fn`` turns the step's summed metrics
    into means (default: divide by ``count``). With ``adapter``, ``init_params`` is None (the
    adapter's ``init`` is trained) and ``param_axes`` are the base's. ``rules`` are the
    logical-axis rules of params and activations (``MeshConfig.logical_rules()``; default
    :data:`jaxlab.nn.partitioning.LOGICAL_RULES`).
    """
    with_step = adapter is not None
    model_params = None  # (trainable, step) -> the model's params, under an adapter
    frozen_axes = param_axes
    if adapter is not None:
        from jaxlab.peft import runs

        if init_params is not None:
            raise ValueError("fit: with an adapter, init_params must be None (the adapter's init trains)")
        init_params = adapter.init
        frozen_axes = runs.frozen_axes(param_axes)
        param_axes = runs.adapter_axes
        frozen = {"base": adapter.base} if frozen is None else {"base": adapter.base, "frozen": frozen}
        loss_sums_fn = functools.partial(runs.adapted_loss_sums, loss_sums_fn=loss_sums_fn,
                                         spec=adapter.spec, reference_is_base=adapter.reference_is_base)
        merge_jit = jax.jit(functools.partial(adapter_merge, spec=adapter.spec))
        model_params = lambda trainable, step: merge_jit(frozen["base"], trainable, step)  # noqa: E731
    elif init_params is None:
        raise ValueError("fit: give init_params (params, or a function of a key)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    budgeted = loop.max_seconds is not None
    if budgeted and jax.process_count() > 1:
        raise ValueError("loop.max_seconds: a time budget needs one process (the processes would "
                         "decide to stop at different steps)")
    optimizer = make_optimizer(optim, loop.steps, host_lr=budgeted)

    given = None if callable(init_params) else init_params

    def init_state(key, params=None):
        return state_lib.create(init_params(key) if params is None else params, optimizer, loop.seed)

    key = jax.random.key(loop.seed)
    abstract = jax.eval_shape(init_state, key, given)
    rules = shd.LOGICAL_RULES if rules is None else rules
    state_sh = state_shardings(abstract, mesh, param_axes, rules)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            abstract, state_sh)

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=loop.keep_checkpoints)
    meta = None if adapter is None else adapter.meta()
    saved_steps = ckpt.steps()
    if saved_steps:  # before restoring: another adapter's shapes would read as a damaged checkpoint
        saved_meta = ckpt.meta(saved_steps[-1])
        where = f"{workdir} (step {saved_steps[-1]})"
        if adapter is not None:
            adapter.check(saved_meta, where)
        elif (saved_meta or {}).get("adapter"):
            raise ValueError(f"{where} holds an adapter run; this run trains every parameter. "
                             "Use another workdir.")
    restored = ckpt.restore_latest(abstract)
    if restored is None:
        start = 0
        state = jax.jit(init_state, out_shardings=state_sh)(key, given)
    else:
        start, state, source_state = restored
        source.set_state(source_state)
        log.info("resumed %s from step %d", workdir, start)

    extra = {} if normalize_fn is None else {"normalize_fn": normalize_fn}
    if with_step:
        extra["with_step"] = True
    frozen_sh = None if frozen is None else shd.tree_shardings(frozen, mesh, frozen_axes, rules)
    step_fn = jit_train_step(mesh, state_sh, rules=rules, loss_sums_fn=loss_sums_fn, optimizer=optimizer,
                             grad_accum=loop.grad_accum, with_frozen=frozen is not None,
                             frozen_sh=frozen_sh, **extra)
    if frozen is not None:
        frozen = jax.device_put(frozen, frozen_sh)

    def full_params(state):
        return state.params if model_params is None else model_params(state.params, state.step)

    source_reads_params = getattr(source, "uses_params", True)
    is_main = jax.process_index() == 0
    writer = MetricWriter(workdir, start_step=start, enabled=is_main)
    last_saved = start if restored is not None else -1
    last_good = start
    pending = None  # (step, device metrics, host metrics) not yet checked: read one step late,
    # so the host never waits for the device except when it needs a number.
    window = {"t": time.perf_counter(), "step": start, "tokens": 0.0}
    last_eval: dict = {}
    run_t0 = time.perf_counter()
    clock = budget.Clock(budget.spent_at(workdir, start) if budgeted and restored is not None else 0.0, start)

    def drain():
        nonlocal pending, last_good
        if pending is None:
            return
        step, metrics, host_metrics, last, lr = pending
        pending = None
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not math.isfinite(metrics["loss"]):
            raise NonFiniteLossError(
                f"{name}: loss is {metrics['loss']} at step {step}; stopping. The newest checkpoint "
                f"(step {last_saved if last_saved >= 0 else 'none'}) predates it and is intact; "
                "lower optim.lr or raise optim.warmup_steps and run again in a new workdir.")
        last_good = step
        window["tokens"] += tokens_per_step if tokens_per_step is not None else metrics.get("count", 0.0)
        if step % loop.log_every == 0 or last:
            now = time.perf_counter()
            tok_s = window["tokens"] / max(now - window["t"], 1e-9)
            window.update(t=now, step=step, tokens=0.0)
            record = {**metrics, **host_metrics, "lr": lr, "tokens_per_s": tok_s}
            if "correct" in record:
                record["accuracy"] = record.pop("correct")
            writer.write(step, record, prefix="train/")
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{tok_s:,.0f}")

    def save(step, last=False):
        nonlocal last_saved
        if step != last_saved:
            ckpt.save(step, state, source.get_state(), meta=meta)
            if budgeted and is_main:
                budget.record_spent(workdir, step, clock.spent(), finished=last)
            last_saved = step

    bar = tqdm(total=loop.steps, initial=start, desc=name, unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    end = loop.steps
    if budgeted and restored is not None and budget.finished_at(workdir) == start:
        end = start  # the budget ran out at the restored step: nothing is left to run
    try:
        for step in range(start + 1, end + 1):
            if budgeted:
                timing = clock.timing(step, max_seconds=loop.max_seconds, cap=loop.steps)
                last = budget.is_last(step, **timing)
                lr = budget.lr_at(optim, budget.horizon(step, **timing), step - 1)
                state = state.replace(opt_state=budget.set_learning_rate(state.opt_state, lr))
            else:
                last, lr = step == loop.steps, budget.lr_at(optim, loop.steps, step - 1)
            host_batch, host_metrics = source.next(
                full_params(state) if source_reads_params else state.params, step)
            batch = shd.global_batch(host_batch, mesh)
            if frozen is None:
                state, metrics = step_fn(state, batch)
            else:
                state, metrics = step_fn(state, batch, frozen)
            drain()
            pending = (step, metrics, host_metrics, last, lr)
            bar.update(1)
            evaluating = evaluate is not None and (step % loop.eval_every == 0 or last)
            saving = step % loop.checkpoint_every == 0 or last
            if evaluating or saving:
                drain()
            if evaluating:
                last_eval = evaluate(full_params(state), step)
                writer.write(step, last_eval, prefix="val/")
            if saving:
                save(step, last)
            if last:
                break
        drain()
    except KeyboardInterrupt:
        # Keep the work done: checkpoint the state if its loss is checked to be finite.
        try:
            drain()
            if last_good == int(state.step) and last_good > max(last_saved, 0):
                save(last_good)
                log.warning("interrupted: saved a checkpoint at step %d", last_good)
        except Exception as e:  # the state may have been donated to an interrupted step
            log.warning("interrupted: could not save a checkpoint (%s)", e)
        raise
    finally:
        bar.close()
        writer.close()
        ckpt.close()
    train_wall = time.perf_counter() - run_t0 if start < end else None
    if not last_eval and evaluate is not None:
        last_eval = evaluate(full_params(state), int(state.step))
    return FitResult(state=state, records=read_jsonl(workdir / "metrics.jsonl"), last_eval=last_eval,
                     train_wall_s=train_wall, resumed_from=start if restored is not None else None,
                     adapter=adapter)


def adapter_merge(base: dict, trainable: dict, step, *, spec) -> dict:
    """merge(base, trainable, spec, step=step) (jit-able with ``spec`` bound)."""
    from jaxlab.peft.adapters import merge

    return merge(base, trainable, spec, step=step)
