"""Policy-gradient losses for RL on sampled completions: GRPO, DAPO, Dr. GRPO, GSPO, RLOO.

Notation: B completions (rows), T completion positions, ``mask_BT`` 1 on the tokens the loss
sees. Rewards of the G samples of one prompt form a group (``rewards_BG``: B prompts x G
samples; G is the group size here). ``logp`` is log pi(y_t | y_<t) of the policy being
trained, ``old_logp`` that of the policy that sampled (the behaviour policy), ``ref_logp``
that of the frozen reference policy.

Advantages (one scalar per completion, shared by its tokens):

    GRPO      A_i = (r_i - mean_g) / (std_g + eps)      std with Bessel's correction (n - 1)
    Dr. GRPO  A_i = r_i - mean_g                         (no std division)
    RLOO      A_i = r_i - (sum_g - r_i) / (n - 1) = n / (n - 1) * (r_i - mean_g)

A group of one sample or with equal rewards has A = 0 exactly (no NaN, no division by 0).

Per-token surrogate with the ratio rho_t = exp(logp_t - old_logp_t) (token level) or the GSPO
sequence ratio rho_i = exp(sum_t m_t (logp_t - old_logp_t) / |o_i|) given to every token:

    l_t = -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)          (DAPO clip-higher)
    dual clip c > 1, for A < 0:  l_t = min(l_t, -c A)                   (loss capped at c |A|)
    l_t += kl_coef * kl_t          (kl_in="loss"; kl_t by the estimator k1 / k2 / k3)
    l_t -= entropy_coef * H_t      (entropy bonus)

Aggregation, named as the modes are called here (n_i = sum_t m_it tokens of completion i,
N_seq = number of completions with n_i > 0, L = ``max_len`` a constant):

    "token-mean"            sum_i sum_t m l / sum_i n_i                          (DAPO)
    "seq-mean-token-mean"   (1 / N_seq) sum_i (sum_t m l) / n_i                  (GRPO paper)
    "seq-sum-max-length"    (1 / (N_seq L)) sum_i sum_t m l                       (Dr. GRPO)

Exact normalisation: :func:`policy_loss_sums` returns the numerator (``loss``) and the
denominator (``count``: tokens, sequences or sequences x L) of the chosen mode as sums, plus
token-level metric sums over ``tokens``. Micro-batches and devices add their sums (under
``jax.jit`` on a sharded batch the sums are global already; under ``shard_map`` psum them)
and :func:`normalize_policy_sums` divides once per optimizer step, so accumulating
micro-batches equals the large batch in value and gradient. Fully masked rows add nothing to
any sum (an empty batch gives loss 0, not NaN).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-sum-max-length")
KL_KINDS = ("k1", "k2", "k3")
KL_PLACES = ("loss", "reward")
RATIO_LEVELS = ("token", "sequence")
KL_REWARD_LEVELS = ("sequence", "token")

# |log ratio| is clamped here before exp so that the ratio stays finite in float32 (e^20 ~ 5e8);
# beyond it the ratio is constant (no gradient), far outside any clip range.
LOG_RATIO_CLAMP = 20.0

# Sums whose denominator is the loss ``count`` (the aggregation's); the others are token sums.
LOSS_SUMS = ("loss", "pg_loss")
TOKEN_SUMS = ("ratio", "clip_low", "clip_high", "clip_dual", "approx_kl", "kl", "entropy")


def _check_choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}")


# --- advantages ---------------------------------------------------------------------------

def _flat_groups(rewards, group_ids, num_groups):
    """(rewards_N, group_ids_N, num_groups, output shape) of either input form."""
    rewards = jnp.asarray(rewards, jnp.float32)
    if group_ids is None:
        if rewards.ndim != 2:
            raise ValueError(f"rewards without group_ids must be [B, G] (prompts x samples), "
                             f"got shape {rewards.shape}")
        B, G = rewards.shape
        return rewards.reshape(-1), jnp.repeat(jnp.arange(B), G), B, rewards.shape
    group_ids = jnp.asarray(group_ids)
    if rewards.ndim != 1 or group_ids.shape != rewards.shape:
        raise ValueError(f"rewards with group_ids must both be [N], got {rewards.shape} and "
                         f"{group_ids.shape}")
    if not jnp.issubdtype(group_ids.dtype, jnp.integer):
        raise ValueError(f"group_ids must be integers, got dtype {group_ids.dtype}")
    n = rewards.shape[0]
    num_groups = n if num_groups is None else int(num_groups)
    if num_groups < 1 and n:
        raise ValueError(f"num_groups must be >= 1, got {num_groups}")
    if n and not isinstance(group_ids, jax.core.Tracer):  # checkable outside jit
        low, high = int(group_ids.min()), int(group_ids.max())
        if low < 0 or high >= num_groups:
            raise ValueError(f"group_ids must lie in [0, num_groups={num_groups}), got [{low}, {high}]")
    return rewards, group_ids, max(num_groups, 1), rewards.shape


def _group_stats(rewards_N, ids_N, num_groups):
    """Per sample: group size n, group mean, Bessel std, and whether the group varies."""
    def seg(fn, x):
        return fn(x, ids_N, num_segments=num_groups)[ids_N]

    n_N = seg(jax.ops.segment_sum, jnp.ones_like(rewards_N))
    mean_N = seg(jax.ops.segment_sum, rewards_N) / jnp.maximum(n_N, 1.0)
    sq_N = seg(jax.ops.segment_sum, jnp.square(rewards_N - mean_N))
    std_N = jnp.sqrt(sq_N / jnp.maximum(n_N - 1.0, 1.0))
    varies_N = (n_N > 1) & (seg(jax.ops.segment_max, rewards_N) > seg(jax.ops.segment_min, rewards_N))
    return n_N, mean_N, std_N, varies_N


def grpo_advantages(rewards, group_ids=None, *, num_groups: int | None = None, eps: float = 1e-6):
    """GRPO: ``A_i = (r_i - mean_g) / (std_g + eps)``, std over the group with Bessel's
    correction (divides by n - 1).

    ``rewards`` is ``rewards_BG`` (B prompts x G samples), or ``rewards_N`` with integer
    ``group_ids_N`` in ``[0, num_groups)`` (default ``num_groups = N``) for groups of unequal
    size. Returns advantages of the same shape. A group of one sample, or whose rewards are all
    equal, gets A = 0 exactly.
    """
    rewards_N, ids_N, g, shape = _flat_groups(rewards, group_ids, num_groups)
    _, mean_N, std_N, varies_N = _group_stats(rewards_N, ids_N, g)
    adv_N = jnp.where(varies_N, (rewards_N - mean_N) / (std_N + eps), 0.0)
    return adv_N.reshape(shape)


def dr_grpo_advantages(rewards, group_ids=None, *, num_groups: int | None = None):
    """Dr. GRPO: ``A_i = r_i - mean_g`` (GRPO without the std division, which biases the update
    towards groups with small reward spread). Same input forms as :func:`grpo_advantages`;
    groups of one sample or equal rewards get A = 0 exactly."""
    rewards_N, ids_N, g, shape = _flat_groups(rewards, group_ids, num_groups)
    _, mean_N, _, varies_N = _group_stats(rewards_N, ids_N, g)
    return jnp.where(varies_N, rewards_N - mean_N, 0.0).reshape(shape)


def rloo_advantages(rewards, group_ids=None, *, num_groups: int | None = None):
    """RLOO (REINFORCE leave-one-out): ``A_i = r_i - (1 / (n - 1)) sum_{j != i} r_j``
    ``= n / (n - 1) (r_i - mean_g)``: the baseline of each sample is the mean reward of the
    other samples of its group (unbiased). Same input forms as :func:`grpo_advantages`; a
    group of one sample (no other sample to compare with) or of equal rewards gets A = 0."""
    rewards_N, ids_N, g, shape = _flat_groups(rewards, group_ids, num_groups)
    n_N, mean_N, _, varies_N = _group_stats(rewards_N, ids_N, g)
    adv_N = n_N / jnp.maximum(n_N - 1.0, 1.0) * (rewards_N - mean_N)
    return jnp.where(varies_N, adv_N, 0.0).reshape(shape)


# --- KL and entropy -----------------------------------------------------------------------

def kl_penalty(logp, ref_logp, kind: str = "k3"):
    """Per-token estimate of KL(pi || pi_ref) from tokens sampled from pi, with
    ``d = logp - ref_logp = log(pi / pi_ref)``:

        k1 = d                      unbiased, high variance, can be negative
        k2 = d^2 / 2                biased, low variance, >= 0
        k3 = exp(-d) - 1 + d        unbiased, low variance, >= 0 (pi_ref/pi - 1 - log(pi_ref/pi))

    All three are 0 where pi = pi_ref. Elementwise on any shape.
    """
    _check_choice("kl_kind", kind, KL_KINDS)
    d = logp - ref_logp
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * jnp.square(d)
    return jnp.expm1(-d) + d


def kl_penalized_rewards(rewards_B, logp_BT, ref_logp_BT, mask_BT, *, kl_coef: float,
                         kind: str = "k1", level: str = "sequence"):
    """Folds the KL penalty into the rewards (``kl_in="reward"``), before the advantages.

        level="sequence":  r'_i = r_i - kl_coef * sum_t m_it kl_it                 -> [B]
        level="token":     r'_it = m_it (-kl_coef * kl_it + r_i [t = last token of i])  -> [B, T]

    (the token rewards of a row sum to its sequence reward). ``logp_BT`` should be the log-probs
    of the policy that sampled the tokens; the penalty is a constant of the update (no gradient
    flows through it). k1 is the usual estimator here: its expectation is the KL itself.
    A fully masked row keeps r'_i = r_i at sequence level and gets zeros at token level.
    """
    _check_choice("level", level, KL_REWARD_LEVELS)
    mask_BT = jnp.asarray(mask_BT, jnp.float32)
    kl_BT = jax.lax.stop_gradient(
        kl_penalty(jnp.where(mask_BT > 0, logp_BT, 0.0), jnp.where(mask_BT > 0, ref_logp_BT, 0.0), kind))
    penalty_BT = kl_coef * kl_BT * mask_BT
    rewards_B = jnp.asarray(rewards_B, jnp.float32)
    if level == "sequence":
        return rewards_B - jnp.sum(penalty_BT, axis=-1)
    T = mask_BT.shape[-1]
    last_B = T - 1 - jnp.argmax(mask_BT[:, ::-1] > 0, axis=-1)
    at_last_BT = (jnp.arange(T)[None, :] == last_B[:, None]) & (mask_BT > 0)
    return jnp.where(at_last_BT, rewards_B[:, None], 0.0) - penalty_BT


# --- the surrogate --------------------------------------------------------------------------

def _check_loss_args(eps_low, eps_high, dual_clip, ratio_level, aggregation, max_len, kl_kind,
                     kl_in, kl_coef, ref_logp_BT, entropy_coef, entropy_BT):
    _check_choice("aggregation", aggregation, AGGREGATIONS)
    _check_choice("ratio_level", ratio_level, RATIO_LEVELS)
    _check_choice("kl_kind", kl_kind, KL_KINDS)
    _check_choice("kl_in", kl_in, KL_PLACES)
    if not 0.0 <= eps_low < 1.0:
        raise ValueError(f"eps_low={eps_low} must be in [0, 1)")
    if not eps_high >= 0.0:
        raise ValueError(f"eps_high={eps_high} must be >= 0")
    if dual_clip is not None and not dual_clip > 1.0:
        raise ValueError(f"dual_clip={dual_clip} must be > 1 (or None for no dual clip)")
    if aggregation == "seq-sum-max-length" and (max_len is None or not max_len >= 1):
        raise ValueError(f"aggregation 'seq-sum-max-length' needs the constant max_len >= 1 "
                         f"(the generation length limit), got max_len={max_len}")
    if kl_coef and kl_in == "loss" and ref_logp_BT is None:
        raise ValueError(f"kl_coef={kl_coef} with kl_in='loss' needs ref_logp_BT")
    if entropy_coef and entropy_BT is None:
        raise ValueError(f"entropy_coef={entropy_coef} needs entropy_BT")


def policy_loss_sums(logp_BT, old_logp_BT, advantages, mask_BT, *, eps_low: float = 0.2,
                     eps_high: float = 0.2, dual_clip: float | None = None,
                     ratio_level: str = "token", aggregation: str = "token-mean",
                     max_len: int | None = None, kl_coef: float = 0.0, ref_logp_BT=None,
                     kl_kind: str = "k3", kl_in: str = "loss", entropy_BT=None,
                     entropy_coef: float = 0.0) -> dict:
    """Sums of the clipped policy-gradient loss of one micro-batch (module docstring formulas).

    ``advantages`` is [B] (one per completion) or [B, T] (per token). With ``kl_in="loss"``
    the per-token loss gets ``kl_coef * kl_t``; with ``kl_in="reward"`` the penalty is assumed
    folded into the rewards already (:func:`kl_penalized_rewards`) and the loss is unchanged.
    The KL to the reference is reported whenever ``ref_logp_BT`` is given.

    Returns a dict of float32 scalars, every key always present:
      ``loss``, ``pg_loss``   numerators of the aggregation (total and policy-gradient part)
      ``count``               the aggregation's denominator: tokens, sequences or sequences * max_len
      ``tokens``, ``sequences``  masked tokens, rows with at least one masked token
      ``ratio``, ``clip_low``, ``clip_high``, ``clip_dual``, ``approx_kl``, ``kl``, ``entropy``
                              sums over masked tokens of: rho; [A < 0 and rho < 1 - eps_low];
                              [A > 0 and rho > 1 + eps_high]; [A < 0 and rho > dual_clip];
                              k3 estimate of KL(pi_old || pi); KL to the reference; H_t.
    Add the sums of several micro-batches / devices, then call :func:`normalize_policy_sums`.
    """
    _check_loss_args(eps_low, eps_high, dual_clip, ratio_level, aggregation, max_len, kl_kind,
                     kl_in, kl_coef, ref_logp_BT, entropy_coef, entropy_BT)
    logp_BT = jnp.asarray(logp_BT, jnp.float32)
    if logp_BT.ndim != 2:
        raise ValueError(f"logp_BT must be [B, T], got shape {logp_BT.shape}")
    B, T = logp_BT.shape
    for name, x in (("old_logp_BT", old_logp_BT), ("mask_BT", mask_BT), ("ref_logp_BT", ref_logp_BT),
                    ("entropy_BT", entropy_BT)):
        if x is not None and jnp.shape(x) != (B, T):
            raise ValueError(f"{name} must have shape {(B, T)} like logp_BT, got {jnp.shape(x)}")
    advantages = jnp.asarray(advantages, jnp.float32)
    if advantages.shape not in ((B,), (B, T)):
        raise ValueError(f"advantages must be [B]={(B,)} or [B, T]={(B, T)}, got {advantages.shape}")

    m_BT = jnp.asarray(mask_BT, jnp.float32)
    on_BT = m_BT > 0
    n_B = jnp.sum(m_BT, axis=-1)
    adv_BT = jnp.broadcast_to(advantages[:, None] if advantages.ndim == 1 else advantages, (B, T))
    adv_BT = jnp.where(on_BT, adv_BT, 0.0)

    # Masked positions read 0 for every log-prob, so padding never yields inf or NaN.
    logp_BT = jnp.where(on_BT, logp_BT, 0.0)
    old_logp_BT = jnp.where(on_BT, jnp.asarray(old_logp_BT, jnp.float32), 0.0)
    log_ratio_BT = logp_BT - old_logp_BT
    if ratio_level == "sequence":
        seq_log_ratio_B = jnp.sum(log_ratio_BT * m_BT, axis=-1) / jnp.maximum(n_B, 1.0)
        log_ratio_BT = jnp.broadcast_to(seq_log_ratio_B[:, None], (B, T))
    ratio_BT = jnp.exp(jnp.clip(log_ratio_BT, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))

    clipped_BT = jnp.clip(ratio_BT, 1.0 - eps_low, 1.0 + eps_high)
    pg_BT = -jnp.minimum(ratio_BT * adv_BT, clipped_BT * adv_BT)
    if dual_clip is not None:
        pg_BT = jnp.where(adv_BT < 0, jnp.minimum(pg_BT, -dual_clip * adv_BT), pg_BT)
    loss_BT = pg_BT

    kl_BT = jnp.zeros_like(logp_BT)
    if ref_logp_BT is not None:
        kl_BT = kl_penalty(logp_BT, jnp.where(on_BT, jnp.asarray(ref_logp_BT, jnp.float32), 0.0), kl_kind)
        if kl_in == "loss" and kl_coef:
            loss_BT = loss_BT + kl_coef * kl_BT
    entropy_BT = (jnp.zeros_like(logp_BT) if entropy_BT is None
                  else jnp.where(on_BT, jnp.asarray(entropy_BT, jnp.float32), 0.0))
    if entropy_coef:
        loss_BT = loss_BT - entropy_coef * entropy_BT

    has_tokens_B = (n_B > 0).astype(jnp.float32)
    sequences = jnp.sum(has_tokens_B)

    def aggregate(x_BT):
        x_BT = jnp.where(on_BT, x_BT, 0.0) * m_BT
        if aggregation == "seq-mean-token-mean":
            return jnp.sum(jnp.sum(x_BT, axis=-1) / jnp.maximum(n_B, 1.0))
        return jnp.sum(x_BT)

    count = {"token-mean": jnp.sum(m_BT), "seq-mean-token-mean": sequences,
             "seq-sum-max-length": sequences * (max_len or 1.0)}[aggregation]

    sg = jax.lax.stop_gradient
    ratio_m, adv_m = sg(ratio_BT), sg(adv_BT)

    def token_sum(x_BT):
        return jnp.sum(jnp.where(on_BT, sg(x_BT), 0.0) * m_BT)

    clip_dual = jnp.zeros_like(ratio_m) if dual_clip is None else (adv_m < 0) & (ratio_m > dual_clip)
    return {
        "loss": aggregate(loss_BT),
        "pg_loss": sg(aggregate(pg_BT)),
        "count": count,
        "tokens": jnp.sum(m_BT),
        "sequences": sequences,
        "ratio": token_sum(ratio_m),
        "clip_low": token_sum(((adv_m < 0) & (ratio_m < 1.0 - eps_low)).astype(jnp.float32)),
        "clip_high": token_sum(((adv_m > 0) & (ratio_m > 1.0 + eps_high)).astype(jnp.float32)),
        "clip_dual": token_sum(jnp.asarray(clip_dual, jnp.float32)),
        "approx_kl": token_sum(kl_penalty(old_logp_BT, logp_BT, "k3")),
        "kl": token_sum(kl_BT),
        "entropy": token_sum(entropy_BT),
    }


def normalize_policy_sums(sums: dict):
    """Divides summed pieces once: ``loss = sums["loss"] / sums["count"]``; returns
    ``(loss, metrics)`` where ``pg_loss`` is over ``count`` like the loss, the token metrics
    (``ratio``, ``clip_low``, ``clip_high``, ``clip_dual``, ``approx_kl``, ``kl``, ``entropy``)
    are over ``tokens``, and ``count``, ``tokens``, ``sequences`` are kept as sums. A zero
    denominator gives 0, not NaN."""
    def div(x, d):
        return jnp.where(d > 0, x / jnp.where(d > 0, d, 1.0), 0.0)

    loss = div(sums["loss"], sums["count"])
    metrics = {"pg_loss": div(sums["pg_loss"], sums["count"])}
    metrics.update({k: div(sums[k], sums["tokens"]) for k in TOKEN_SUMS})
    metrics.update({k: sums[k] for k in ("count", "tokens", "sequences")})
    return loss, metrics


def policy_loss(logp_BT, old_logp_BT, advantages, mask_BT, **kwargs):
    """The normalised loss of one batch: ``normalize_policy_sums(policy_loss_sums(...))``,
    returning ``(loss, metrics)``. Keyword arguments as :func:`policy_loss_sums`."""
    return normalize_policy_sums(policy_loss_sums(logp_BT, old_logp_BT, advantages, mask_BT, **kwargs))
