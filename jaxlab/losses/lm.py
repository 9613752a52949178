"""Language-model losses.

Cross-entropy with z-loss over the masked target tokens:

    nll_t = logsumexp(logits_t) - logits_t[y_t]
    z_t   = logsumexp(logits_t)^2                              (z-loss, PaLM)
    loss  = sum_t m_t (nll_t + z_coef * z_t) / sum_t m_t

Training divides exactly once per optimizer step: ``cross_entropy_sums`` returns the sums and
the token count, so micro-batches and devices add their sums and the step divides by the
total count (gradient accumulation then equals the large batch).

Supervised fine-tuning (SFT) is this cross-entropy with the loss mask of a chat batch
(:mod:`jaxlab.data.chat`: 1 on response tokens and EOS, 0 on the prompt). Two reweighted
variants, both token means over the same mask:

    DFT      l_t = sg(p_t) nll_t,   p_t = exp(-nll_t)           (:func:`dft_sums`)
    iw-SFT   l_t = sg(w_t) nll_t,   w given per token/sequence  (:func:`importance_weighted_sums`)

Distillation (a draft for speculative decoding, a smaller student) replaces the one-hot target
by a teacher's distribution p over the vocabulary at each position (:func:`distill_sums`):

    l_t = - sum_v p_t(v) log q_t(v)  =  KL(p_t || q_t) + H(p_t)

Sequence log-probabilities (preference and verifier losses, diagnostics) are computed in one
place: :func:`sequence_logprobs` per row and :func:`segment_logprobs` per packed segment.
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


def distill_sums(logits_BTV: jax.Array, teacher_logits_BTV: jax.Array, mask_BT: jax.Array | None = None,
                 targets_BT: jax.Array | None = None) -> dict:
    """Sums over masked tokens of the soft-label cross-entropy (module docstring) from student
    logits [B, T, V] to the teacher's distribution p = softmax(teacher_logits) (no gradient to the
    teacher): ``loss``, ``kl`` = KL(p || q), ``agree`` (student argmax == teacher argmax: a
    greedy draft's acceptance), ``nll`` of ``targets_BT`` when given, and ``count``."""
    logq_BTV = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), axis=-1)
    logp_BTV = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits_BTV).astype(jnp.float32), axis=-1)
    p_BTV = jnp.exp(logp_BTV)
    ce_BT = -jnp.sum(p_BTV * logq_BTV, axis=-1)
    kl_BT = jnp.sum(p_BTV * (logp_BTV - logq_BTV), axis=-1)
    agree_BT = (jnp.argmax(logits_BTV, -1) == jnp.argmax(teacher_logits_BTV, -1)).astype(jnp.float32)
    mask_BT = jnp.ones_like(ce_BT) if mask_BT is None else mask_BT.astype(jnp.float32)
    out = {"loss": jnp.sum(ce_BT * mask_BT), "kl": jnp.sum(kl_BT * mask_BT),
           "agree": jnp.sum(agree_BT * mask_BT), "count": jnp.sum(mask_BT)}
    if targets_BT is not None:
        nll_BT = -jnp.take_along_axis(logq_BTV, targets_BT[..., None], axis=-1)[..., 0]
        out["nll"] = jnp.sum(nll_BT * mask_BT)
    return out


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


# ---------------------------------------------------------------- sequence log-probs

def token_logprobs(logits_BTV: jax.Array, targets_BT: jax.Array) -> jax.Array:
    """log p(y_t | y_<t) of each target token, [B, T] float32 (= -token_nll)."""
    return -token_nll(logits_BTV, targets_BT)[0]


def sequence_logprobs(logits_BTV: jax.Array, targets_BT: jax.Array, mask_BT: jax.Array):
    """Summed log-probability of the masked targets of each row and their number:

        logp_b = sum_t m_bt log p(y_bt | y_b<t),     count_b = sum_t m_bt

    Returns (logp_B, count_B), float32. One sequence per row; packed rows use
    :func:`segment_logprobs`."""
    mask_BT = mask_BT.astype(jnp.float32)
    return (jnp.sum(token_logprobs(logits_BTV, targets_BT) * mask_BT, axis=-1),
            jnp.sum(mask_BT, axis=-1))


def segment_sums(values_BT: jax.Array, segment_ids_BT: jax.Array, num_segments: int) -> jax.Array:
    """Sums of ``values_BT`` over each segment of each row: out[b, s - 1] = sum of values_bt
    with segment_ids_bt == s, for s = 1..num_segments; segment id 0 (padding) and ids above
    ``num_segments`` are left out. Returns [B, num_segments] float32."""
    B, T = segment_ids_BT.shape
    S = num_segments
    seg_BT = segment_ids_BT.astype(jnp.int32)
    keep_BT = (seg_BT >= 1) & (seg_BT <= S)
    flat_BT = jnp.where(keep_BT, jnp.arange(B)[:, None] * S + seg_BT - 1, B * S)  # B*S: dropped
    out = jax.ops.segment_sum(values_BT.astype(jnp.float32).reshape(-1), flat_BT.reshape(-1),
                              num_segments=B * S + 1)
    return out[:B * S].reshape(B, S)


def segment_logprobs(logits_BTV: jax.Array, targets_BT: jax.Array, mask_BT: jax.Array,
                     segment_ids_BT: jax.Array, num_segments: int):
    """:func:`sequence_logprobs` of packed rows, per segment: (logp_BS, count_BS), each
    [B, num_segments], column s - 1 holding segment s (empty segments have count 0)."""
    mask_BT = mask_BT.astype(jnp.float32)
    logp_BT = token_logprobs(logits_BTV, targets_BT) * mask_BT
    return (segment_sums(logp_BT, segment_ids_BT, num_segments),
            segment_sums(mask_BT, segment_ids_BT, num_segments))


# ---------------------------------------------------------------- SFT variants

def dft_sums(logits_BTV: jax.Array, targets_BT: jax.Array, mask_BT: jax.Array | None = None) -> dict:
    """Dynamic Fine-Tuning (DFT, Wu et al. 2025): each token's cross-entropy weighted by the
    stop-gradient probability of its target,

        l_t = sg(p_t) * nll_t,    p_t = exp(-nll_t) = pi_theta(y_t | y_<t, x)
        loss = sum_t m_t l_t / sum_t m_t                       (token mean)

    so the gradient is sum_t m_t p_t grad(nll_t) / count: SFT's gradient with each token's
    implicit 1 / p_t reward removed. Sums over masked tokens: ``loss``, ``nll`` (plain
    cross-entropy, which DFT is not minimising and may rise), ``prob`` (sum of p_t),
    ``count``. Divide with :func:`normalize_sums`."""
    nll_BT, _ = token_nll(logits_BTV, targets_BT)
    mask_BT = jnp.ones_like(nll_BT) if mask_BT is None else mask_BT.astype(jnp.float32)
    prob_BT = jax.lax.stop_gradient(jnp.exp(-nll_BT))
    return {
        "loss": jnp.sum(prob_BT * nll_BT * mask_BT),
        "nll": jnp.sum(nll_BT * mask_BT),
        "prob": jnp.sum(prob_BT * mask_BT),
        "count": jnp.sum(mask_BT),
    }


def dft_loss(logits_BTV: jax.Array, targets_BT: jax.Array, mask_BT: jax.Array | None = None):
    """Token-mean DFT loss (:func:`dft_sums`). Returns (loss, metrics) with metrics nll, prob
    (mean target probability) and count."""
    means = normalize_sums(dft_sums(logits_BTV, targets_BT, mask_BT))
    return means["loss"], {k: means[k] for k in ("nll", "prob", "count")}


def importance_weights(logp_BT: jax.Array, ref_logp_BT: jax.Array, mask_BT: jax.Array, *,
                       level: str = "sequence", max_weight: float = 2.0, min_weight: float = 0.0,
                       segment_ids_BT: jax.Array | None = None) -> jax.Array:
    """Importance weights for :func:`importance_weighted_sums`, [B, T] float32, no gradient:

        token:     w_t = clip(q_t / pi_ref_t, min_weight, max_weight)
        sequence:  w_t = clip(prod_{s in seq(t)} q_s / pi_ref_s, min_weight, max_weight)
                       = clip(exp(sum_s m_s (log q_s - log pi_ref_s)), ...)

    ``logp_BT`` is log q (the model being trained, or a lagging copy of it), ``ref_logp_BT``
    log pi_ref (the policy that produced the data); both are taken with stop-gradient. The
    sequence ratio is computed in log space and clipped there (no overflow); it spans the
    whole row, or each segment of a packed row when ``segment_ids_BT`` is given. Masked-out
    tokens get weight 0.
    """
    if level not in ("token", "sequence"):
        raise ValueError(f"level={level!r} is not one of 'token', 'sequence'")
    if not 0.0 <= min_weight < max_weight:
        raise ValueError(f"need 0 <= min_weight < max_weight, got min_weight={min_weight}, "
                         f"max_weight={max_weight}")
    mask_BT = mask_BT.astype(jnp.float32)
    log_ratio_BT = jax.lax.stop_gradient(logp_BT - ref_logp_BT).astype(jnp.float32) * mask_BT
    if level == "sequence":
        if segment_ids_BT is None:
            log_ratio_BT = jnp.broadcast_to(jnp.sum(log_ratio_BT, axis=-1, keepdims=True),
                                            log_ratio_BT.shape)
        else:
            T = segment_ids_BT.shape[-1]
            per_seg_BS = segment_sums(log_ratio_BT, segment_ids_BT, T)
            index_BT = jnp.clip(segment_ids_BT.astype(jnp.int32) - 1, 0, T - 1)
            log_ratio_BT = jnp.take_along_axis(per_seg_BS, index_BT, axis=-1)
    log_lo = jnp.log(min_weight) if min_weight > 0 else -jnp.inf
    return jnp.exp(jnp.clip(log_ratio_BT, log_lo, jnp.log(max_weight))) * mask_BT


def importance_weighted_sums(logits_BTV: jax.Array, targets_BT: jax.Array, weights_BT: jax.Array,
                             mask_BT: jax.Array | None = None) -> dict:
    """Importance-weighted SFT (iw-SFT: Qin & Springenberg 2025, arXiv 2507.12856, "Supervised
    Fine Tuning on Curated Data is Reinforcement Learning"; the iw-SFT baseline of the DFT
    paper): cross-entropy weighted by given, non-differentiated weights,

        loss = sum_t m_t sg(w_t) nll_t / sum_t m_t             (token mean)

    ``weights_BT`` is per token, or per sequence as [B] (broadcast over the row). In iw-SFT
    w is the clipped ratio q(y | x) / pi_ref(y | x) between the policy being trained (or a
    lagging copy) and the data's policy, over the whole sequence (:func:`importance_weights`);
    any other per-token or per-sequence weights (quality scores) fit the same form. The
    denominator is the token count, not sum w, so w = 1 is plain SFT. Sums: ``loss``,
    ``nll`` (unweighted), ``weight`` (sum of w over masked tokens), ``count``."""
    nll_BT, _ = token_nll(logits_BTV, targets_BT)
    mask_BT = jnp.ones_like(nll_BT) if mask_BT is None else mask_BT.astype(jnp.float32)
    weights_BT = jnp.asarray(weights_BT, jnp.float32)
    if weights_BT.ndim == 1:
        weights_BT = weights_BT[:, None]
    weights_BT = jax.lax.stop_gradient(jnp.broadcast_to(weights_BT, nll_BT.shape))
    return {
        "loss": jnp.sum(weights_BT * nll_BT * mask_BT),
        "nll": jnp.sum(nll_BT * mask_BT),
        "weight": jnp.sum(weights_BT * mask_BT),
        "count": jnp.sum(mask_BT),
    }


def importance_weighted_loss(logits_BTV: jax.Array, targets_BT: jax.Array, weights_BT: jax.Array,
                             mask_BT: jax.Array | None = None):
    """Token-mean iw-SFT loss (:func:`importance_weighted_sums`). Returns (loss, metrics) with
    metrics nll, weight (mean weight) and count."""
    means = normalize_sums(importance_weighted_sums(logits_BTV, targets_BT, weights_BT, mask_BT))
    return means["loss"], {k: means[k] for k in ("nll", "weight", "count")}
