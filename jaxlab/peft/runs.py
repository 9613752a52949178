"""Training adapters with :func:`jaxlab.train.fit.fit`: a frozen base, a trainable adapter,
and checkpoints that hold the adapter alone plus a reference to the base.

    run = adapter_run(spec, base_params, key, base_path="models/smollm2")   # None if spec is "none"
    fit(..., init_params=None, adapter=run)          # every trainer's way (SFT, DPO, GenRM, LM)

Under an adapter run ``fit`` trains ``run.init`` (the adapter leaves of
:func:`jaxlab.peft.attach`): the train state's params and the optimizer state cover the
adapter only. The base rides along as the step's frozen pytree ``{"base": base}`` and the
loss sees the merged params

    params(t) = merge(base, trainable, spec, step=t)          (t = steps taken: SingLoRA's ramp)

(:func:`adapted_loss_sums`). A loss that reads a reference model (DPO's online reference)
gets the base as its ``frozen`` argument (``reference_is_base``): policy and reference share
one copy of the base weights.

Each checkpoint step holds, beside the orbax state, ``meta.json`` with the adapter spec and
the base's path and SHA-256 (:func:`params_sha256`: a digest of the base params' paths,
dtypes, shapes and bytes, so the same weights read from another file format still match and
any changed weight does not). Resuming (and :func:`load_adapter_run` with a base) checks both
and stops with an :class:`~jaxlab.peft.adapters.AdapterError` naming what differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxlab.peft.adapters import AdapterError, AdapterSpec, attach, merge

# Adapter leaves and how many axes each has after the optional [L] layer axis.
LEAF_AXES = {"lora_a": 2, "lora_b": 2, "magnitude": 1, "single_a": 2, "spectrum": 1}


def params_sha256(params: Any) -> str:
    """SHA-256 over every leaf of ``params`` in path order: path, dtype, shape, then bytes."""
    h = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in sorted(leaves, key=lambda pl: jax.tree_util.keystr(pl[0])):
        a = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
        h.update(jax.tree_util.keystr(path).encode())
        h.update(f"|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def adapter_axes(path: str) -> tuple:
    """Logical axes of an adapter leaf (``layers/attn/q/lora_a``): the [L] axis like the
    model's layers, the rest replicated (adapters are small)."""
    name = path.rsplit("/", 1)[-1]
    if name not in LEAF_AXES:
        raise KeyError(f"no logical axes known for adapter leaf {path!r}")
    lead = ("layers",) if path.startswith("layers/") else ()
    return lead + (None,) * LEAF_AXES[name]


def frozen_axes(model_axes: Callable[[str], tuple]) -> Callable[[str], tuple]:
    """Axes of the frozen pytree ``{"base": params, "frozen": ...}``: the model's, under the
    first path component."""
    return lambda path: model_axes(path.split("/", 1)[1])


@dataclasses.dataclass
class AdapterRun:
    """An adapter on a frozen base: ``spec``, ``base`` (params), ``init`` (the adapter at step
    0), ``base_path`` (recorded in checkpoints), ``reference_is_base`` (the loss's frozen
    argument is the base, e.g. DPO's reference)."""
    spec: AdapterSpec
    base: dict
    init: dict
    base_path: str | None = None
    reference_is_base: bool = False

    def __post_init__(self):
        self.base_sha256 = params_sha256(self.base)

    def meta(self) -> dict:
        """What each checkpoint records: the spec and the base's path and digest."""
        return {"adapter": {"spec": dataclasses.asdict(self.spec),
                            "base": {"path": self.base_path, "sha256": self.base_sha256}}}

    def check(self, meta: dict | None, where: str) -> None:
        """Raises :class:`AdapterError` when the checkpoint ``meta`` (of ``where``) was written
        by another adapter or against another base."""
        saved = (meta or {}).get("adapter")
        if saved is None:
            raise AdapterError(f"{where} holds a run without adapters; this run trains a "
                               f"{self.spec.method} adapter. Use another workdir.")
        if saved["spec"] != dataclasses.asdict(self.spec):
            changed = sorted(k for k, v in dataclasses.asdict(self.spec).items() if saved["spec"].get(k) != v)
            raise AdapterError(f"{where} holds an adapter with other settings ({', '.join(changed)}: "
                               f"{ {k: saved['spec'].get(k) for k in changed} }); use another workdir")
        check_base(saved, self.base_sha256, where)

    def params(self, trainable: dict, step=None) -> dict:
        """The model's params under ``trainable``: merge(base, trainable, spec, step)."""
        return merge(self.base, trainable, self.spec, step=step)


def check_base(saved: dict, sha256: str, where: str) -> None:
    """Raises :class:`AdapterError` when the recorded base digest differs from ``sha256``."""
    if saved["base"]["sha256"] != sha256:
        raise AdapterError(
            f"{where} was trained on a base with SHA-256 {saved['base']['sha256'][:16]}... "
            f"(path {saved['base']['path']!r}); the base given has SHA-256 {sha256[:16]}...: "
            "other weights (or another dtype), so the adapter does not belong to it")


def adapter_run(spec: AdapterSpec, base: dict, key: jax.Array, *, base_path: str | Path | None = None,
                reference_is_base: bool = False, init: dict | None = None) -> AdapterRun | None:
    """The :class:`AdapterRun` of ``spec`` on ``base`` (None when ``spec.method`` is "none");
    ``init`` replaces :func:`attach`'s adapter (e.g. an EVA initialisation)."""
    if not spec.enabled:
        return None
    if callable(base):
        raise AdapterError("adapters need the base params themselves (a pytree), not a function")
    if init is None:
        _, init = attach(base, spec, key)
    return AdapterRun(spec=spec, base=base, init=init,
                      base_path=None if base_path is None else str(base_path),
                      reference_is_base=reference_is_base)


def adapted_loss_sums(trainable: dict, batch: dict, key: jax.Array, frozen: dict, *, step,
                      loss_sums_fn: Callable, spec: AdapterSpec, reference_is_base: bool = False) -> dict:
    """``loss_sums_fn(merge(frozen["base"], trainable, spec, step=step), batch, key[, ref])``,
    ref = the base (``reference_is_base``) or ``frozen["frozen"]`` when present."""
    params = merge(frozen["base"], trainable, spec, step=step)
    if reference_is_base:
        return loss_sums_fn(params, batch, key, frozen["base"])
    if "frozen" in frozen:
        return loss_sums_fn(params, batch, key, frozen["frozen"])
    return loss_sums_fn(params, batch, key)


def load_adapter_run(workdir: str | Path, *, base: dict | None = None,
                     step: int | None = None) -> tuple[AdapterSpec, dict, dict]:
    """(spec, trainable, recorded base {"path", "sha256"}) of an adapter run's checkpoint
    (newest step unless ``step``); with ``base`` its digest is checked against the record."""
    from jaxlab.train.checkpoint import CheckpointError, load_params, read_meta

    step, trainable = load_params(workdir, step)
    meta = read_meta(workdir, step)
    saved = (meta or {}).get("adapter")
    if saved is None:
        raise CheckpointError(f"the checkpoint of step {step} in {workdir} is not an adapter run "
                              "(no adapter in its meta.json)")
    spec = AdapterSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["spec"].items()})
    if base is not None:
        check_base(saved, params_sha256(base), f"{workdir} (step {step})")
    return spec, trainable, saved["base"]


def trainer_adapter(spec: AdapterSpec, init_params, *, seed: int, base_path: str | Path | None = None,
                    reference_is_base: bool = False, init: dict | None = None,
                    eva_batches: Callable[[], Any] | None = None, model_cfg=None, progress: bool = True):
    """(init_params, adapter) for a trainer's :func:`~jaxlab.train.fit.fit` call: unchanged and
    None when ``spec`` is "none"; else None and the :class:`AdapterRun` whose base is
    ``init_params`` (a pytree, or a function of a key called with ``key(seed)`` as ``fit``
    would) and whose adapter is drawn from ``fold_in(key(seed), 1)`` (or is ``init``). EVA
    (method "eva") initialises from ``eva_batches()``, an iterator of the trainer's packed
    batches (the same on every process), under ``model_cfg``."""
    if not spec.enabled:
        return init_params, None
    key = jax.random.key(seed)
    base = jax.jit(init_params)(key) if callable(init_params) else init_params
    if spec.method == "eva" and init is None:
        from jaxlab.peft.eva import eva_init

        if eva_batches is None or model_cfg is None:
            raise AdapterError("EVA needs the trainer's batches (eva_batches) and model_cfg")
        init, _ = eva_init(base, spec, eva_batches(), model_cfg, progress=progress)
    return None, adapter_run(spec, base, jax.random.fold_in(key, 1), base_path=base_path,
                             reference_is_base=reference_is_base, init=init)
