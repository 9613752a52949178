"""Logical axes: how params and activations are laid out on a device mesh.

Every array the sharding story touches has logical axes. A param's come from its path
(``transformer.param_axes``: ``layers/attn/q/kernel`` -> ("layers", "embed", "heads",
"head_dim")); an activation's from its name (:data:`ACTIVATION_AXES`: the residual stream is
("batch", "seq", "act_embed")). Rules map logical axes to mesh axes (:data:`LOGICAL_RULES`,
changed per experiment through ``mesh.rules``); :func:`logical_spec` turns axes, a shape and a
mesh into a ``PartitionSpec``, dropping a mesh axis that does not divide its dimension.

Params and activations name the model dimension differently on purpose: under fsdp a weight's
``embed`` dimension is split (its shards are gathered when a layer needs them), while the
residual stream's ``act_embed`` is whole on every device and its batch is split instead.
Under tensor parallelism (Megatron-style) the attention heads and the MLP hidden units are
split, and the residual stream is whole again after each block's output projection.

The models call :func:`constrain` at block boundaries. With a context mesh (``jax.set_mesh``,
under which the trainers' steps run, :func:`jaxlab.train.sharding.on_mesh`) that is
``with_sharding_constraint`` with the spec of the rules in force (:func:`use_rules`), inside a
``jax.named_scope("activation/<name>")`` that names it in the program; without one it returns
its input, so sampling and analysis code run unchanged. The rules are read when a function is
traced: a jitted function keeps the rules it was first traced under.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping

import jax
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

Rules = Mapping[str, "str | tuple[str, ...] | None"]

# logical axis -> mesh axis, axes, or None (replicated).
LOGICAL_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": BATCH_AXES,
    "seq": None,
    "embed": "fsdp",
    "act_embed": None,
    "vocab": None,
    "heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "mlp": "tensor",
    "layers": None,
    "norm": None,
}

# activation name -> logical axes; the names the models constrain.
ACTIVATION_AXES: dict[str, tuple[str, ...]] = {
    "residual": ("batch", "seq", "act_embed"),       # between blocks, and the final norm's input
    "attn_q": ("batch", "seq", "heads", "head_dim"),  # queries after RoPE
    "attn_kv": ("batch", "seq", "kv_heads", "head_dim"),  # keys and values after RoPE
    "attn_heads": ("batch", "seq", "heads", "head_dim"),  # per-head outputs, before W_o
    "mlp_hidden": ("batch", "seq", "mlp"),            # the MLP's hidden units, before W_down
    "logits": ("batch", "seq", "vocab"),
}

_RULES: contextvars.ContextVar[Rules] = contextvars.ContextVar("jaxlab_logical_rules", default=LOGICAL_RULES)


def parse_rules(overrides: tuple[str, ...] | list[str]) -> dict[str, str | tuple[str, ...] | None]:
    """:data:`LOGICAL_RULES` with ``overrides`` applied; each is ``"logical=target"`` with
    target ``none``, a mesh axis, or axes joined by ``+`` (``"batch=data+fsdp"``). An unknown
    logical or mesh axis, or a malformed entry, is a ValueError that names it."""
    rules = dict(LOGICAL_RULES)
    for item in overrides:
        name, sep, target = (part.strip() for part in str(item).partition("="))
        if not sep or not name or not target:
            raise ValueError(f"mesh.rules entry {item!r} must read 'logical=axis' (axis: none, "
                             f"{', '.join(MESH_AXES)}, or axes joined by '+')")
        if name not in LOGICAL_RULES:
            raise ValueError(f"mesh.rules: unknown logical axis {name!r}; axes are {sorted(LOGICAL_RULES)}")
        if target.lower() == "none":
            rules[name] = None
            continue
        axes = tuple(a.strip() for a in target.split("+"))
        unknown = [a for a in axes if a not in MESH_AXES]
        if unknown or len(set(axes)) != len(axes):
            raise ValueError(f"mesh.rules: {item!r} names {'unknown mesh axes ' + str(unknown) if unknown else 'an axis twice'}; "
                             f"mesh axes are {list(MESH_AXES)}")
        rules[name] = axes[0] if len(axes) == 1 else axes
    return rules


def logical_spec(axes: tuple[str | None, ...], shape: tuple[int, ...], mesh, rules: Rules = LOGICAL_RULES) -> P:
    """PartitionSpec of an array with these logical axes on ``mesh`` (a Mesh or AbstractMesh);
    mesh axes of size 1, axes already used by an earlier dimension, and axes whose product does
    not divide the dimension are dropped (that dimension is then replicated)."""
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


@contextlib.contextmanager
def use_rules(rules: Rules | None) -> Iterator[None]:
    """The rules :func:`constrain` applies while the block runs (None: :data:`LOGICAL_RULES`)."""
    token = _RULES.set(LOGICAL_RULES if rules is None else rules)
    try:
        yield
    finally:
        _RULES.reset(token)


def constrain(x: jax.Array, name: str) -> jax.Array:
    """``x`` constrained to the sharding of activation ``name`` (:data:`ACTIVATION_AXES`) under
    the context mesh and the rules in force; ``x`` itself when there is no context mesh."""
    axes = ACTIVATION_AXES.get(name)
    if axes is None:
        raise ValueError(f"unknown activation {name!r}; activations are {sorted(ACTIVATION_AXES)}")
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = logical_spec(axes, x.shape, mesh, _RULES.get())
    with jax.named_scope(f"activation/{name}"):
        return jax.lax.with_sharding_constraint(x, spec)
