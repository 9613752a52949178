"""The hidden attention of a trained Mamba shows the induction pattern (Ali, Zimerman and Wolf
2024, "The Hidden Attention of Mamba Models"), beside a transformer head.

Task (:func:`jaxlab.tasks.recall.induction`): ``half`` random tokens repeated once; in the
second half each next token is the one after the current token's previous occurrence. A Mamba
(:mod:`jaxlab.models.mamba`) and a transformer of about the same size train on fresh batches
(loss on the second half). Then, on test sequences, the Mamba's hidden attention alpha[l, b, e,
t, s] (:mod:`jaxlab.analysis.hidden_attention`) and the transformer's attention probabilities
(capture point ``attn_probs``) are scored for the induction pattern:

    mass(t)  = |a[t, t - half + 1]| / sum_{s <= t} |a[t, s]|     (the position after the previous
                                                                 occurrence of x_t)
    score    = mean over second-half positions t (half <= t <= 2 half - 2) of mass(t),
               divided by the uniform baseline mean_t 1 / (t + 1)

per Mamba channel (layer l, channel e) or transformer head. The channel (head) is chosen as the
best on a separate selection batch, then scored per test sequence, so the choice does not
inflate the test score.

Claim (fixed before any run, version 1): the trained Mamba's best channel puts more than 5
times the uniform mass on the induction position. Effect: the mean over seeds and test
sequences of its score; held when the 95% interval (nested bootstrap over seeds and test
sequences) lies above 5, not held when at or below 5. Preconditions: the Mamba solves the task
(second-half accuracy >= 0.9, so it has an induction mechanism to find), and the untrained
Mamba's best channel, chosen the same way, scores below 5 (the score does not flag an
untrained model). The transformer's best head is reported and plotted beside it.

    jaxlab run experiments/mamba_hidden_attention.py --preset smoke --seeds 2
    jaxlab run experiments/mamba_hidden_attention.py --preset paper --seeds 2 --publish   # ~20 min, 2 loaded cores
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import stats
from jaxlab.analysis.hidden_attention import model_hidden_attention
from jaxlab.models import mamba, transformer
from jaxlab.tasks import recall

CLAIM = ("On an induction task, the trained Mamba's hidden attention shows the induction pattern: its best "
         "channel puts more than 5 times the uniform mass on the position after the current token's previous "
         "occurrence.")
CLAIM_VERSION = 1
REPORT_KEYS = ["mamba_accuracy", "mamba_score", "mamba_init_score", "transformer_accuracy", "transformer_score"]
THRESHOLD = 5.0
SOLVED = 0.9
PRESETS = {
    "smoke": {"half": 8, "n_symbols": 8, "steps": 30, "n_test": 16, "n_select": 16},
    "paper": {"half": 16, "n_symbols": 16, "steps": 1000, "lr": 1e-2, "n_test": 128, "n_select": 64},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "mamba_hidden_attention"
    half: int = 16
    n_symbols: int = 16
    d_model: int = 32
    n_layers: int = 2
    d_state: int = 8
    n_heads: int = 2
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-2
    n_test: int = 128
    n_select: int = 64
    seed: int = 0

    def __post_init__(self):
        if self.half < 2:
            raise ValueError(f"half must be >= 2, got {self.half}")
        for key in ("steps", "batch_size", "n_test", "n_select", "n_symbols"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")

    def mamba(self) -> mamba.Config:
        return mamba.Config(vocab_size=self.n_symbols, d_model=self.d_model, n_layers=self.n_layers,
                            d_state=self.d_state)

    def transformer(self) -> transformer.Config:
        return transformer.Config(vocab_size=self.n_symbols, d_model=self.d_model, n_layers=self.n_layers,
                                  n_heads=self.n_heads, n_kv_heads=self.n_heads, head_dim=self.d_model // self.n_heads,
                                  mlp_dim=2 * self.d_model)


def get_config() -> Config:
    return Config()


def induction_mass(a_XBTS: jax.Array, half: int) -> jax.Array:
    """[X, B]: per map x (a channel or a head) and row b, the mean over second-half positions
    t of |a[t, t - half + 1]| / sum_s |a[t, s]| divided by the uniform mean of 1 / (t + 1)."""
    a = jnp.abs(a_XBTS.astype(jnp.float32))
    t = jnp.arange(half, 2 * half - 1)
    mass = a[:, :, t, t - half + 1] / jnp.maximum(jnp.sum(a[:, :, t, :], axis=-1), 1e-30)
    return jnp.mean(mass, axis=-1) / jnp.mean(1.0 / (t + 1.0))


def _mamba_maps(params, tokens_BT, cfg: mamba.Config):
    alpha_LBETS = model_hidden_attention(params, tokens_BT, cfg)
    L, B, E, T, _ = alpha_LBETS.shape
    return jnp.transpose(alpha_LBETS, (0, 2, 1, 3, 4)).reshape(L * E, B, T, T)  # map x = l * E + e


def _transformer_maps(params, tokens_BT, cfg: transformer.Config):
    _, captured = transformer.apply(params, tokens_BT, cfg, capture=("attn_probs",))
    probs_LBHTS = captured["attn_probs"]
    L, B, H, T, S = probs_LBHTS.shape
    return jnp.transpose(probs_LBHTS, (0, 2, 1, 3, 4)).reshape(L * H, B, T, S)  # map x = l * H + h


def _scores(maps_fn, params, select, test, half):
    """(the best map on the selection batch, its per-sequence test scores, its mean test map)."""
    best = int(jnp.argmax(jnp.mean(induction_mass(maps_fn(params, select), half), axis=1)))
    maps = maps_fn(params, test)[best]
    return best, np.asarray(induction_mass(maps[None], half)[0]), np.asarray(jnp.mean(jnp.abs(maps), axis=0))


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    train_rng, test_rng = np.random.default_rng([cfg.seed, 1]), np.random.default_rng([cfg.seed, 2])
    batch = lambda rng, n: recall.induction(rng, n, half=cfg.half, n_symbols=cfg.n_symbols)
    select, test = batch(test_rng, cfg.n_select), batch(test_rng, cfg.n_test)
    out, maps = {}, {}
    for kind, model_cfg, module, maps_fn in (("mamba", cfg.mamba(), mamba, _mamba_maps),
                                             ("transformer", cfg.transformer(), transformer, _transformer_maps)):
        apply_fn = functools.partial(module.apply, cfg=model_cfg)
        init = module.init(model_cfg, jax.random.key(cfg.seed))
        start = time.perf_counter()
        params, losses = recall.fit(apply_fn, init, lambda: batch(train_rng, cfg.batch_size), steps=cfg.steps,
                                    lr=cfg.lr, progress=progress, desc=kind)
        out[f"{kind}_train_s"] = time.perf_counter() - start
        out[f"{kind}_params"] = module.count_params(params)
        out[f"{kind}_final_loss"] = float(np.mean(losses[-20:]))
        acc = recall.sequence_accuracy(apply_fn(params, test["inputs"]), test)
        out[f"{kind}_accuracy"] = float(jnp.mean(acc))
        fn = jax.jit(functools.partial(maps_fn, cfg=model_cfg))
        best, per_seq, mean_map = _scores(fn, params, jnp.asarray(select["inputs"]), jnp.asarray(test["inputs"]), cfg.half)
        out[f"{kind}_best_map"] = best
        out[f"{kind}_per_sequence_score"] = per_seq.tolist()
        out[f"{kind}_score"] = float(per_seq.mean())
        maps[kind] = mean_map
        if kind == "mamba":
            _, init_seq, _ = _scores(fn, init, jnp.asarray(select["inputs"]), jnp.asarray(test["inputs"]), cfg.half)
            out["mamba_init_score"] = float(init_seq.mean())
    _plot(maps, out, cfg, workdir / "hidden_attention.png")
    return {**out, "report": "![hidden attention beside a transformer head](hidden_attention.png)"}


def _plot(maps: dict, out: dict, cfg: Config, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    E = cfg.mamba().d_inner
    titles = {"mamba": f"Mamba layer {out['mamba_best_map'] // E}, channel {out['mamba_best_map'] % E}: |alpha|",
              "transformer": f"transformer layer {out['transformer_best_map'] // cfg.n_heads}, "
                             f"head {out['transformer_best_map'] % cfg.n_heads}"}
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, kind in zip(axes, ("mamba", "transformer")):
        m = maps[kind] / np.maximum(maps[kind].sum(axis=1, keepdims=True), 1e-30)  # each row sums to 1
        ax.imshow(m, cmap="viridis")
        T = m.shape[0]
        t = np.arange(cfg.half, T)
        ax.plot(t - cfg.half + 1, t, "r.", ms=3, label="after previous occurrence")
        ax.set_title(f"{titles[kind]}\nscore {out[f'{kind}_score']:.1f}x uniform", fontsize=8)
        ax.set_xlabel("source position s")
        ax.set_ylabel("query position t")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    score_SP = np.asarray([r["mamba_per_sequence_score"] for r in per_seed])
    r = stats.paired_bootstrap_interval(score_SP, np.zeros_like(score_SP))
    acc = float(np.mean([run["mamba_accuracy"] for run in per_seed]))
    init = float(np.mean([run["mamba_init_score"] for run in per_seed]))
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=THRESHOLD,
        test=f"nested bootstrap of the best channel's induction score over {r['seeds']} seeds x {r['problems']} sequences",
        preconditions=[
            ("the Mamba solves the task", acc >= SOLVED, f"second-half accuracy {acc:.3f} (needs >= {SOLVED})"),
            ("the untrained Mamba scores below the threshold", init < THRESHOLD,
             f"untrained best channel {init:.2f}x uniform (needs < {THRESHOLD})"),
        ])
