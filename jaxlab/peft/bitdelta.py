"""BitDelta: a fine-tune's weight delta in one bit per weight (Liu et al. 2024, "BitDelta: Your
Fine-Tune May Only Be Worth One Bit").

Each selected kernel, read as matrices [n, m] (one per layer of a stacked kernel), keeps the
sign of its delta and one scale per matrix:

    delta = W_ft - W_base
    W_hat = W_base + alpha * sign(delta),    sign(x) = +1 for x >= 0, -1 otherwise

The scale starts at alpha = mean |delta|, the minimiser of the L2 error
||delta - alpha sign(delta)||^2 = sum |delta|^2 - 2 alpha sum |delta| + alpha^2 n m, and is then
calibrated by distillation: with the signs fixed, the scales alone minimise the logit distance
to the fine-tuned model on sample inputs,

    L(alpha) = mean over (row, position) of || z_ft(x) - z_hat(x; alpha) ||^2_2   (over the vocab)

(Adam, a few hundred steps; the paper: 800 C4 samples of 128 tokens, 200 steps at lr 1e-4).
Parameters that are not selected kernels (embeddings, norms) are taken whole from a model of
the caller's choice, by default the base.

    signs, scales = compress(base, fine_tuned, targets="all")
    params = apply(base, signs, scales, others=fine_tuned)
    scales, losses_S = calibrate(model_cfg, base, signs, scales, fine_tuned, inputs_NT, mask_NT, steps=200)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxlab.models import transformer
from jaxlab.peft.adapters import AdapterSpec, _layout, targeted


def sign_pm1(x) -> np.ndarray:
    """int8 +1 where x >= 0, -1 elsewhere: one bit per entry (zero counts as +1)."""
    return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int8)


def matrix_scale(delta_NM) -> np.ndarray:
    """alpha = mean |delta| over the last two axes (one scale per matrix; leading axes kept):
    the L2-optimal scale of sign(delta)."""
    d = np.asarray(delta_NM, np.float64)
    if d.ndim < 2:
        raise ValueError(f"need [..., n, m] matrices, got shape {d.shape}")
    return np.abs(d).mean(axis=(-2, -1)).astype(np.float32)


def compress(base: dict, fine_tuned: dict, targets: str = "all") -> tuple[dict, dict]:
    """(signs, scales): for each kernel ``targets`` selects (adapter targets: "attn", "qv",
    "mlp", "all" or a regular expression), ``signs[path]`` int8 +-1 of the delta in the kernel's
    shape and ``scales[path]`` float32 [leading layer axes] = mean |delta| per matrix."""
    w0 = targeted(base, AdapterSpec(targets=targets))
    w1 = targeted(fine_tuned, AdapterSpec(targets=targets))
    if w0.keys() != w1.keys():
        raise ValueError(f"base and fine-tune differ in kernels: {sorted(w0.keys() ^ w1.keys())}")
    signs, scales = {}, {}
    for path in sorted(w0):
        a, b = np.asarray(w0[path], np.float32), np.asarray(w1[path], np.float32)
        if a.shape != b.shape:
            raise ValueError(f"{path}: base {a.shape} and fine-tune {b.shape} differ in shape")
        lead, n, m = _layout(path, a)
        delta = (b - a).reshape(*lead, n, m)
        signs[path] = sign_pm1(delta).reshape(a.shape)
        scales[path] = matrix_scale(delta)
    return signs, scales


def apply(base: dict, signs: dict, scales: dict, *, others: dict | None = None) -> dict:
    """The params with each compressed kernel W_base + alpha * sign (module docstring) and every
    other leaf from ``others`` (default ``base``). Differentiable in ``scales``."""
    flat0 = traverse_util.flatten_dict(base, sep="/")
    out = dict(traverse_util.flatten_dict(base if others is None else others, sep="/"))
    if signs.keys() != scales.keys():
        raise ValueError(f"signs and scales name different kernels: {sorted(signs.keys() ^ scales.keys())}")
    for path, sign in signs.items():
        key = f"{path}/kernel"
        if key not in flat0:
            raise ValueError(f"no kernel {key!r} in the base params")
        w = flat0[key]
        lead, n, m = _layout(path, w)
        alpha = jnp.asarray(scales[path], jnp.float32)
        if alpha.shape != tuple(lead):
            raise ValueError(f"{path}: scale shape {alpha.shape}, expected {tuple(lead)}")
        delta = alpha[..., None, None] * jnp.asarray(sign, jnp.float32).reshape(*lead, n, m)
        out[key] = (jnp.asarray(w, jnp.float32) + delta.reshape(w.shape)).astype(w.dtype)
    return traverse_util.unflatten_dict(out, sep="/")


def size_bits(signs: dict, scales: dict, *, scale_bits: int = 16) -> int:
    """The compressed delta's size: 1 bit per sign + ``scale_bits`` per scale."""
    return int(sum(np.size(s) for s in signs.values()) + scale_bits * sum(np.size(a) for a in scales.values()))


def logit_distance(logits_BTV, teacher_BTV, mask_BT) -> jax.Array:
    """sum_{b,t} mask ||z - z_teacher||^2 / sum mask: the distillation loss (squared L2 over the
    vocab, averaged over the masked positions)."""
    d = jnp.sum(jnp.square(logits_BTV.astype(jnp.float32) - teacher_BTV.astype(jnp.float32)), -1)
    mask = mask_BT.astype(jnp.float32)
    return jnp.sum(d * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def distillation_loss(model_cfg: transformer.Config, params: dict, teacher: dict, inputs_NT, mask_NT,
                      batch_size: int = 16) -> float:
    """:func:`logit_distance` of ``params`` to ``teacher`` over all rows (in batches)."""
    inputs, mask = np.asarray(inputs_NT, np.int32), np.asarray(mask_NT, np.float32)
    fwd = jax.jit(transformer.apply, static_argnums=2)
    total, count = 0.0, 0.0
    for i in range(0, len(inputs), batch_size):
        x, m = jnp.asarray(inputs[i:i + batch_size]), jnp.asarray(mask[i:i + batch_size])
        total += float(logit_distance(fwd(params, x, model_cfg), fwd(teacher, x, model_cfg), m)) * float(m.sum())
        count += float(m.sum())
    return total / max(count, 1.0)


def calibrate(model_cfg: transformer.Config, base: dict, signs: dict, scales: dict, teacher: dict,
              inputs_NT, mask_NT, *, steps: int = 200, lr: float = 1e-4, batch_size: int = 16,
              seed: int = 0, others: dict | None = None) -> tuple[dict, np.ndarray]:
    """(scales, losses_S): the scales after ``steps`` Adam steps on :func:`logit_distance` to
    ``teacher`` (the fine-tuned model) over batches of ``batch_size`` rows drawn without
    replacement (reshuffled each epoch, from ``seed``) of ``inputs_NT`` (mask 1 on the positions
    that count); the signs and every other parameter stay fixed. losses_S: the loss of each step
    before its update."""
    inputs, mask = np.asarray(inputs_NT, np.int32), np.asarray(mask_NT, np.float32)
    if inputs.ndim != 2 or inputs.shape != mask.shape or len(inputs) < batch_size:
        raise ValueError(f"need [N, T] inputs and mask of one shape with N >= batch_size={batch_size}, "
                         f"got {inputs.shape} and {mask.shape}")
    if steps < 1 or lr <= 0:
        raise ValueError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}")
    others = base if others is None else others
    opt = optax.adam(lr)
    s = {k: jnp.asarray(v, jnp.float32) for k, v in scales.items()}
    state = opt.init(s)

    def loss_fn(s, x, m, z_t):
        return logit_distance(transformer.apply(apply(base, signs, s, others=others), x, model_cfg), z_t, m)

    @jax.jit
    def step(s, state, x, m):
        z_t = jax.lax.stop_gradient(transformer.apply(teacher, x, model_cfg))
        loss, g = jax.value_and_grad(loss_fn)(s, x, m, z_t)
        updates, state = opt.update(g, state, s)
        return optax.apply_updates(s, updates), state, loss

    rng = np.random.default_rng(seed)
    order, losses = np.array([], np.int64), []
    for _ in range(steps):
        if len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(inputs))])
        idx, order = order[:batch_size], order[batch_size:]
        s, state, loss = step(s, state, jnp.asarray(inputs[idx]), jnp.asarray(mask[idx]))
        losses.append(float(loss))
    return {k: np.asarray(v) for k, v in s.items()}, np.array(losses, np.float64)
