"""Likelihood displacement in preference optimisation (Razin et al. 2024, "Unintentional
Unalignment"): the centered hidden embedding similarity (CHES) score of a pair.

Under DPO the log-probability of the chosen response y+ can fall; the pairs where it falls
most are those whose responses look alike to the model. With h(y) the sum of the hidden
embeddings at the positions that predict the tokens of y,

    h(y) = sum_{k=1}^{|y|} h_{x, y_<k}
    CHES(x, y+, y-) = <h(y+), h(y-)> - ||h(y+)||^2
    length-normalised:  <h(y+), h(y-)> / (|y+| |y-|) - ||h(y+)||^2 / |y+|^2

A higher score predicts more displacement of y+.

Positions. h_{x, y_<k} is the hidden state of the position whose *target* is y_k: from the
last prompt token through the second-to-last token of the sequence. In the rows of
:mod:`jaxlab.data.chat` (inputs = [BOS] + x + y, targets = x + y + [EOS], loss mask on the
targets of y and EOS) these are exactly the positions of the loss mask, EOS counting as the
last response token: |y| is the mask count. Padding and prompt positions have mask 0 and are
left out, whatever their hidden states hold.

Hidden embedding: the input of the unembedding (the final layer's output after the final
norm), :func:`unembedding_inputs`; :func:`pair_ches` takes any [.., T, D] states.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlab.models import transformer
from jaxlab.nn.norms import norm


def response_hidden_sums(hidden_BTD: jax.Array, mask_BT: jax.Array):
    """h_b = sum_t m_bt hidden_btd and the number of summed positions: (h_BD, count_B),
    float32. Masked positions contribute exactly 0 (a NaN or inf there does not leak)."""
    mask_BT = jnp.asarray(mask_BT) > 0
    hidden_BTD = jnp.where(mask_BT[..., None], hidden_BTD.astype(jnp.float32), 0.0)
    return jnp.sum(hidden_BTD, axis=1), jnp.sum(mask_BT.astype(jnp.float32), axis=1)


def ches_scores(h_chosen_PD: jax.Array, h_rejected_PD: jax.Array,
                chosen_count_P: jax.Array | None = None,
                rejected_count_P: jax.Array | None = None) -> jax.Array:
    """CHES of each pair from summed response hidden states, [P]:

        <h+, h-> - ||h+||^2                                   (counts None)
        <h+, h-> / (|y+| |y-|) - ||h+||^2 / |y+|^2            (counts given: length-normalised)
    """
    h_c, h_r = h_chosen_PD.astype(jnp.float32), h_rejected_PD.astype(jnp.float32)
    if (chosen_count_P is None) != (rejected_count_P is None):
        raise ValueError("give both chosen_count_P and rejected_count_P (length-normalised "
                         "CHES) or neither")
    if chosen_count_P is not None:
        h_c = h_c / jnp.maximum(jnp.asarray(chosen_count_P, jnp.float32), 1.0)[:, None]
        h_r = h_r / jnp.maximum(jnp.asarray(rejected_count_P, jnp.float32), 1.0)[:, None]
    return jnp.sum(h_c * h_r, axis=-1) - jnp.sum(h_c * h_c, axis=-1)


def pair_ches(hidden_chosen_PTD: jax.Array, chosen_mask_PT: jax.Array,
              hidden_rejected_PTD: jax.Array, rejected_mask_PT: jax.Array, *,
              length_normalized: bool = False) -> jax.Array:
    """CHES of P pairs from the hidden states of their rows (chosen and rejected rows may have
    different lengths T) and their response masks, [P]."""
    h_c, n_c = response_hidden_sums(hidden_chosen_PTD, chosen_mask_PT)
    h_r, n_r = response_hidden_sums(hidden_rejected_PTD, rejected_mask_PT)
    if length_normalized:
        return ches_scores(h_c, h_r, n_c, n_r)
    return ches_scores(h_c, h_r)


def unembedding_inputs(params: dict, cfg: transformer.Config, tokens_BT: jax.Array, *,
                       positions_BT: jax.Array | None = None,
                       segment_ids_BT: jax.Array | None = None) -> jax.Array:
    """The hidden embeddings the unembedding reads, [B, T, D]: the last layer's residual
    stream after the final norm."""
    _, hidden_LBTD = transformer.apply(params, tokens_BT, cfg, positions_BT=positions_BT,
                                       segment_ids_BT=segment_ids_BT, return_hidden=True)
    return norm(params["final_norm"], hidden_LBTD[-1], cfg.norm_type, cfg.norm_eps)


def model_pair_ches(params: dict, cfg: transformer.Config, chosen: dict, rejected: dict, *,
                    length_normalized: bool = False) -> jax.Array:
    """CHES of the pairs of a stacked preference batch under a model, [P]. ``chosen`` and
    ``rejected`` are row dicts (``inputs``, ``positions``, ``segment_ids``, ``mask``: [P, T]),
    as :func:`jaxlab.data.chat.preference_batch` makes them."""
    def hidden(rows):
        return unembedding_inputs(params, cfg, rows["inputs"], positions_BT=rows["positions"],
                                  segment_ids_BT=rows["segment_ids"])
    return pair_ches(hidden(chosen), chosen["mask"], hidden(rejected), rejected["mask"],
                     length_normalized=length_normalized)
