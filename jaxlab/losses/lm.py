"""Language-model losses.

Cross-entropy with z-loss over the masked target tokens:

    nll_t = logsumexp(logits_t) - logits_t[y_t]
    z_t   = logsumexp(logits_t)^2                              (z-loss, PaLM)
    loss  = sum_t m_t (nll_t + z_coef * z_t) / sum_t m_t

Training divides exactly once per optimizer step: ``cross_entropy_sums`` returns the sums and
the token count, so micro-batches and devices add their sums and the step divides by the
total count (gradient accumulation then equals the large batch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_nll(logits_BTV: jax.Array, targets_BT: jax.Array):
    """Per-token negative log-likelihood and log-partition, both [B, T] float32."""
    logits_BTV = logits_BTV.astype(jnp.float32)
    log_z_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
    target_logit_BT = jnp.take_along_axis(logits_BTV, targets_BT[..., None], axis=-1)[..., 0]
    return log_z_BT - target_logit_BT, log_z_BT


def cross_entropy_sums(logits_BTV: jax.Array, targets_BT: jax.Array, mask_BT: jax.Array | None = None,
                       *, z_loss: float = 0.0) -> dict:
    """Sums over masked tokens: ``loss`` (nll + z_coef * z), ``nll``, ``z``, ``correct``, ``count``."""
    nll_BT, log_z_BT = token_nll(logits_BTV, targets_BT)
    mask_BT = jnp.ones_like(nll_BT) if mask_BT is None else mask_BT.astype(jnp.float32)
    z_BT = jnp.square(log_z_BT)
    correct_BT = (jnp.argmax(logits_BTV, axis=-1) == targets_BT).astype(jnp.float32)
    nll = jnp.sum(nll_BT * mask_BT)
    z = jnp.sum(z_BT * mask_BT)
    return {
        "loss": nll + z_loss * z,
        "nll": nll,
        "z": z,
        "correct": jnp.sum(correct_BT * mask_BT),
        "count": jnp.sum(mask_BT),
    }


def normalize_sums(sums: dict) -> dict:
    """Divides every sum by ``count`` (kept as is); a zero count gives zeros, not NaN."""
    count = sums["count"]
    safe = jnp.maximum(count, 1.0)
    return {k: (v if k == "count" else v / safe) for k, v in sums.items()}


def cross_entropy(logits_BTV: jax.Array, targets_BT: jax.Array, mask_BT: jax.Array | None = None,
                  *, z_loss: float = 0.0):
    """Mean masked cross-entropy (+ z-loss). Returns (loss, metrics) with metrics nll, z,
    accuracy and count."""
    means = normalize_sums(cross_entropy_sums(logits_BTV, targets_BT, mask_BT, z_loss=z_loss))
    metrics = {"nll": means["nll"], "z": means["z"], "accuracy": means["correct"],
               "count": means["count"]}
    return means["loss"], metrics
