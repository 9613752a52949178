"""The batch contract of every trainer, and the one adapter from a batch to a forward pass.

A batch is a dict of arrays with a leading row axis B (numpy on the host, jax on devices), the
keys of :data:`jaxlab.data.pipeline.BATCH_KEYS`:

    inputs       int32    [B, T]  token ids (the tokenizer's pad id past a row's end)
    targets      int32    [B, T]  the token each position predicts
    segment_ids  int32    [B, T]  1, 2, ... numbers the sequences packed in a row; 0 = padding
    positions    int32    [B, T]  position within its sequence (0 at its first token)
    mask         float32  [B, T]  1 where a target is trained (loss mask), else 0

Trainers may add row-aligned keys of their own (``old_logp`` and ``advantages`` for RL,
``correct_scale`` for GenRM, ``chosen_*`` / ``rejected_*`` halves for preference pairs); every
key keeps the row axis first, so the step splits and shards any batch the same way.
:func:`make_batch` is the one constructor (it checks shapes and dtypes); :func:`apply_batch`
is the one place a batch becomes logits.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxlab.data.pipeline import BATCH_KEYS
from jaxlab import models

DTYPES = {"inputs": np.int32, "targets": np.int32, "segment_ids": np.int32, "positions": np.int32,
          "mask": np.float32}


def make_batch(inputs, targets, segment_ids, positions, mask, **extra) -> dict[str, np.ndarray]:
    """A host batch (module docstring) with the five keys as int32 / float32 [B, T] arrays and
    any ``extra`` row-aligned arrays. Raises ValueError naming a key whose shape differs."""
    batch = {"inputs": inputs, "targets": targets, "segment_ids": segment_ids, "positions": positions,
             "mask": mask}
    out = {k: np.asarray(v, DTYPES[k]) for k, v in batch.items()}
    shape = out["inputs"].shape
    if len(shape) != 2:
        raise ValueError(f"batch inputs must be [B, T], got shape {shape}")
    for k, v in out.items():
        if v.shape != shape:
            raise ValueError(f"batch key {k!r} has shape {v.shape}, inputs have {shape}")
    for k, v in extra.items():
        v = np.asarray(v)
        if v.shape[:1] != shape[:1]:
            raise ValueError(f"batch key {k!r} has {v.shape[:1]} rows, inputs have {shape[0]}")
        out[k] = v
    return out


def rows_of(batch: Mapping, prefix: str = "") -> dict:
    """The five batch keys of ``batch`` read under ``prefix`` (e.g. "chosen_"), unprefixed."""
    return {k: batch[prefix + k] for k in BATCH_KEYS}


def apply_batch(params: dict, batch: Mapping, cfg: models.ModelConfig, *, prefix: str = "",
                return_hidden: bool = False):
    """Logits [B, T, V] of a batch's rows: the model family's ``apply`` (:func:`jaxlab.models.module`)
    of ``inputs`` with the batch's ``positions`` (RoPE) and ``segment_ids`` (attention, or a
    Mamba's state, within a sequence). ``prefix`` reads prefixed keys (``prefix + "inputs"``...);
    ``return_hidden`` as in :func:`jaxlab.models.transformer.apply`."""
    return models.apply(params, batch[prefix + "inputs"], cfg,
                             positions_BT=batch[prefix + "positions"],
                             segment_ids_BT=batch[prefix + "segment_ids"], return_hidden=return_hidden)

