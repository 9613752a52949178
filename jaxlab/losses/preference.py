"""Preference losses on pairs (x, y+, y-) whose two responses share the prompt x: DPO, IPO,
SimPO, APO-zero and APO-down.

A batch of P pairs is described by a dict of [P] float32 arrays (a *pair dict*):

    chosen, rejected              log pi(y | x) = sum_t m_t log pi(y_t | x, y_<t) over the
                                  response tokens of y+ and y- (prompt tokens masked in both)
    chosen_count, rejected_count  |y+| and |y-|, the number of response tokens summed

built from one forward pass over stacked rows by :func:`pair_logprobs` ([2P, T], the P chosen
rows first) or over packed rows by :func:`packed_pair_logprobs`. The policy and the frozen
reference give one pair dict each. With the log-ratios r = log pi_theta(y | x) -
log pi_ref(y | x) (summed over the response), Delta = r+ - r-, sigma the logistic function:

    DPO       l = -(1 - eps) log sigma(beta Delta) - eps log sigma(-beta Delta)
                  (eps: label smoothing, conservative DPO; eps = 0 is DPO)
    IPO       l = (Delta_avg - 1 / (2 beta))^2,   Delta_avg = r+ / |y+| - r- / |y-|
                  (log-ratios averaged over response tokens, as the IPO authors do; summed
                  log-ratios would make 1 / (2 beta) a target that depends on length)
    SimPO     l = -log sigma(beta (log pi(y+) / |y+| - log pi(y-) / |y-|) - gamma)
                  (length-normalised, target margin gamma, no reference model, no NLL term)
    APO-zero  l = 1 - sigma(beta r+) + sigma(beta r-)
    APO-down  l = sigma(beta r+) + 1 - sigma(beta Delta)
                  (Anchored Preference Optimization, D'Oosterlinck et al. 2024, eqs. 7-8, with
                  the constant 1 that makes l >= 0; zero pushes y+ up and y- down, down pushes
                  y+ down while widening the margin: for data whose chosen answers are worse
                  than the model's own)

Every loss returns sums over the valid pairs (both responses have at least one token; padding
pairs of a packed batch are not valid) and ``count``, the number of valid pairs, so that
micro-batches and devices add their sums and :func:`jaxlab.losses.lm.normalize_sums` divides
once per step (pair mean). Metric sums, the same for every loss:

    chosen_logps, rejected_logps      policy log pi(y+ | x), log pi(y- | x) (summed; both falling
                                      while the margin grows is likelihood displacement)
    chosen_rewards, rejected_rewards  the implicit reward of each response: beta r (DPO, APO),
                                      beta r / |y| (IPO), beta log pi(y) / |y| (SimPO)
    margins                           chosen_rewards - rejected_rewards
    accuracy                          1 where chosen_rewards > rejected_rewards
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jaxlab.losses.lm import normalize_sums, segment_logprobs, sequence_logprobs

PAIR_KEYS = ("chosen", "rejected", "chosen_count", "rejected_count")
METRIC_KEYS = ("chosen_logps", "rejected_logps", "chosen_rewards", "rejected_rewards",
               "margins", "accuracy", "count")


# ---------------------------------------------------------------- pair log-probs

def pair_logprobs(logits_2PTV: jax.Array, targets_2PT: jax.Array, mask_2PT: jax.Array) -> dict:
    """The pair dict of stacked rows: rows 0..P-1 hold y+ of pairs 0..P-1, rows P..2P-1 their
    y- (same prompt), one sequence per row, ``mask`` 1 on response targets only."""
    n = logits_2PTV.shape[0]
    if n % 2:
        raise ValueError(f"stacked pairs need an even number of rows (P chosen, then P "
                         f"rejected), got {n}")
    logp_2P, count_2P = sequence_logprobs(logits_2PTV, targets_2PT, mask_2PT)
    P = n // 2
    return {"chosen": logp_2P[:P], "rejected": logp_2P[P:],
            "chosen_count": count_2P[:P], "rejected_count": count_2P[P:]}


def packed_pair_logprobs(logits_BTV: jax.Array, targets_BT: jax.Array, mask_BT: jax.Array,
                         segment_ids_BT: jax.Array, pairs_per_row: int) -> dict:
    """The pair dict of packed rows, where pair k of a row is segment 2k + 1 (y+) followed by
    segment 2k + 2 (y-), k < ``pairs_per_row``. Returns [B * pairs_per_row] arrays in row-major
    order; slots without a pair have counts 0 and are not valid pairs."""
    if isinstance(pairs_per_row, bool) or not isinstance(pairs_per_row, int) or pairs_per_row < 1:
        raise ValueError(f"pairs_per_row must be an int >= 1, got {pairs_per_row!r}")
    logp_BS, count_BS = segment_logprobs(logits_BTV, targets_BT, mask_BT, segment_ids_BT,
                                         2 * pairs_per_row)
    return {"chosen": logp_BS[:, 0::2].reshape(-1), "rejected": logp_BS[:, 1::2].reshape(-1),
            "chosen_count": count_BS[:, 0::2].reshape(-1),
            "rejected_count": count_BS[:, 1::2].reshape(-1)}


def stack_pairs(batch: Mapping[str, Mapping[str, jax.Array]]) -> dict:
    """``{"chosen": rows, "rejected": rows}`` (each a dict of [P, ...] arrays with the same
    keys) -> one dict of [2P, ...] arrays, chosen rows first: the input of one forward pass
    whose logits go to :func:`pair_logprobs`."""
    if set(batch) != {"chosen", "rejected"}:
        raise ValueError(f"a stacked preference batch has keys 'chosen' and 'rejected', got "
                         f"{sorted(batch)}")
    return jax.tree.map(lambda c, r: jnp.concatenate([c, r], axis=0),
                        dict(batch["chosen"]), dict(batch["rejected"]))


# ---------------------------------------------------------------- checks and shared sums

def _check_pairs(name: str, pairs: Mapping, keys=PAIR_KEYS) -> None:
    if not isinstance(pairs, Mapping):
        raise ValueError(f"{name} must be a pair dict with keys {keys}, got {type(pairs).__name__}")
    missing = [k for k in keys if k not in pairs]
    if missing:
        raise ValueError(f"{name} lacks {missing}: a pair dict has keys {PAIR_KEYS} "
                         f"(see pair_logprobs)")


def _check_beta(beta) -> None:
    if isinstance(beta, (int, float)) and not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")


def _counts(policy: Mapping):
    """(valid_P, |y+|, |y-|) with counts clamped to >= 1 so that invalid pairs stay finite."""
    n_c = jnp.asarray(policy["chosen_count"], jnp.float32)
    n_r = jnp.asarray(policy["rejected_count"], jnp.float32)
    valid = (n_c > 0) & (n_r > 0)
    return valid, jnp.maximum(n_c, 1.0), jnp.maximum(n_r, 1.0)


def _log_ratios(policy: Mapping, reference: Mapping):
    return (jnp.asarray(policy["chosen"], jnp.float32) - jnp.asarray(reference["chosen"], jnp.float32),
            jnp.asarray(policy["rejected"], jnp.float32) - jnp.asarray(reference["rejected"], jnp.float32))


def _pair_sums(loss_P, chosen_rewards_P, rejected_rewards_P, policy: Mapping, valid_P) -> dict:
    def total(x_P):
        return jnp.sum(jnp.where(valid_P, x_P, 0.0))

    rc = jax.lax.stop_gradient(chosen_rewards_P)
    rr = jax.lax.stop_gradient(rejected_rewards_P)
    return {
        "loss": total(loss_P),
        "chosen_logps": total(jax.lax.stop_gradient(policy["chosen"])),
        "rejected_logps": total(jax.lax.stop_gradient(policy["rejected"])),
        "chosen_rewards": total(rc),
        "rejected_rewards": total(rr),
        "margins": total(rc - rr),
        "accuracy": total((rc > rr).astype(jnp.float32)),
        "count": jnp.sum(valid_P.astype(jnp.float32)),
    }


def _finish(sums: dict):
    means = normalize_sums(sums)
    return means["loss"], {k: means[k] for k in METRIC_KEYS}


# ---------------------------------------------------------------- losses

def dpo_sums(policy: Mapping, reference: Mapping, *, beta: float = 0.1,
             label_smoothing: float = 0.0) -> dict:
    """DPO (Rafailov et al. 2023) with label smoothing eps (conservative DPO), summed over pairs:

        l = -(1 - eps) log sigma(beta Delta) - eps log sigma(-beta Delta),
        Delta = (log pi(y+) - log pi_ref(y+)) - (log pi(y-) - log pi_ref(y-))

    l = log 2 for every eps when the policy equals the reference. Rewards beta r."""
    _check_pairs("policy", policy)
    _check_pairs("reference", reference, ("chosen", "rejected"))
    _check_beta(beta)
    if isinstance(label_smoothing, (int, float)) and not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5], got {label_smoothing}")
    valid, _, _ = _counts(policy)
    r_c, r_r = _log_ratios(policy, reference)
    z = beta * (r_c - r_r)
    loss = -(1.0 - label_smoothing) * jax.nn.log_sigmoid(z) - label_smoothing * jax.nn.log_sigmoid(-z)
    return _pair_sums(loss, beta * r_c, beta * r_r, policy, valid)


def ipo_sums(policy: Mapping, reference: Mapping, *, beta: float = 0.1) -> dict:
    """IPO (Azar et al. 2023) on per-token averaged log-ratios, summed over pairs:

        l = (r+ / |y+| - r- / |y-| - 1 / (2 beta))^2

    Rewards beta r / |y|."""
    _check_pairs("policy", policy)
    _check_pairs("reference", reference, ("chosen", "rejected"))
    _check_beta(beta)
    valid, n_c, n_r = _counts(policy)
    r_c, r_r = _log_ratios(policy, reference)
    avg_c, avg_r = r_c / n_c, r_r / n_r
    loss = jnp.square(avg_c - avg_r - 1.0 / (2.0 * beta))
    return _pair_sums(loss, beta * avg_c, beta * avg_r, policy, valid)


def simpo_sums(policy: Mapping, *, beta: float = 2.0, gamma: float = 1.0) -> dict:
    """SimPO (Meng et al. 2024): length-normalised log-likelihoods, a target margin gamma, no
    reference model and no NLL term, summed over pairs:

        l = -log sigma(beta (log pi(y+) / |y+| - log pi(y-) / |y-|) - gamma)

    Defaults beta 2.0, gamma 1.0 (gamma / beta = 0.5, in the paper's tuned range). Rewards
    beta log pi(y) / |y|; accuracy compares them without the margin."""
    _check_pairs("policy", policy)
    _check_beta(beta)
    valid, n_c, n_r = _counts(policy)
    avg_c = jnp.asarray(policy["chosen"], jnp.float32) / n_c
    avg_r = jnp.asarray(policy["rejected"], jnp.float32) / n_r
    loss = -jax.nn.log_sigmoid(beta * (avg_c - avg_r) - gamma)
    return _pair_sums(loss, beta * avg_c, beta * avg_r, policy, valid)


def apo_zero_sums(policy: Mapping, reference: Mapping, *, beta: float = 0.1) -> dict:
    """APO-zero, summed over pairs: l = 1 - sigma(beta r+) + sigma(beta r-). Raises the
    likelihood of y+ and lowers that of y- (each anchored at r = 0). Rewards beta r."""
    _check_pairs("policy", policy)
    _check_pairs("reference", reference, ("chosen", "rejected"))
    _check_beta(beta)
    valid, _, _ = _counts(policy)
    r_c, r_r = _log_ratios(policy, reference)
    loss = 1.0 - jax.nn.sigmoid(beta * r_c) + jax.nn.sigmoid(beta * r_r)
    return _pair_sums(loss, beta * r_c, beta * r_r, policy, valid)


def apo_down_sums(policy: Mapping, reference: Mapping, *, beta: float = 0.1) -> dict:
    """APO-down, summed over pairs: l = sigma(beta r+) + 1 - sigma(beta (r+ - r-)). Lowers the
    likelihood of y+ while lowering y- further. Rewards beta r."""
    _check_pairs("policy", policy)
    _check_pairs("reference", reference, ("chosen", "rejected"))
    _check_beta(beta)
    valid, _, _ = _counts(policy)
    r_c, r_r = _log_ratios(policy, reference)
    loss = jax.nn.sigmoid(beta * r_c) + 1.0 - jax.nn.sigmoid(beta * (r_c - r_r))
    return _pair_sums(loss, beta * r_c, beta * r_r, policy, valid)


def dpo_loss(policy: Mapping, reference: Mapping, **kwargs):
    """Pair-mean :func:`dpo_sums`. Returns (loss, metrics); metrics as in the module docstring."""
    return _finish(dpo_sums(policy, reference, **kwargs))


def ipo_loss(policy: Mapping, reference: Mapping, **kwargs):
    """Pair-mean :func:`ipo_sums`. Returns (loss, metrics)."""
    return _finish(ipo_sums(policy, reference, **kwargs))


def simpo_loss(policy: Mapping, **kwargs):
    """Pair-mean :func:`simpo_sums`. Returns (loss, metrics)."""
    return _finish(simpo_sums(policy, **kwargs))


def apo_zero_loss(policy: Mapping, reference: Mapping, **kwargs):
    """Pair-mean :func:`apo_zero_sums`. Returns (loss, metrics)."""
    return _finish(apo_zero_sums(policy, reference, **kwargs))


def apo_down_loss(policy: Mapping, reference: Mapping, **kwargs):
    """Pair-mean :func:`apo_down_sums`. Returns (loss, metrics)."""
    return _finish(apo_down_sums(policy, reference, **kwargs))


# ---------------------------------------------------------------- by name

_WITH_REFERENCE = {"dpo": dpo_sums, "ipo": ipo_sums, "apo_zero": apo_zero_sums,
                   "apo_down": apo_down_sums}
LOSS_TYPES = ("dpo", "ipo", "simpo", "apo_zero", "apo_down")


def needs_reference(loss_type: str) -> bool:
    """Whether ``loss_type`` reads reference-model log-probs (all but SimPO)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r} is not one of {', '.join(map(repr, LOSS_TYPES))}")
    return loss_type in _WITH_REFERENCE


def preference_sums(loss_type: str, policy: Mapping, reference: Mapping | None = None,
                    **hparams) -> dict:
    """The sums of the loss named ``loss_type`` (one of ``LOSS_TYPES``) with its keyword
    hyper-parameters; ``reference`` is required for all but "simpo", and refused by "simpo"
    (which has no reference model) so that a configuration cannot silently drop it."""
    if needs_reference(loss_type):
        if reference is None:
            raise ValueError(f"loss_type={loss_type!r} needs reference log-probs, got None")
        return _WITH_REFERENCE[loss_type](policy, reference, **hparams)
    if reference is not None:
        raise ValueError("loss_type='simpo' uses no reference model; pass reference=None")
    return simpo_sums(policy, **hparams)
