"""Device meshes and the rule that places every param, batch and activation on them.

A param's path gives its logical axes (``transformer.param_axes``: ``layers/attn/q/kernel`` ->
("layers", "embed", "heads", "head_dim")); the rules map logical axes to mesh axes
(:mod:`jaxlab.nn.partitioning`, where the activations' axes are named too); a mesh axis that
does not divide the dimension is dropped for that param (it is replicated along that axis
instead). The batch dimension is split over ``data`` and ``fsdp`` together. An experiment
changes the rules with ``mesh.rules`` (``--set mesh.rules=mlp=none``).

Mesh axes:
  data     pure data parallelism: params replicated, batch split
  fsdp     params (their ``embed`` dimension) and optimizer state split, batch split; XLA
           gathers a layer's weights when it needs them
  tensor   tensor (Megatron-style) parallelism: attention heads, kv heads and the MLP hidden
           dimension split; activations stay split inside a block (constrained so by the
           model, :func:`jaxlab.nn.partitioning.constrain`) and are reduced after its output
           projection

One code path serves 1 device, N fake CPU devices and many hosts: ``jax.jit`` with explicit
in/out shardings on a mesh with axes ("data", "fsdp", "tensor"), called under that mesh.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxlab.nn.partitioning import (BATCH_AXES, LOGICAL_RULES, MESH_AXES, Rules, logical_spec, parse_rules,
                                    use_rules)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh axis sizes; -1 takes the devices the other axes leave."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    # Changes to the logical rules, "logical=axis" ("heads=none", "batch=data+fsdp"):
    # :func:`jaxlab.nn.partitioning.parse_rules`.
    rules: tuple[str, ...] = ()

    def __post_init__(self):
        parse_rules(self.rules)

    def logical_rules(self) -> dict:
        """The logical-axis rules of this mesh: the defaults with ``rules`` applied."""
        return parse_rules(self.rules)

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


def on_mesh(fn: Callable, mesh: Mesh, rules: Rules | None = None) -> Callable:
    """``fn`` (a jitted step) called with ``mesh`` as the context mesh (``jax.set_mesh``) and
    ``rules`` (default :data:`LOGICAL_RULES`) in force, so that what it traces sees both: the
    model constrains its activations by the rules, and the Pallas kernels run under
    ``shard_map`` over the mesh (:mod:`jaxlab.kernels._mesh`) instead of gathering their
    inputs."""
    def call(*args, **kwargs):
        with jax.set_mesh(mesh), use_rules(rules):
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
