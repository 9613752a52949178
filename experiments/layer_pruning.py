"""Layer pruning by angular distance (Gromov et al. 2024, "The Unreasonable Ineffectiveness of
the Deeper Layers").

For a pretrained model, d(l, n) = arccos(cos(x^l, x^(l+n))) / pi at the last token of each
sequence, averaged over held-out text (jaxlab.analysis.layers). For each n the block
l*(n) = argmin_l d(l, n) is removed, and the held-out loss of the pruned model is compared with
removing the last n layers and with removing a random block of n layers.

Claim (fixed before any run, version 1): over n = 1 .. L/4, removing the angular-distance
block raises the held-out loss less than removing the last n layers. Effect: the mean over
n and seeds of loss(last n removed) - loss(angular block removed), nats per token; held when
its 95% interval (nested paired bootstrap over seeds and n) lies above 0. Precondition: the
unpruned model is a language model at all (its loss is below log V, the uniform guess).
Seeds change the held-out sequences that d(l, n) and the losses are measured on, and the
random blocks.

    jaxlab run experiments/layer_pruning.py --preset smoke --seeds 2     # a tiny random model (tests)
    jaxlab run experiments/layer_pruning.py --preset paper --seeds 3 --publish   # SmolLM2-135M-Instruct
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import stats
from jaxlab.analysis import layers
from jaxlab.data.corpus import sample_token_rows

CLAIM = ("Removing the block of n layers with the smallest angular distance raises held-out loss "
         "less than removing the last n layers (n = 1 .. L/4).")
CLAIM_VERSION = 1
REPORT_KEYS = ["base_loss", "mean_gain_over_last", "mean_depth_of_chosen_block"]
PRESETS = {
    "smoke": {"model": "tiny-random", "n_sequences": 8, "seq_len": 48, "max_fraction": 0.5},
    "paper": {"model": "smollm2-135m-instruct", "n_sequences": 16, "seq_len": 128, "max_fraction": 0.25},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "layer_pruning"
    model: str = "smollm2-135m-instruct"  # a model name or path jaxlab.interop.models.load_model takes
    n_sequences: int = 32
    seq_len: int = 256
    max_fraction: float = 0.25           # n runs over 1 .. floor(max_fraction * L)
    random_blocks: int = 3               # random blocks per n
    seed: int = 0


def get_config():
    return Config()


def _model(cfg: Config):
    from jaxlab.models import transformer

    if cfg.model == "tiny-random":
        from jaxlab.data import ByteTokenizer
        mcfg = transformer.Config(vocab_size=259, d_model=64, n_layers=8, n_heads=4, n_kv_heads=2, head_dim=16,
                                  mlp_dim=128)
        return mcfg, transformer.init(mcfg, jax.random.key(0)), ByteTokenizer()
    from jaxlab.interop.models import load_model
    return load_model(cfg.model)


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    from jaxlab.models import transformer

    mcfg, params, tokenizer = _model(cfg)
    tokens = jnp.asarray(sample_token_rows(tokenizer, cfg.n_sequences, cfg.seq_len, cfg.seed))
    L = mcfg.n_layers

    def loss(p, c):
        logits = jax.jit(transformer.apply, static_argnums=2)(p, tokens[:, :-1], c)
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
        return float(-jnp.take_along_axis(logp, tokens[:, 1:, None], -1).mean())

    _, hidden = jax.jit(lambda p: transformer.apply(p, tokens, mcfg, return_hidden=True))(params)
    d = layers.angular_distance_matrix(np.asarray(hidden[:, :, -1]))
    rng = np.random.default_rng(cfg.seed + 1)
    ns = list(range(1, max(1, int(cfg.max_fraction * L)) + 1))
    rows = []
    iterator = ns
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(ns, desc="blocks", unit="n")
    for n in iterator:
        pruned_cfg = dataclasses.replace(mcfg, n_layers=L - n)
        best = layers.block_to_drop(d, n)
        randoms = rng.integers(0, L - n + 1, size=cfg.random_blocks)
        rows.append({"n": n, "angular_block": best,
                     "angular": loss(layers.drop_layers(params, best, n), pruned_cfg),
                     "last": loss(layers.drop_layers(params, L - n, n), pruned_cfg),
                     "random": float(np.mean([loss(layers.drop_layers(params, int(r), n), pruned_cfg) for r in randoms]))})
    base = loss(params, mcfg)
    _plot(d, rows, base, workdir)
    return {"base_loss": base, "log_vocab": math.log(mcfg.vocab_size), "n_layers": L, "rows": rows,
            "mean_gain_over_last": float(np.mean([r["last"] - r["angular"] for r in rows])),
            "mean_depth_of_chosen_block": float(np.mean([(r["angular_block"] + r["n"] / 2) / L for r in rows])),
            "report": "![angular distance and pruned loss](pruning.png)"}


def _plot(d: np.ndarray, rows: list[dict], base: float, workdir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    im = a.imshow(d.T, origin="lower", aspect="auto", cmap="viridis")
    a.set_xlabel("first layer removed, l")
    a.set_ylabel("block size, n - 1")
    a.set_title("angular distance d(l, n)")
    fig.colorbar(im, ax=a)
    ns = [r["n"] for r in rows]
    for key, label in (("angular", "argmin d(l, n)"), ("last", "last n layers"), ("random", "random block")):
        b.plot(ns, [r[key] for r in rows], marker="o", label=label)
    b.axhline(base, color="grey", linestyle="--", label="no layer removed")
    b.set_xlabel("layers removed, n")
    b.set_ylabel("held-out loss (nats / token)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(workdir / "pruning.png", dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    last = np.array([[r["last"] for r in run["rows"]] for run in per_seed])
    angular = np.array([[r["angular"] for r in run["rows"]] for run in per_seed])
    r = stats.paired_bootstrap_interval(last, angular)
    lm = all(run["base_loss"] < run["log_vocab"] for run in per_seed)
    worst = max(run["base_loss"] for run in per_seed)
    return stats.decide(r["effect"], r["low"], r["high"], threshold=0.0,
                        test=f"nested paired bootstrap over {r['seeds']} seeds x {r['problems']} block sizes",
                        preconditions=[("the model predicts text", lm,
                                        f"unpruned loss {worst:.3f} vs uniform {per_seed[0]['log_vocab']:.3f}")])
