"""The train step: gradient accumulation with exact (sum, count) normalisation.

A loss is given as sums over a micro-batch (``loss`` and ``count`` at least). For A
micro-batches the step computes

    g = sum_a grad(loss_sum_a) / sum_a count_a,     metrics = sum_a sums_a / sum_a count_a

so accumulating A micro-batches equals one large batch, and devices add their partial sums
before the one division. The step is jit-compiled with explicit shardings on a device mesh.
It knows no particular loss: trainers pass theirs (the LM loss is :mod:`jaxlab.train.lm`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxlab.losses.lm import normalize_sums
from jaxlab.train import sharding as shd
from jaxlab.train.state import TrainState

LossSumsFn = Callable[..., dict]  # (params, batch, key[, frozen]) -> sums with "loss", "count"


def split_microbatches(batch: dict, n: int) -> dict:
    """[B, ...] -> [n, B / n, ...]; micro-batch a holds rows a, a + n, a + 2n, ...

    Rows are interleaved (not blocked) so that each micro-batch keeps the batch's device
    layout: a reshape [B] -> [B/n, n] and a transpose, no data movement between devices.
    """
    def split(x):
        if x.shape[0] % n:
            raise ValueError(f"batch of {x.shape[0]} rows does not split into {n} micro-batches")
        return jnp.swapaxes(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 0, 1)
    return jax.tree.map(split, batch)


def accumulate_gradients(loss_sums_fn: LossSumsFn, params: dict, batch: dict, key: jax.Array,
                         grad_accum: int, frozen=None, step=None):
    """Returns (grads, sums): gradient of the summed loss and the metric sums, both summed
    over ``grad_accum`` micro-batches (not yet divided by the count). ``frozen`` (e.g. a
    reference model's params) is passed to the loss as a fourth argument when given, and
    ``step`` (the steps taken, for a loss that depends on it) as the keyword ``step``."""
    extra = () if frozen is None else (frozen,)
    extra_kw = {} if step is None else {"step": step}

    def grad_fn(mb, k):
        def loss(p):
            sums = loss_sums_fn(p, mb, k, *extra, **extra_kw)
            return sums["loss"], sums
        grads, sums = jax.grad(loss, has_aux=True)(params)
        return grads, sums

    if grad_accum == 1:
        return grad_fn(batch, key)
    micro = split_microbatches(batch, grad_accum)
    keys = jax.random.split(key, grad_accum)

    def body(acc, xs):
        mb, k = xs
        grads, sums = grad_fn(mb, k)
        return jax.tree.map(jnp.add, acc, (grads, sums)), None

    zeros = jax.eval_shape(grad_fn, jax.tree.map(lambda x: x[0], micro), keys[0])
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
    (grads, sums), _ = jax.lax.scan(body, zeros, (micro, keys))
    return grads, sums


def train_step(state: TrainState, batch: dict, frozen=None, *, loss_sums_fn: LossSumsFn,
               optimizer: optax.GradientTransformation, grad_accum: int = 1,
               normalize_fn: Callable[[dict], dict] = normalize_sums, with_step: bool = False):
    """One optimizer step. Returns (new_state, metrics): the gradient is divided by the summed
    ``count``; the metrics are the sums normalised by ``normalize_fn`` (default: every sum
    divided by ``count``; a loss whose metrics have other denominators passes its own).
    ``with_step``: the loss also gets ``step=state.step`` (an adapter's merge reads it)."""
    key, step_key = jax.random.split(state.key)
    grads, sums = accumulate_gradients(loss_sums_fn, state.params, batch, step_key, grad_accum,
                                       frozen, state.step if with_step else None)
    count = jnp.maximum(sums["count"], 1.0)
    grads = jax.tree.map(lambda g: g / count, grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(normalize_fn(sums))
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["param_norm"] = optax.tree.norm(params)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              rng=jax.random.key_data(key))
    return new_state, metrics


def eval_sums(params: dict, batch: dict, *, loss_sums_fn: LossSumsFn) -> dict:
    """Loss sums of an evaluation batch (no gradient); the caller adds them and divides."""
    return loss_sums_fn(params, batch, jax.random.key(0))


def state_shardings(abstract_state: TrainState, mesh, axes_of, rules: shd.Rules | None = None) -> TrainState:
    """Shardings of a train state: params by the logical-axis rules (default
    :data:`~jaxlab.nn.partitioning.LOGICAL_RULES`); the optimizer state's moments like the
    params they track (matched by path suffix); everything else replicated."""
    param_sh = shd.tree_shardings(abstract_state.params, mesh, axes_of, rules or shd.LOGICAL_RULES)
    flat_params = {shd.path_str(p): s for p, s in jax.tree_util.tree_flatten_with_path(param_sh)[0]}
    replicated = shd.replicated(mesh)

    def opt_leaf(path, leaf):
        parts = shd.path_str(path).split("/")
        for i in range(len(parts)):
            sharding = flat_params.get("/".join(parts[i:]))
            if sharding is not None and leaf.shape == flat_shapes["/".join(parts[i:])]:
                return sharding
        return replicated

    flat_shapes = {shd.path_str(p): x.shape
                   for p, x in jax.tree_util.tree_flatten_with_path(abstract_state.params)[0]}
    opt_sh = jax.tree_util.tree_map_with_path(opt_leaf, abstract_state.opt_state)
    return TrainState(step=replicated, params=param_sh, opt_state=opt_sh, rng=replicated)


def jit_train_step(mesh, state_sh: TrainState, *, with_frozen: bool = False, frozen_sh=None,
                   rules: shd.Rules | None = None, **kwargs):
    """``train_step`` jit-compiled with explicit shardings, called under ``mesh`` as the context
    mesh and ``rules`` as the activations' rules (:func:`jaxlab.train.sharding.on_mesh`); the
    state buffer is donated. With
    ``with_frozen`` the step takes a third argument, sharded by ``frozen_sh`` (default: like
    the params)."""
    frozen_sh = state_sh.params if frozen_sh is None else frozen_sh
    in_sh = (state_sh, shd.batch_sharding(mesh)) + ((frozen_sh,) if with_frozen else ())
    return shd.on_mesh(jax.jit(
        functools.partial(train_step, **kwargs),
        in_shardings=in_sh,
        out_shardings=(state_sh, shd.replicated(mesh)),
        donate_argnums=(0,),
    ), mesh, rules)


def jit_eval_sums(mesh, param_sh, *, loss_sums_fn: LossSumsFn, rules: shd.Rules | None = None):
    return shd.on_mesh(jax.jit(functools.partial(eval_sums, loss_sums_fn=loss_sums_fn),
                               in_shardings=(param_sh, shd.batch_sharding(mesh)),
                               out_shardings=shd.replicated(mesh)), mesh, rules)
