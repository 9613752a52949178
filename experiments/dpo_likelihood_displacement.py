"""Likelihood displacement in DPO and CHES-selected training subsets (Razin et al. 2024,
"Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization", sec. 5).

CHES. With h_{x, y_<k} the hidden embedding the unembedding reads when the model predicts token
k of a response y to a prompt x (the last layer after the final norm), and the sums over a
response's tokens (EOS included),

    h(y) = sum_{k=1}^{|y|} h_{x, y_<k}
    CHES(x, y+, y-) = <h(y+), h(y-)> - ||h(y+)||^2

(:mod:`jaxlab.analysis.displacement`). The paper shows that DPO on the pairs with the highest
CHES lowers the log-probability of their preferred responses y+ (likelihood displacement),
and on the lowest-CHES pairs it does not.

Data. Prompts are additions "a+b=" (``jaxlab.tasks`` arithmetic, ``digits``-digit operands);
the preferred response y+ is the sum. The dispreferred y- is, for half of the pairs, a near
miss (the sum plus one: the same tokens up to the last digit or two) and for the other half the
sum's digits spelled as the letters a-j (other tokens). The model is never told which is which.

Protocol (per seed).
  1. A pool of ``n_pairs`` pairs and ``n_heldout`` other pairs (distinct problems).
  2. SFT of a from-scratch byte-level transformer on both responses of every pool pair
     (prompt -> y+ and prompt -> y-, masked cross-entropy), so both carry probability. The SFT
     model is the reference pi_ref and the start of every DPO run.
  3. CHES of every pool pair under pi_ref; ``jaxlab.analysis.ches_subsets.quantile_subsets``
     picks three arms of m = round(``fraction`` n_pairs) pairs: the highest-CHES quantile
     (top), the lowest (bottom), and m pairs drawn at random from the pool (random, the
     control of the same size).
  4. DPO (beta, lr, steps, batch: ``dpo``, ``dpo_optim``), one run per arm from pi_ref, each
     on its own m pairs only, with the same settings.
  5. The displacement of a pair is D = log pi_ref(y+ | x) - log pi_end(y+ | x) (nats, summed
     over y+'s tokens; > 0: the preferred response lost probability). It is measured on the
     pairs each arm trained on: that is the paper's quantity (the preferred log-probability
     change of the training samples), and the mechanism is a pair's own gradient pulling its
     y+ down with its y-. D on the held-out pairs (the same pairs for every arm) is reported
     too, as the spill-over of each arm's training onto other pairs; it is not in the claim.

Claim (version 2, fixed before any run of this design). DPO on the top-CHES quarter lowers
the preferred responses' log-probability more than DPO on the bottom-CHES quarter. Effect:
mean over seeds of [mean D over the top arm's pairs - mean D over the bottom arm's pairs],
nats; held when its 95% interval lies above 0, not held when it lies at or below 0.
Interval: ``two_sample_nested_bootstrap`` (seeds resampled, shared by the arms; within a
seed, each arm's pairs resampled on their own, as the two arms hold different pairs).
Preconditions (either failing makes the verdict inconclusive):
  - the reference learned both responses: in every seed the pool's mean per-token
    log pi_ref(y+ | x) and log pi_ref(y- | x) are above -1 nat (a uniform guess is
    -log 264 = -5.58);
  - DPO trained: in every arm of every seed the trained pairs' mean margin
    log pi(y+) - log pi(y-) rose (it is the DPO objective).
The random arm is reported (top - random and random - bottom, with the same interval) but not
part of the verdict. Version 1 was an older design (one joint DPO run; Spearman of CHES with
displacement); it never had a three-way verdict.

The training loop. Each seed trains four small models (SFT and three DPO arms) on a 1-2 layer
transformer; ``jaxlab.train.fit`` would compile every run's step anew (seconds each, longer
than these runs). Here one jitted SFT step and one jitted DPO step (the library's losses,
batches and optimizer: ``sft_loss_sums``, ``dpo_loss_sums``, ``PairSource``,
``make_optimizer``) serve every arm and seed of a process, on one device, without
checkpoints; a seed is the unit of resumption (a seed whose results.json exists is read back).

What it cannot tell. The top quarter is (almost) all near misses and the bottom quarter all
letter spellings, so the arms also differ in the kind of rejected response; the verdict says
that CHES finds the pairs that displace, not that CHES beats knowing the kind.

    jaxlab run experiments/dpo_likelihood_displacement.py --preset smoke --seeds 2 --publish   # tests
    jaxlab run experiments/dpo_likelihood_displacement.py --preset paper --seeds 5 --publish   # CPU

The paper preset runs on CPU: 17 minutes wall for 5 seeds on a 2-core machine shared with
other jobs; published in results/dpo_likelihood_displacement/paper/.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import stats, tasks
from jaxlab.analysis.ches_subsets import ARMS, quantile_subsets
from jaxlab.analysis.displacement import model_pair_ches
from jaxlab.data.chat import BATCH_KEYS, preference_batch
from jaxlab.models import transformer
from jaxlab.train.dpo import DPOConfig, PairSource, dpo_loss_sums, pair_sequence_logprobs, \
    with_reference_logprobs
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.sft import SFTConfig, sft_loss_sums

CLAIM = ("DPO on the highest-CHES quarter of the preference pairs lowers the log-probability of "
         "their preferred responses more than DPO on the lowest-CHES quarter (mean displacement "
         "log pi_ref(y+) - log pi(y+) on each arm's own pairs, top minus bottom, > 0 nats).")
CLAIM_VERSION = 2
REPORT_KEYS = ["displacement_top", "displacement_bottom", "displacement_random", "margin_gain_min",
               "ref_chosen_logp_per_token", "ref_rejected_logp_per_token", "near_share_top",
               "near_share_bottom"]
LETTERS = "abcdefghij"
REF_FLOOR = -1.0  # nats per token: the reference-fit precondition

DEFAULT_MODEL = transformer.Config(
    vocab_size=264, d_model=64, n_layers=2, n_heads=2, n_kv_heads=2, head_dim=32, mlp_dim=192,
    scan_unroll=2)


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "dpo_likelihood_displacement"
    model: transformer.Config = DEFAULT_MODEL
    digits: tuple[int, ...] = (1, 2)
    n_pairs: int = 512            # the pool that CHES ranks
    n_heldout: int = 128          # other problems, for the spill-over numbers
    fraction: float = 0.25        # each arm trains on round(fraction * n_pairs) pairs
    sft: SFTConfig = SFTConfig(batch_size=64, seq_len=16, loop=LoopConfig(steps=600))
    sft_optim: OptimConfig = OptimConfig(lr=3e-3, warmup_steps=30, weight_decay=0.0)
    dpo: DPOConfig = DPOConfig(loss_type="dpo", beta=0.1, batch_size=32, seq_len=16,
                               loop=LoopConfig(steps=100, eval_every=10))
    dpo_optim: OptimConfig = OptimConfig(lr=1e-3, warmup_steps=10, schedule="constant", weight_decay=0.0)
    seed: int = 0                 # problems, model init, the random arm (sft/dpo loop seeds: batch order)


def get_config() -> Config:
    return Config()


SMOKE_MODEL = {"model.d_model": 32, "model.n_layers": 1, "model.head_dim": 16, "model.mlp_dim": 96,
               "model.scan_unroll": 1}
PRESETS = {
    # the tests' size: minutes on 2 CPU cores for 2 seeds (its verdict may be inconclusive)
    "smoke": {**SMOKE_MODEL, "n_pairs": 128, "n_heldout": 32, "sft.batch_size": 32, "sft.loop.steps": 300,
              "dpo.batch_size": 16, "dpo.loop.steps": 40},
    # the fair setting: 512 trained pairs per arm, 512 held-out pairs; run with --seeds 5
    "paper": {"n_pairs": 2048, "n_heldout": 512, "sft.loop.steps": 1500, "dpo.loop.steps": 100},
}


def make_pairs(digits: tuple[int, ...], n: int, n_heldout: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(pool, held-out) preference pairs over distinct problems. Alternating near pairs
    (y- = the sum + 1) and far pairs (y- = the sum's digits as letters); each record names
    its ``kind``."""
    task = tasks.get("arithmetic", ops="+", train_difficulty=tuple(digits),
                     ood_difficulty=(max(digits) + 1,) * 2)
    splits = task.splits(seed, n, n_heldout, 0)

    def pairs(examples):
        out = []
        for i, e in enumerate(examples):
            near = i % 2 == 0
            rejected = str(int(e.answer) + 1) if near else "".join(LETTERS[int(c)] for c in e.answer)
            out.append({"prompt": e.prompt, "chosen": e.answer, "rejected": rejected,
                        "kind": "near" if near else "far"})
        return out

    return pairs(splits["train"]), pairs(splits["test"])


# ---------------------------------------------------------------- one jitted step per loss

def _update(params, opt_state, grads, optim: OptimConfig, steps: int):
    updates, opt_state = make_optimizer(optim, steps).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


@functools.partial(jax.jit, static_argnames=("model_cfg", "optim", "steps"))
def _sft_step(params, opt_state, batch, *, model_cfg, optim, steps):
    def loss_fn(p):
        sums = sft_loss_sums(p, batch, None, model_cfg=model_cfg)
        return sums["loss"] / jnp.maximum(sums["count"], 1.0)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    return (*_update(params, opt_state, grads, optim, steps), loss)


@functools.partial(jax.jit, static_argnames=("model_cfg", "optim", "steps", "loss_type", "hparams"))
def _dpo_step(params, opt_state, batch, *, model_cfg, optim, steps, loss_type, hparams):
    def loss_fn(p):
        sums = dpo_loss_sums(p, batch, None, model_cfg=model_cfg, loss_type=loss_type, **dict(hparams))
        return sums["loss"] / jnp.maximum(sums["count"], 1.0)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    return (*_update(params, opt_state, grads, optim, steps), loss)


_ches = jax.jit(model_pair_ches, static_argnums=(1,))


def train_sft_rows(cfg: Config, pool: list[dict]) -> dict:
    """SFT from a fresh model on prompt -> y+ and prompt -> y- of every pool pair (one
    example per row), ``cfg.sft.loop.steps`` steps of ``cfg.sft.batch_size`` rows drawn as
    epochs of a seeded permutation."""
    stacked = preference_batch(pool, seq_len=cfg.sft.seq_len)
    rows = {k: np.concatenate([stacked["chosen"][k], stacked["rejected"][k]]) for k in BATCH_KEYS}
    n, bs, steps = len(rows["inputs"]), cfg.sft.batch_size, cfg.sft.loop.steps
    params = transformer.init(cfg.model, jax.random.key(cfg.seed))
    opt_state = make_optimizer(cfg.sft_optim, steps).init(params)
    rng = np.random.default_rng(cfg.sft.loop.seed)
    order = np.concatenate([rng.permutation(n) for _ in range(-(-steps * bs // n))])
    for step in range(steps):
        idx = order[step * bs:(step + 1) * bs]
        params, opt_state, _ = _sft_step(params, opt_state, {k: v[idx] for k, v in rows.items()},
                                         model_cfg=cfg.model, optim=cfg.sft_optim, steps=steps)
    return params


def train_dpo_arm(cfg: Config, ref_params: dict, pairs: list[dict]) -> tuple[dict, list[dict]]:
    """DPO from ``ref_params`` (also the reference) on ``pairs``; returns the final params and
    the curve of the pairs' mean log-prob changes every ``eval_every`` steps."""
    pairs = with_reference_logprobs(pairs, ref_params, cfg.model, seq_len=cfg.dpo.seq_len)
    ref_c = np.array([p["ref_chosen"] for p in pairs])
    ref_r = np.array([p["ref_rejected"] for p in pairs])
    source = PairSource(pairs, batch_size=cfg.dpo.batch_size, seq_len=cfg.dpo.seq_len, seed=cfg.dpo.loop.seed)
    steps = cfg.dpo.loop.steps
    params, opt_state = ref_params, make_optimizer(cfg.dpo_optim, steps).init(ref_params)
    hparams = tuple(sorted(cfg.dpo.hparams().items()))
    curve = [{"step": 0, "chosen": 0.0, "rejected": 0.0}]
    for step in range(1, steps + 1):
        batch, _ = source.next(None, step)
        params, opt_state, _ = _dpo_step(params, opt_state, batch, model_cfg=cfg.model, optim=cfg.dpo_optim,
                                         steps=steps, loss_type=cfg.dpo.loss_type, hparams=hparams)
        if step % cfg.dpo.loop.eval_every == 0 or step == steps:
            lp = pair_sequence_logprobs(params, cfg.model, pairs, seq_len=cfg.dpo.seq_len)
            curve.append({"step": step, "chosen": float((lp["chosen"] - ref_c).mean()),
                          "rejected": float((lp["rejected"] - ref_r).mean())})
    return params, curve


# ---------------------------------------------------------------- one seed

def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    done = workdir / "results.json"  # written by the runner when this seed finished
    if done.exists():
        return json.loads(done.read_text())
    pool, heldout = make_pairs(cfg.digits, cfg.n_pairs, cfg.n_heldout, cfg.seed)
    ref = train_sft_rows(cfg, pool)
    rows = preference_batch(pool, seq_len=cfg.dpo.seq_len)
    ches = np.asarray(_ches(ref, cfg.model, rows["chosen"], rows["rejected"]), np.float64)
    arms = quantile_subsets(ches, cfg.fraction, seed=cfg.seed)
    start = pair_sequence_logprobs(ref, cfg.model, pool, seq_len=cfg.dpo.seq_len)
    start_h = pair_sequence_logprobs(ref, cfg.model, heldout, seq_len=cfg.dpo.seq_len)
    kinds = np.array([p["kind"] for p in pool])
    out = {
        "ref_chosen_logp_per_token": float((start["chosen"] / start["chosen_count"]).mean()),
        "ref_rejected_logp_per_token": float((start["rejected"] / start["rejected_count"]).mean()),
        "ref_chosen_logp": float(start["chosen"].mean()),
        "ches_near_mean": float(ches[kinds == "near"].mean()),
        "ches_far_mean": float(ches[kinds == "far"].mean()),
        "n_pairs": len(pool), "n_heldout": len(heldout), "arm_size": int(arms["top"].size),
    }
    curves = {}
    iterator = ARMS
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(ARMS, desc="DPO arms", unit="arm")
    for arm in iterator:
        idx = arms[arm]
        params, curves[arm] = train_dpo_arm(cfg, ref, [pool[i] for i in idx])
        end = pair_sequence_logprobs(params, cfg.model, [pool[i] for i in idx], seq_len=cfg.dpo.seq_len)
        end_h = pair_sequence_logprobs(params, cfg.model, heldout, seq_len=cfg.dpo.seq_len)
        d_P = start["chosen"][idx] - end["chosen"]
        margin_gain = ((end["chosen"] - end["rejected"]) - (start["chosen"][idx] - start["rejected"][idx])).mean()
        out.update({
            f"displacement_{arm}": float(d_P.mean()),
            f"rejected_drop_{arm}": float((start["rejected"][idx] - end["rejected"]).mean()),
            f"margin_gain_{arm}": float(margin_gain),
            f"heldout_displacement_{arm}": float((start_h["chosen"] - end_h["chosen"]).mean()),
            f"ches_{arm}": float(ches[idx].mean()),
            f"near_share_{arm}": float(np.mean(kinds[idx] == "near")),
            f"pair_displacement_{arm}": [float(v) for v in d_P],
            f"heldout_pair_displacement_{arm}": [float(v) for v in start_h["chosen"] - end_h["chosen"]],
            f"curve_{arm}": curves[arm],
        })
    out["margin_gain_min"] = min(out[f"margin_gain_{a}"] for a in ARMS)
    _plot_seed(ches, kinds, arms, curves, workdir / "displacement.png")
    out["report"] = _seed_report(cfg, out)
    return out


def _seed_report(cfg: Config, r: dict) -> str:
    lines = [
        (f"{r['n_pairs']} pool pairs (half near misses, half letter spellings), SFT {cfg.sft.loop.steps} steps "
         f"on both responses; reference mean per-token log pi(y+) {r['ref_chosen_logp_per_token']:.3f}, "
         f"log pi(y-) {r['ref_rejected_logp_per_token']:.3f}. CHES: near pairs {r['ches_near_mean']:.1f}, "
         f"far pairs {r['ches_far_mean']:.1f}. Each arm: {r['arm_size']} pairs, {cfg.dpo.loss_type.upper()} "
         f"beta {cfg.dpo.beta}, lr {cfg.dpo_optim.lr}, {cfg.dpo.loop.steps} steps of {cfg.dpo.batch_size} pairs."),
        "",
        "| arm | mean CHES | near share | displacement of y+ (trained) | drop of log pi(y-) | margin gain | "
        "displacement of y+ (held-out) |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in ARMS:
        lines.append(f"| {a} | {r[f'ches_{a}']:.1f} | {r[f'near_share_{a}']:.2f} | {r[f'displacement_{a}']:+.3f} | "
                     f"{r[f'rejected_drop_{a}']:+.3f} | {r[f'margin_gain_{a}']:+.3f} | "
                     f"{r[f'heldout_displacement_{a}']:+.3f} |")
    lines += ["", "Displacement = log pi_ref(y+) - log pi_end(y+), nats (> 0: y+ lost probability).", "",
              "![CHES and displacement](displacement.png)"]
    return "\n".join(lines)


def _plot_seed(ches, kinds, arms, curves, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    ax = axes[0]
    bins = np.linspace(ches.min(), ches.max(), 30)
    for kind, color in (("near", "#1f4e79"), ("far", "#c0504d")):
        ax.hist(ches[kinds == kind], bins=bins, alpha=0.6, color=color, label=f"{kind} pairs")
    for arm, style in (("top", "--"), ("bottom", ":")):
        edge = ches[arms[arm]].min() if arm == "top" else ches[arms[arm]].max()
        ax.axvline(edge, color="black", linestyle=style, label=f"{arm} arm edge")
    ax.set_xlabel("CHES under the reference")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    colors = {"top": "#b03a2e", "bottom": "#1f77b4", "random": "#7f7f7f"}
    for ax, key, title in ((axes[1], "chosen", "log pi(y+) - log pi_ref(y+)"),
                           (axes[2], "rejected", "log pi(y-) - log pi_ref(y-)")):
        for arm in ARMS:
            ax.plot([c["step"] for c in curves[arm]], [c[key] for c in curves[arm]], marker="o", ms=3,
                    color=colors[arm], label=f"{arm} arm")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("DPO step")
        ax.set_title(f"{title}, mean over the arm's pairs", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- the claim

def arm_interval(per_seed: list[dict], a: str, b: str, key: str = "pair_displacement") -> dict:
    """Mean displacement of arm ``a`` minus arm ``b`` over seeds with its nested interval."""
    return stats.two_sample_nested_bootstrap([r[f"{key}_{a}"] for r in per_seed], [r[f"{key}_{b}"] for r in per_seed])


def claim_verdict(runs: dict) -> stats.Verdict:
    (per_seed,) = runs.values()
    r = arm_interval(per_seed, "top", "bottom")
    worst_ref = min(min(s["ref_chosen_logp_per_token"], s["ref_rejected_logp_per_token"]) for s in per_seed)
    worst_gain = min(s["margin_gain_min"] for s in per_seed)
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0, direction="greater",
        test=(f"two-sample nested bootstrap over {r['seeds']} seeds x {r['sizes_a'][0]} pairs per arm "
              "(top minus bottom CHES quarter)"),
        preconditions=[
            ("the reference learned both responses", worst_ref > REF_FLOOR,
             f"lowest seed mean per-token log pi_ref(y) {worst_ref:.3f} vs {REF_FLOOR}"),
            ("DPO trained in every arm", worst_gain > 0.0,
             f"smallest mean margin gain {worst_gain:+.3f} nats (arms x seeds)"),
        ])


def summarize(runs: dict, workdir: Path) -> str:
    (per_seed,) = runs.values()
    lines = ["## Arms", "",
             "Mean displacement of y+ per arm and seed (nats; trained pairs); differences with their "
             "nested bootstrap 95% intervals (only top - bottom is the claim).", "",
             "| comparison | trained pairs | held-out pairs |", "|---|---|---|"]
    for a, b in (("top", "bottom"), ("top", "random"), ("random", "bottom")):
        t = arm_interval(per_seed, a, b)
        h = stats.paired_bootstrap_interval([s[f"heldout_pair_displacement_{a}"] for s in per_seed],
                                            [s[f"heldout_pair_displacement_{b}"] for s in per_seed])
        lines.append(f"| {a} - {b} | {t['effect']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}] | "
                     f"{h['effect']:+.3f} [{h['low']:+.3f}, {h['high']:+.3f}] (paired) |")
    _plot_arms(per_seed, workdir / "arms.png")
    lines += ["", "![arms](arms.png)", ""]
    return "\n".join(lines)


def _plot_arms(per_seed: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in ((axes[0], "displacement", "trained pairs"),
                           (axes[1], "heldout_displacement", "held-out pairs")):
        for i, arm in enumerate(ARMS):
            values = [s[f"{key}_{arm}"] for s in per_seed]
            ax.bar(i, np.mean(values), color="#cfd8e3", width=0.6)
            ax.scatter([i] * len(values), values, color="#1f4e79", zorder=3, s=18)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(ARMS)), [f"{a} CHES" if a != "random" else a for a in ARMS])
        ax.set_ylabel("log pi_ref(y+) - log pi(y+)")
        ax.set_title(f"displacement of y+, {title}: seeds (dots), mean (bars)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
