"""The language-model loss of pre-training: next-token cross-entropy of packed batches
(:mod:`jaxlab.train.batch`), as sums for the generic step (:mod:`jaxlab.train.step`)."""

from __future__ import annotations

import jax

from jaxlab.losses.lm import cross_entropy_sums
from jaxlab.models import transformer
from jaxlab.train.batch import apply_batch


def lm_loss_sums(params: dict, batch: dict, key: jax.Array, *, model_cfg: transformer.Config,
                 z_loss: float = 0.0) -> dict:
    """Next-token cross-entropy sums of a packed batch (inputs, targets, positions,
    segment_ids, mask: all [B, T])."""
    del key  # no dropout in the LM
    return cross_entropy_sums(apply_batch(params, batch, model_cfg), batch["targets"], batch["mask"],
                              z_loss=z_loss)


def lm_eval_sums(params: dict, batch: dict, key: jax.Array, *, model_cfg: transformer.Config,
                 byte_vocab: int = 256) -> dict:
    """``lm_loss_sums`` plus ``byte_nll`` / ``byte_count``: the sums over targets that are raw
    bytes (ids < ``byte_vocab``), from which bits per byte = byte_nll / (ln 2 * byte_count)."""
    del key
    logits_BTV = apply_batch(params, batch, model_cfg)
    sums = cross_entropy_sums(logits_BTV, batch["targets"], batch["mask"])
    byte_mask_BT = batch["mask"] * (batch["targets"] < byte_vocab)
    byte_sums = cross_entropy_sums(logits_BTV, batch["targets"], byte_mask_BT)
    return {**sums, "byte_nll": byte_sums["nll"], "byte_count": byte_sums["count"]}
