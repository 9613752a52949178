"""Device meshes and the rule that places every param and batch on them.

A param's path gives its logical axes (``transformer.param_axes``: ``layers/attn/q/kernel`` ->
("layers", "embed", "heads", "head_dim")); ``LOGICAL_RULES`` maps logical axes to mesh axes;
a mesh axis that does not divide the dimension is dropped for that param (it is replicated
along that axis instead). The batch dimension is split over ``data`` and ``fsdp`` together.

Mesh axes:
  data     pure data parallelism: params replicated, batch split
  fsdp     params (their ``embed`` dimension) and optimizer state split, batch split; XLA
           gathers a layer's weights when it needs them
  tensor   tensor (Megatron-style) parallelism: attention heads, kv heads and the MLP hidden
           dimension split; activations stay split inside a block and are reduced after its
           output projection

One code path serves 1 device, N fake CPU devices and many hosts: ``jax.jit`` with explicit
in/out shardings on a mesh with axes ("data", "fsdp", "tensor").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# logical axis -> mesh axis (or None: replicated).
LOGICAL_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": BATCH_AXES,
    "embed": "fsdp",
    "vocab": None,
    "heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "mlp": "tensor",
    "layers": None,
    "norm": None,
}


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh axis sizes; -1 takes the devices the other axes leave."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def shape(self, n_devices: int) -> tuple[int, ...]:
        sizes = [self.data, self.fsdp, self.tensor]
        if sum(s == -1 for s in sizes) > 1:
            raise ValueError("at most one mesh axis may be -1")
        known = math.prod(s for s in sizes if s != -1)
        if any(s == 0 or s < -1 for s in sizes) or n_devices % known:
            raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} does not fit {n_devices} devices")
        sizes = [n_devices // known if s == -1 else s for s in sizes]
        if math.prod(sizes) != n_devices:
            raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} uses {math.prod(sizes)} devices, "
                             f"but {n_devices} are present; set mesh.data=-1 to use them all")
        return tuple(sizes)


def on_mesh(fn: Callable, mesh: Mesh) -> Callable:
    """``fn`` (a jitted step) called with ``mesh`` as the context mesh (``jax.set_mesh``), so
    that what it traces sees the mesh: the Pallas kernels then run under ``shard_map`` over
    it (:mod:`jaxlab.kernels._mesh`) instead of gathering their inputs."""
    def call(*args, **kwargs):
        with jax.set_mesh(mesh):
            return fn(*args, **kwargs)

    call.__wrapped__ = fn
    return call


def make_mesh(cfg: MeshConfig, devices=None) -> Mesh:
    devices = jax.devices() if devices is None else list(devices)
    shape = cfg.shape(len(devices))
    axis_types = (jax.sharding.AxisType.Auto,) * len(shape)
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)


def experiment_mesh(cfg: MeshConfig) -> Mesh:
    """The mesh of an experiment's ``mesh`` config: with every axis size given (no -1), the
    first prod(sizes) devices (``MeshConfig(data=1)``: one device, however many are
    present; ``data=8`` or ``fsdp=8``: eight); with a -1 axis, all devices."""
    sizes = (cfg.data, cfg.fsdp, cfg.tensor)
    if -1 in sizes:
        return make_mesh(cfg)
    n, available = math.prod(sizes), jax.devices()
    if n > len(available):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {n} devices, but only "
                         f"{len(available)} are present")
    return make_mesh(cfg, available[:n])


def path_str(path) -> str:
    """'layers/attn/q/kernel' from a jax tree path."""
    parts = []
    for p in path:
        parts.append(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))))
    return "/".join(parts)


def logical_spec(axes: tuple[str | None, ...], shape: tuple[int, ...], mesh: Mesh,
                 rules: dict = LOGICAL_RULES) -> P:
    """PartitionSpec of an array with these logical axes; mesh axes that do not divide the
    dimension (or have size 1) are dropped."""
    if len(axes) != len(shape):
        raise ValueError(f"logical axes {axes} do not match shape {shape}")
    spec, used = [], set()
    for name, dim in zip(axes, shape):
        target = rules.get(name) if name is not None else None
        names = (target,) if isinstance(target, str) else tuple(target or ())
        # Axes of size 1 split nothing: leave them out so specs read as what is split.
        names = tuple(n for n in names if mesh.shape.get(n, 1) > 1 and n not in used)
        size = math.prod(mesh.shape[n] for n in names)
        if not names or dim % size:
            spec.append(None)
            continue
        used.update(names)
        spec.append(names[0] if len(names) == 1 else names)
    return P(*spec)


def tree_shardings(tree, mesh: Mesh, axes_of: Callable[[str], tuple], rules: dict = LOGICAL_RULES):
    """NamedSharding for every leaf of ``tree`` (arrays or ShapeDtypeStructs) by its path."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: NamedSharding(mesh, logical_spec(axes_of(path_str(path)), x.shape, mesh, rules)),
        tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension over ``data`` x ``fsdp``; the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_divisor(mesh: Mesh) -> int:
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def global_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Turns this process's slice of the batch into global arrays sharded over the batch axes."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def replicate(x: np.ndarray, mesh: Mesh) -> jax.Array:
    """A host array every process holds in full, as a global array replicated on the mesh."""
    return jax.make_array_from_process_local_data(replicated(mesh), np.asarray(x))
