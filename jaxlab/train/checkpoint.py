"""Orbax checkpoints of the train state and the data-iterator state, with integrity checks.

Each checkpoint is an orbax step directory holding ``state`` (params, optimizer state, step,
RNG) and ``data`` (every process's data-iterator state, as JSON). In a multi-process run all
processes save and restore together (the directory must be on a file system they share). Orbax commits a step atomically (a step
killed mid-write is never listed). After a step is committed, a manifest of SHA-256 digests
of all its files is written beside it; a step whose files no longer match (truncated,
corrupt) or that fails to restore is moved to ``<dir>/../checkpoints_corrupt/`` and the
previous step is used instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxlab.train import distributed

log = logging.getLogger(__name__)

MANIFEST = "jaxlab_manifest.json"
META = "meta.json"  # optional JSON a trainer stores with a step (an adapter run's base reference)


class CheckpointError(RuntimeError):
    pass


class ProcessCountError(CheckpointError):
    """The checkpoint was written by a run with another number of processes."""


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(step_dir: Path) -> list[Path]:
    return sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(step_dir: Path) -> None:
    manifest = {str(p.relative_to(step_dir)): [p.stat().st_size, _digest(p)] for p in _files(step_dir)}
    tmp = step_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=0, sort_keys=True))
    tmp.replace(step_dir / MANIFEST)


def verify_manifest(step_dir: Path) -> str | None:
    """None if every file matches the manifest, else a description of the first problem."""
    path = step_dir / MANIFEST
    if not path.exists():
        return "no manifest (the save did not finish)"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return f"unreadable manifest: {e}"
    for rel, (size, digest) in manifest.items():
        f = step_dir / rel
        if not f.is_file():
            return f"missing file {rel}"
        if f.stat().st_size != size:
            return f"file {rel} has {f.stat().st_size} bytes, expected {size}"
        if _digest(f) != digest:
            return f"file {rel} does not match its checksum"
    return None


class Checkpointer:
    """Saves and restores (train state, data-iterator state) under ``directory``."""

    def __init__(self, directory: str | Path, *, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                 enable_async_checkpointing=False,
                                                 create=True))

    def steps(self) -> list[int]:
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, data_state=None, meta: dict | None = None) -> None:
        """Saves collectively; ``data_state`` is this process's iterator state; ``meta`` (JSON)
        is written as the step's ``meta.json``, covered by the manifest."""
        data = {"processes": distributed.allgather_json(data_state)}
        args = {"state": ocp.args.StandardSave(state), "data": ocp.args.JsonSave(data)}
        self._manager.save(step, args=ocp.args.Composite(**args), force=True)
        self._manager.wait_until_finished()
        if jax.process_index() == 0:
            if meta is not None:
                (self.directory / str(step) / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
            write_manifest(self.directory / str(step))
        distributed.barrier(f"jaxlab_checkpoint_{step}")

    def meta(self, step: int) -> dict | None:
        """The ``meta`` saved with step ``step`` (None if none was)."""
        return read_meta(self.directory, step)

    def restore(self, step: int, abstract_state) -> tuple:
        """Restores step ``step`` into arrays shaped and sharded like ``abstract_state``."""
        problem = verify_manifest(self.directory / str(step))
        if problem:
            raise CheckpointError(f"checkpoint {step} is damaged: {problem}")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                  data=ocp.args.JsonRestore())
        restored = self._manager.restore(step, args=args)
        states = restored["data"].get("processes", [])
        if len(states) != jax.process_count():
            raise ProcessCountError(f"checkpoint {step} was written by {len(states)} processes; this "
                                  f"run has {jax.process_count()} (the data shards would not line up)")
        return restored["state"], states[jax.process_index()]

    def restore_latest(self, abstract_state):
        """(step, state, data_state) of the newest intact checkpoint, or None if there is none.

        Damaged checkpoints are moved aside (with a warning) so that training can pass their
        step again.
        """
        for step in reversed(self.steps()):
            try:
                state, data_state = self.restore(step, abstract_state)
                return step, state, data_state
            except ProcessCountError:
                raise  # an intact checkpoint of another run layout: do not move it aside
            except Exception as e:  # a damaged checkpoint can fail in many layers of orbax
                log.warning("checkpoint %d is unusable (%s); trying the previous one", step, e)
                self._quarantine(step)
        return None

    def _quarantine(self, step: int) -> None:
        if jax.process_index() == 0:
            target = self.directory.parent / "checkpoints_corrupt" / str(step)
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(self.directory / str(step)), target)
        distributed.barrier(f"jaxlab_quarantine_{step}")
        self._manager.reload()

    def close(self) -> None:
        self._manager.close()


def _checkpoint_dir(workdir: str | Path) -> Path:
    directory = Path(workdir).expanduser().absolute()
    return directory / "checkpoints" if (directory / "checkpoints").is_dir() else directory


def read_meta(workdir: str | Path, step: int) -> dict | None:
    """The ``meta.json`` of a checkpoint step (``workdir``: a run directory or its
    ``checkpoints/``), or None when the step has none."""
    path = _checkpoint_dir(workdir) / str(step) / META
    return json.loads(path.read_text()) if path.is_file() else None


def same_shapes(want, params) -> bool:
    """Whether ``params`` has the tree structure and leaf shapes of ``want`` (a pytree of
    arrays or ``jax.ShapeDtypeStruct``, e.g. ``jax.eval_shape`` of a model's init)."""
    return jax.tree.structure(want) == jax.tree.structure(params) and all(
        w.shape == np.shape(p) for w, p in zip(jax.tree.leaves(want), jax.tree.leaves(params)))


def load_params(workdir: str | Path, step: int | None = None) -> tuple[int, dict]:
    """(step, params) of a run's checkpoint, read without building a model or an optimizer:
    only the ``params`` subtree of the saved state, as host numpy arrays of the saved shapes
    and dtypes. ``workdir``: a run directory holding ``checkpoints/`` (or that folder itself);
    ``step``: None for the newest. The step's manifest is checked first."""
    directory = _checkpoint_dir(workdir)
    steps = sorted(int(p.name) for p in directory.glob("*") if p.is_dir() and p.name.isdigit()) \
        if directory.is_dir() else []
    if not steps:
        raise CheckpointError(f"no checkpoint in {directory}")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise CheckpointError(f"no checkpoint of step {step} in {directory}; steps: {steps}")
    problem = verify_manifest(directory / str(step))
    if problem:
        raise CheckpointError(f"checkpoint {step} in {directory} is damaged: {problem}")
    state_dir = directory / str(step) / "state"
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(state_dir).item_metadata.tree
    if "params" not in tree:
        raise CheckpointError(f"{state_dir} holds no params (keys: {sorted(tree)})")
    abstract = {"params": jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree["params"])}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract)
    restored = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
        item=abstract, restore_args=restore_args, partial_restore=True))
    return step, restored["params"]
