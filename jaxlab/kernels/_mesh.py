"""Pallas kernels on a device mesh.

XLA partitions its own ops across a mesh, but not a Pallas call: given sharded q, k and v, it
would gather them onto every device and run the whole kernel there. So the dispatchers run a
kernel under ``jax.shard_map`` over the context mesh (``jax.set_mesh``; the trainers' jitted
steps run under it, :func:`jaxlab.train.sharding.on_mesh`): each device runs the kernel on its
own rows and heads, and nothing is gathered.

Which mesh axes split which dimension follows the logical rules of the params and batches
(:data:`jaxlab.train.sharding.LOGICAL_RULES`): the batch over "data" and "fsdp", heads (and the
scans' channels) over "tensor". As for params, an axis that does not divide its dimension is
left out (the kernel's input is replicated along it). The kernels need whole sequences: a mesh
axis of size > 1 outside these is an axis that would split the sequence, and is refused by
name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
from jaxlab.kernels._pallas import UnsupportedError

BATCH_MESH_AXES = ("data", "fsdp")   # the logical "batch" axis
HEAD_MESH_AXIS = "tensor"            # the logical "heads", "kv_heads" and "mlp" axes


def context_mesh():
    """The context mesh (``jax.set_mesh``) when it has more than one device, else None."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or math.prod(mesh.shape.values()) == 1:
        return None
    return mesh


def check_sequence_axes(mesh, op: str) -> None:
    """Refuses mesh axes of size > 1 that the rules do not map to the batch or the heads."""
    other = [f"{name!r} (size {size})" for name, size in mesh.shape.items()
             if size > 1 and name not in BATCH_MESH_AXES + (HEAD_MESH_AXIS,)]
    if other:
        raise UnsupportedError(
            f"{op}: mesh axis {', '.join(other)} would split the sequence, which the kernel cannot "
            f"(it needs whole sequences); only {BATCH_MESH_AXES} (batch) and {HEAD_MESH_AXIS!r} (heads) "
            "may be larger than 1")


def batch_axes(mesh, batch: int):
    """The batch axes whose sizes divide ``batch`` (in rule order, as a spec entry), or None."""
    axes, size = [], 1
    for name in BATCH_MESH_AXES:
        n = mesh.shape.get(name, 1)
        if n > 1 and batch % (size * n) == 0:
            axes.append(name)
            size *= n
    return tuple(axes) or None


def split_axis(mesh, *dims: int):
    """``HEAD_MESH_AXIS`` when its size (> 1) divides every one of ``dims``, else None."""
    n = mesh.shape.get(HEAD_MESH_AXIS, 1)
    return HEAD_MESH_AXIS if n > 1 and all(d % n == 0 for d in dims) else None


def shard_kernel(fn: Callable, mesh, args: Sequence, in_specs: Sequence, out_specs):
    """``fn(*args)`` under ``jax.shard_map`` with these specs. Replication is not tracked
    (``check_vma=False``): a Pallas call has no rule for it, and the specs say what is split."""
    return jax.shard_map(fn, mesh=mesh, in_specs=tuple(in_specs), out_specs=out_specs,
                         check_vma=False)(*args)
