"""Helpers of the adapter comparisons (SingLoRA, FourierFT and EVA against LoRA): the shared
starting model, a FourierFT size matched to a LoRA budget, smoothed loss curves, and the
spread of accuracy over a learning-rate sweep with its interval.

    model_cfg, base = study_base("quickstart", base_dir="", base_steps=600, workdir=w, seed=0)
    n = matching_frequencies(base, AdapterSpec(method="lora", rank=2, targets="attn"))
    smooth_S = trailing_mean_S(arm.losses_S, window=10)
    spread = sweep_spread_difference(lora_SLP, singlora_SLP)       # range(LoRA) - range(other)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxlab.peft.adapters import AdapterError, AdapterSpec, _layout, attach, count_trainable, targeted


def study_base(model: str, *, base_dir: str, base_steps: int, workdir: str | Path, seed: int):
    """(model_cfg, params) of a study's starting model: ``model`` "tiny-random" (the smoke
    presets' random 1-layer byte model, initialised from ``seed``), or a preset of
    :mod:`configs.models` pre-trained for ``base_steps`` steps on the embedded corpus by
    :func:`jaxlab.train.loop.pretrain_byte_model` (seed 0) in ``base_dir`` (empty:
    ``workdir/base``): a finished base is only read, so concurrent runs can share it; otherwise
    the pre-training runs or resumes there."""
    if model == "tiny-random":
        from jaxlab.interop.models import load_experiment_model

        model_cfg, params, _ = load_experiment_model(model, seed)
        return model_cfg, params
    from configs import models
    from jaxlab.train.loop import pretrain_byte_model

    if base_steps < 1:
        raise ValueError(f"base_steps must be >= 1, got {base_steps}")
    model_cfg = models.get(model)
    where = Path(base_dir) if base_dir else Path(workdir) / "base"
    return model_cfg, pretrain_byte_model(where, model_cfg, steps=base_steps, seed=0, progress=False)


def train_val_test(task, seed: int, n_train: int, n_val: int, n_test: int) -> tuple[list, list, list]:
    """(train, validation, test) problems of ``task`` for ``seed``: validation is the tail of a
    train split of n_train + n_val problems, so no two of the three share a problem
    (:meth:`jaxlab.tasks.base.Task.splits`)."""
    s = task.splits(seed, n_train + n_val, n_test, 0)
    return s["train"][:n_train], s["train"][n_train:], s["test"]


def sweep_arm(workdir: str | Path, base: dict, model_cfg, task, train, test, **kwargs) -> tuple[np.ndarray, float]:
    """(correct_P, final train loss) of one arm of a learning-rate sweep
    (:func:`jaxlab.peft.study.finetune_arm` with ``kwargs``). An arm whose loss turns
    non-finite has diverged: it scores 0 on every problem, its loss is NaN, and a
    ``diverged.json`` in its workdir keeps a rerun from training it again."""
    import json

    from jaxlab.peft.study import finetune_arm
    from jaxlab.train.fit import NonFiniteLossError

    marker = Path(workdir) / "diverged.json"
    if marker.exists():
        return np.zeros(len(test), np.int8), float("nan")
    try:
        arm = finetune_arm(workdir, base, model_cfg, task, train, test, **kwargs)
    except NonFiniteLossError as e:
        marker.write_text(json.dumps({"error": str(e)}) + "\n")
        return np.zeros(len(test), np.int8), float("nan")
    return arm.correct_P, float(arm.losses_S[-1])


def matching_frequencies(params: dict, lora: AdapterSpec) -> int:
    """FourierFT's ``n_frequencies`` for the same trainable count as the LoRA ``lora`` on the
    same targets: with K adapted matrices (every layer of every targeted kernel) and LoRA's
    count C = sum_k r (n_k + m_k), n = round(C / K) (each matrix of FourierFT holds n
    coefficients; an error if some matrix has fewer than n entries)."""
    if lora.method != "lora":
        raise AdapterError(f"matching_frequencies needs a LoRA spec, got method {lora.method!r}")
    kernels = targeted(params, lora)
    count = 0
    matrices = 0
    smallest = None
    for path, w in kernels.items():
        lead, n, m = _layout(path, w)
        layers = int(np.prod(lead)) if lead else 1
        count += layers * lora.rank * (n + m)
        matrices += layers
        smallest = n * m if smallest is None else min(smallest, n * m)
    freq = int(round(count / matrices))
    if freq > smallest:
        raise AdapterError(f"{freq} coefficients per matrix do not fit the smallest targeted matrix "
                           f"({smallest} entries)")
    return freq


def trainable_count(params: dict, spec: AdapterSpec) -> int:
    """The trainable scalars of adapter ``spec`` on ``params`` (LoRA, DoRA, SingLoRA, FourierFT)."""
    import jax

    return count_trainable(attach(params, spec, jax.random.key(0))[1])


def trailing_mean_S(values_S, window: int) -> np.ndarray:
    """out[t] = mean(values[max(0, t - window + 1) : t + 1]): each logged value averaged with
    up to ``window`` - 1 values before it (a train-loss curve without the batch noise).
    [4, 2, 6, 0] with window 2 -> [4, 3, 4, 3]."""
    x = np.asarray(values_S, np.float64).reshape(-1)
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    if x.size == 0:
        raise ValueError("trailing_mean_S needs at least one value")
    c = np.concatenate([[0.0], np.cumsum(x)])
    t = np.arange(x.size)
    lo = np.maximum(0, t - window + 1)
    return (c[t + 1] - c[lo]) / (t + 1 - lo)


def sweep_spread(acc_SLP) -> float:
    """The spread of accuracy over a learning-rate sweep: max_l acc_l - min_l acc_l, acc_l the
    mean over seeds and problems of ``acc_SLP`` [seeds, rates, problems]."""
    a = np.asarray(acc_SLP, np.float64)
    if a.ndim != 3 or a.size == 0:
        raise ValueError(f"sweep_spread needs [seeds, rates, problems] values, got shape {a.shape}")
    per_rate = a.mean(axis=(0, 2))
    return float(per_rate.max() - per_rate.min())


def sweep_spread_difference(a_SLP, b_SLP, confidence: float = 0.95, *, n_boot: int = 2000,
                            seed: int = 0) -> dict:
    """spread(a) - spread(b) (:func:`sweep_spread`; positive: b varies less over the rates)
    with a nested percentile bootstrap: each replicate draws S seeds with replacement and, in
    each drawn seed, P problems with replacement, the same draws for every rate and both arms
    (they answered the same problems of that seed), and recomputes both spreads. Returns
    ``{"effect", "low", "high", "spread_a", "spread_b", "seeds", "problems"}`` (the interval
    widened, if needed, to hold the effect)."""
    a = np.asarray(a_SLP, np.float64)
    b = np.asarray(b_SLP, np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.size == 0:
        raise ValueError(f"need two arrays of one shape [seeds, rates, problems], got {a.shape} and {b.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    S, _, P = a.shape
    rng = np.random.default_rng(seed)
    seeds_RS = rng.integers(0, S, size=(n_boot, S))
    probs_RSP = rng.integers(0, P, size=(n_boot, S, P))

    def spreads_R(x_SLP):
        x_RSLP = x_SLP[seeds_RS[:, :, None, None], np.arange(x_SLP.shape[1])[None, None, :, None],
                       probs_RSP[:, :, None, :]]
        per_rate_RL = x_RSLP.mean(axis=(1, 3))
        return per_rate_RL.max(axis=1) - per_rate_RL.min(axis=1)

    diffs_R = spreads_R(a) - spreads_R(b)
    alpha = 1.0 - confidence
    low, high = np.quantile(diffs_R, [alpha / 2, 1 - alpha / 2])
    sa, sb = sweep_spread(a), sweep_spread(b)
    effect = sa - sb
    return {"effect": effect, "low": float(min(low, effect)), "high": float(max(high, effect)),
            "spread_a": sa, "spread_b": sb, "seeds": S, "problems": P}
