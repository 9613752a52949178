"""Small byte-level LMs trained side by side on windows of a byte corpus: the harness of the BLT
experiments (``experiments/blt_patches.py``, ``experiments/blt_vs_bytes.py``).

Every model of a comparison sees the same batches of ``T + 1``-byte windows, takes the same
AdamW steps (:mod:`jaxlab.train.optim`) on the mean next-byte NLL, and is scored on the same
validation windows. A model is a ``kind`` and its config:

    "transformer"   a :mod:`jaxlab.models.transformer` (a byte transformer, or an entropy model)
    "blt"           a :mod:`jaxlab.models.blt` whose patch starts are computed outside it by a
                    ``starts_fn(rows [B, T + 1]) -> starts [B, T]`` (:func:`starts_fn`), so BLTs
                    that differ only in their patching share one compiled step

The step and the scorer are module-level jitted functions with the configs static, so every
arm and seed after the first reuses their compiles.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.data.corpus import DataError, default_documents, split_chunks
from jaxlab.losses.lm import token_nll
from jaxlab.models import blt, patching, transformer
from jaxlab.train.optim import OptimConfig, make_optimizer

KINDS = ("transformer", "blt")
StartsFn = Callable[[np.ndarray], "jax.Array | None"]


def corpus_splits(chunk_bytes: int = 2048, val_percent: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) int32 bytes of the embedded documentation, its chunks split by hash
    (:func:`jaxlab.data.corpus.split_chunks`) and each side's chunks joined."""
    train, val = split_chunks(default_documents(), chunk_bytes=chunk_bytes, val_percent=val_percent)
    as_bytes = lambda chunks: np.frombuffer("".join(chunks).encode("utf-8"), np.uint8).astype(np.int32)
    return as_bytes(train), as_bytes(val)


def random_windows(data: np.ndarray, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """[n, length] windows of ``data`` at uniformly drawn starts (with replacement)."""
    if len(data) <= length:
        raise DataError(f"the corpus has {len(data)} bytes, too few for windows of {length}")
    starts = rng.integers(0, len(data) - length, size=n)
    return np.stack([data[s:s + length] for s in starts])


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def logits(kind: str, model, params, starts_BT, x_BT):
    """[B, T, V] logits of a ``kind`` model; ``starts_BT`` is the BLT's patch starts (ignored
    for a transformer)."""
    if kind == "blt":
        return blt.apply(params, x_BT, model, patch_starts_BT=starts_BT)
    return transformer.apply(params, x_BT, model)


@functools.partial(jax.jit, static_argnames=("kind", "model", "optim", "steps"))
def _step(params, opt_state, rows_BT, starts_BT, *, kind, model, optim, steps):
    opt = make_optimizer(optim, steps)

    def loss(p):
        return jnp.mean(token_nll(logits(kind, model, p, starts_BT, rows_BT[:, :-1]), rows_BT[:, 1:])[0])

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


def train(kind: str, model, params, starts_fn: StartsFn, batches_NBT: np.ndarray, *, steps: int, lr: float,
          warmup_steps: int, progress: bool = False, desc: str = "train"):
    """(params, losses per step): ``steps`` AdamW steps (lr ``lr``, warm-up
    min(``warmup_steps``, steps // 2), the optimizer's default schedule and decay) on the mean
    next-byte NLL of ``batches_NBT[:steps]`` (each [B, T + 1])."""
    _check_kind(kind)
    if len(batches_NBT) < steps:
        raise ValueError(f"{steps} steps need {steps} batches, got {len(batches_NBT)}")
    optim = OptimConfig(lr=lr, warmup_steps=min(warmup_steps, steps // 2))
    opt_state = make_optimizer(optim, steps).init(params)
    losses, rows_iter = [], batches_NBT[:steps]
    if progress:
        from tqdm.auto import tqdm
        rows_iter = tqdm(rows_iter, desc=desc, unit="step")
    for rows in rows_iter:
        params, opt_state, value = _step(params, opt_state, jnp.asarray(rows), starts_fn(rows), kind=kind,
                                         model=model, optim=optim, steps=steps)
        losses.append(float(value))
    return params, losses


@functools.partial(jax.jit, static_argnames=("kind", "model"))
def _window_bits(params, rows_BT, starts_BT, mask_BT, *, kind, model):
    nll_BT = token_nll(logits(kind, model, params, starts_BT, rows_BT[:, :-1]), rows_BT[:, 1:])[0]
    return jnp.sum(nll_BT * mask_BT, axis=1) / math.log(2), jnp.sum(mask_BT, axis=1)


def window_bpb(kind: str, model, params, starts_fn: StartsFn, windows_WT: np.ndarray, batch: int,
               mask_WT: np.ndarray | None = None) -> np.ndarray:
    """[W] bits per byte of each window's next-byte predictions (windows [W, T + 1]): the mean
    over targets 1..T, or over the targets where ``mask_WT`` [W, T] is 1 (a window with no
    such target gets nan)."""
    _check_kind(kind)
    if mask_WT is None:
        mask_WT = np.ones((windows_WT.shape[0], windows_WT.shape[1] - 1), np.float32)
    if mask_WT.shape != (windows_WT.shape[0], windows_WT.shape[1] - 1):
        raise ValueError(f"mask must be {(windows_WT.shape[0], windows_WT.shape[1] - 1)}, got {mask_WT.shape}")
    bits, counts = [], []
    for i in range(0, len(windows_WT), batch):
        w = windows_WT[i:i + batch]
        b, c = _window_bits(params, jnp.asarray(w), starts_fn(w), jnp.asarray(mask_WT[i:i + batch], jnp.float32),
                            kind=kind, model=model)
        bits.append(np.asarray(b))
        counts.append(np.asarray(c))
    bits, counts = np.concatenate(bits), np.concatenate(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, bits / np.maximum(counts, 1), np.nan)


@functools.partial(jax.jit, static_argnames="model")
def byte_entropy_BT(params, x_BT, *, model):
    """H(x_t) [B, T] of a byte transformer (:func:`jaxlab.models.patching.byte_entropy`)."""
    return patching.byte_entropy(patching.next_byte_entropy(params, model, x_BT))


def starts_fn(patches: str, *, k: int = 0, entropy_params=None, entropy_model=None,
              theta: float | None = None) -> StartsFn:
    """rows [B, T + 1] -> patch starts [B, T] of the inputs rows[:, :-1]: "static" every ``k``
    bytes; "entropy" the global rule H(x_t) > ``theta`` of the frozen entropy model
    (``entropy_params``, ``entropy_model``); "none" (a transformer) None."""
    if patches == "static":
        if k < 1:
            raise ValueError(f"static patches need k >= 1, got {k}")
        return lambda rows: patching.patch_starts_static(
            jnp.broadcast_to(jnp.arange(rows.shape[1] - 1), (rows.shape[0], rows.shape[1] - 1)), k)
    if patches == "entropy":
        if entropy_params is None or entropy_model is None or theta is None:
            raise ValueError("entropy patches need entropy_params, entropy_model and theta")
        theta = jnp.float32(theta)
        return lambda rows: patching.patch_starts_global(
            byte_entropy_BT(entropy_params, jnp.asarray(rows[:, :-1]), model=entropy_model), theta)
    if patches == "none":
        return lambda rows: None
    raise ValueError(f"patches must be 'static', 'entropy' or 'none', got {patches!r}")


def entropy_threshold(entropy_params, entropy_model, windows_WT: np.ndarray, k: int) -> float:
    """theta: the (1 - 1/k) quantile of H(x_t), t >= 1, over ``windows_WT``, so that about one
    byte in k starts a patch under the global rule (mean patch length about k)."""
    H = np.asarray(byte_entropy_BT(entropy_params, jnp.asarray(windows_WT), model=entropy_model))[:, 1:]
    return float(np.quantile(H, 1.0 - 1.0 / k))



@dataclasses.dataclass(frozen=True)
class Windows:
    """The data of one comparison: ``train`` bytes, ``batches_NBT`` [N, B, T + 1] for the
    steps, ``val_WT`` [W, T + 1] validation windows, and the generators that drew them
    (``rng``: the seed's, for further training draws; ``eval_rng``: the evaluation's, for
    further draws on the validation windows such as noise)."""

    train: np.ndarray
    batches_NBT: np.ndarray
    val_WT: np.ndarray
    rng: np.random.Generator
    eval_rng: np.random.Generator


def comparison_windows(*, seed: int, eval_seed: int, steps: int, batch_size: int, seq_len: int,
                       eval_windows: int) -> Windows:
    """:func:`corpus_splits`; ``steps`` batches of ``batch_size`` train windows drawn by
    ``seed``; ``eval_windows`` validation windows drawn by ``eval_seed`` (the same for every
    seed of an experiment). Windows are ``seq_len + 1`` bytes (inputs and next-byte targets)."""
    train_bytes, val_bytes = corpus_splits()
    rng, eval_rng = np.random.default_rng(seed), np.random.default_rng(eval_seed)
    L = seq_len + 1
    batches = random_windows(train_bytes, steps * batch_size, L, rng).reshape(steps, batch_size, L)
    return Windows(train_bytes, batches, random_windows(val_bytes, eval_windows, L, eval_rng), rng, eval_rng)


def train_entropy_patcher(entropy_model, key: jax.Array, data: Windows, *, steps: int, k: int,
                          threshold_windows: int, lr: float, warmup_steps: int, progress: bool = False):
    """The entropy model of a BLT comparison (``entropy_model``: a transformer config) trained
    for ``steps`` on ``data``'s batches, theta (:func:`entropy_threshold` on
    ``threshold_windows`` train windows of T bytes drawn by ``data.rng``) and its global-rule
    patching. Returns (params, losses, theta, starts_fn)."""
    params, losses = train("transformer", entropy_model, transformer.init(entropy_model, key), starts_fn("none"),
                           data.batches_NBT, steps=steps, lr=lr, warmup_steps=warmup_steps, progress=progress,
                           desc="entropy model")
    T = data.batches_NBT.shape[2] - 1
    theta = entropy_threshold(params, entropy_model, random_windows(data.train, threshold_windows, T, data.rng), k)
    return params, losses, theta, starts_fn("entropy", entropy_params=params, entropy_model=entropy_model,
                                            theta=theta)
