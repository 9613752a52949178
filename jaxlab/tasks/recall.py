"""Token-level memory tasks for sequence models (no text, no tokenizer): generated batches of
``inputs`` / ``targets`` / ``mask`` [B, T] int32 / int32 / float32, the loss and accuracy taken
where ``mask`` is 1.

Selective copying (Gu and Dao 2023, section 3.1): a context of ``context`` tokens holds
``n_data`` data tokens at random positions (in order of position), every other position the
noise token; after the marker the model must emit the data tokens in order:

    0 = noise, 1 = marker, 2 .. 2 + n_symbols - 1 = data
    sequence = [c_0 .. c_{L-1}, marker, d_1 .. d_K]      (L = context, K = n_data)
    inputs = sequence[:-1], targets = sequence[1:], mask = 1 on the K targets d_1 .. d_K

A time-invariant SSM's kernel cannot tell where the data sits (the spacing varies), a
selective one can skip the noise.

Induction (repeated random tokens, Olsson et al. 2022): ``half`` random tokens drawn from
``n_symbols`` then the same tokens again; in the second half the next token is the one that
followed the current token's previous occurrence, ``half`` positions back:

    sequence = [x_0 .. x_{n-1}, x_0 .. x_{n-1}]         (n = half; tokens 0 .. n_symbols - 1)
    mask = 1 on targets in the second half (input positions n .. 2n - 2)

so an induction mechanism at input position t (in the second half) reads position
t - n + 1, the token after the previous occurrence of x_t.
"""

from __future__ import annotations

import numpy as np

NOISE, MARKER, FIRST_DATA = 0, 1, 2


def selective_copying(rng: np.random.Generator, batch_size: int, *, context: int, n_data: int,
                      n_symbols: int) -> dict[str, np.ndarray]:
    """A selective-copying batch (module docstring): ``inputs``, ``targets``, ``mask``
    [B, context + n_data], and ``positions`` [B, n_data] (where each data token sits in the
    context). Vocabulary size: ``2 + n_symbols``."""
    if not 1 <= n_data <= context:
        raise ValueError(f"n_data must be in [1, context={context}], got {n_data}")
    if n_symbols < 1 or batch_size < 1:
        raise ValueError(f"n_symbols and batch_size must be >= 1, got {n_symbols} and {batch_size}")
    positions_BK = np.sort(np.argsort(rng.random((batch_size, context)), axis=1)[:, :n_data], axis=1)
    data_BK = rng.integers(FIRST_DATA, FIRST_DATA + n_symbols, (batch_size, n_data))
    seq = np.full((batch_size, context + 1 + n_data), NOISE, np.int32)
    np.put_along_axis(seq, positions_BK, data_BK, axis=1)
    seq[:, context] = MARKER
    seq[:, context + 1:] = data_BK
    mask = np.zeros((batch_size, context + n_data), np.float32)
    mask[:, context:] = 1.0
    return {"inputs": seq[:, :-1], "targets": seq[:, 1:], "mask": mask,
            "positions": positions_BK.astype(np.int32)}


def induction(rng: np.random.Generator, batch_size: int, *, half: int, n_symbols: int) -> dict[str, np.ndarray]:
    """A repeated-random-tokens batch (module docstring): ``inputs``, ``targets``, ``mask``
    [B, 2 * half - 1]. Vocabulary size: ``n_symbols``."""
    if half < 2 or n_symbols < 2 or batch_size < 1:
        raise ValueError(f"need half >= 2, n_symbols >= 2, batch_size >= 1; got {half}, {n_symbols}, {batch_size}")
    first = rng.integers(0, n_symbols, (batch_size, half)).astype(np.int32)
    seq = np.concatenate([first, first], axis=1)
    mask = np.zeros((batch_size, 2 * half - 1), np.float32)
    mask[:, half:] = 1.0
    return {"inputs": seq[:, :-1], "targets": seq[:, 1:], "mask": mask}


def masked_loss(logits_BTV, batch: dict):
    """Mean cross-entropy over the masked targets."""
    import jax.numpy as jnp
    import optax

    nll_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, batch["targets"])
    return jnp.sum(nll_BT * batch["mask"]) / jnp.sum(batch["mask"])


def fit(apply_fn, params, next_batch, *, steps: int, lr: float, progress: bool = False, desc: str = "fit"):
    """Trains ``params`` on fresh batches: AdamW (weight decay 0.01, warm-up steps/10, cosine to
    lr/10, clip 1.0) on :func:`masked_loss` of ``apply_fn(params, inputs)``; ``next_batch()``
    gives each step's batch. Returns (params, losses per step)."""
    import jax
    import optax

    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(1, steps // 10), steps, lr / 10)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.01))
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(lambda p: masked_loss(apply_fn(p, batch["inputs"]), batch))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses, it = [], range(steps)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=desc, unit="step")
    for _ in it:
        batch = {k: v for k, v in next_batch().items() if k in ("inputs", "targets", "mask")}
        params, opt_state, loss = step(params, opt_state, batch)
        losses.append(float(loss))
    return params, losses


def sequence_accuracy(logits_BTV, batch: dict):
    """[B]: per row, the fraction of masked targets whose argmax prediction is exact."""
    import jax.numpy as jnp

    hit_BT = (jnp.argmax(logits_BTV, axis=-1) == batch["targets"]) * batch["mask"]
    return jnp.sum(hit_BT, 1) / jnp.sum(batch["mask"], 1)
