"""L-Mul in attention (Luo and Sun 2024, "Addition Is All You Need: For Energy-Efficient
Language Models").

L-Mul approximates a float product with additions only (jaxlab.analysis.lmul):

    L-Mul(x, y) = (1 + x_m + y_m + 2^(-l(m))) 2^(x_e + y_e),   l(m) = m (m <= 3), 3 (m = 4), 4 (m > 4)

for m-bit mantissas x_m, y_m (the x_m y_m term of the exact mantissa product replaced by a
constant). The paper finds 3-bit L-Mul more precise than float8 e5m2 and 4-bit L-Mul about as
precise as e4m3, and that L-Mul in the attention mechanism costs next to no accuracy.

Two measurements:

1. Relative error |approx - xy| / |xy| of one product, L-Mul with m = 2..5 against float8
   multiplication round8(round8(x) round8(y)), on random normal pairs and on real attention
   operand pairs of the model (q_d Dh^-1/2 with k_d of a visible key, and a probability a_ts
   with v_sd), sampled from every layer on held-out rows.
2. Held-out loss of the model with the two products of attention, q.k and probs.v, computed
   with exact float32 products ("exact"), with L-Mul of 3 and 4 mantissa bits ("lmul3",
   "lmul4"), and with both operands rounded to float8 ("fp8_e4m3", "fp8_e5m2": exact products
   of float8 values accumulated in float32, as float8 matmul units do); the model config's
   ``attention_products`` (jaxlab.nn.attention.explicit_attention; a contraction of L-Mul
   products is three matmuls, jaxlab.analysis.lmul.lmul_einsum, so nothing [B, H, T, S, Dh]
   is materialised). Rows: ``n_rows`` windows of ``seq_len`` tokens of the embedded
   documentation drawn by the seed (jaxlab.data.corpus.sample_token_rows).

Claim (fixed before any run, version 1): L-Mul (3 mantissa bits) in attention changes the
held-out loss no more than float8 e4m3 rounding of attention's operands does. Effect: the mean
over seeds x rows of loss(lmul3) - loss(fp8_e4m3), nats per token (paired per row). Held when
the upper end of its 95% interval (nested paired bootstrap over seeds x rows) is below 0.01
nats per token (L-Mul at most 1% worse in perplexity than e4m3, or better); not held when its
lower end is at or above 0.01. Preconditions: the model predicts text (exact-attention loss
below log V); every arm's loss is finite.

Reported beside it: the loss change of every arm against exact attention, and the relative
error table (mean and median) for random and real operands.

    jaxlab run experiments/lmul_attention.py --preset smoke --seeds 2         # a tiny random model (tests)
    jaxlab run experiments/lmul_attention.py --preset paper --seeds 2 --publish   # SmolLM2-135M-Instruct: 14-26 min a seed
                                                                                  # on 2 shared cores under heavy load
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import stats
from jaxlab.analysis import lmul
from jaxlab.data.corpus import sample_token_rows

CLAIM = ("L-Mul with 3 mantissa bits in attention's two products raises held-out loss by less than "
         "0.01 nats/token over float8 e4m3 rounding of attention's operands.")
CLAIM_VERSION = 1
THRESHOLD = 0.01
ARMS = ("exact", "lmul3", "lmul4", "fp8_e4m3", "fp8_e5m2")
METHODS = ("lmul_m2", "lmul_m3", "lmul_m4", "lmul_m5", "fp8_e4m3", "fp8_e5m2")
REPORT_KEYS = ["exact_loss", "lmul3_loss", "fp8_e4m3_loss", "lmul3_minus_fp8_e4m3"]
PRESETS = {
    "smoke": {"model": "tiny-random", "n_rows": 4, "seq_len": 24, "batch_size": 4, "n_pairs": 2000},
    "paper": {"model": "smollm2-135m-instruct", "n_rows": 16, "seq_len": 256, "batch_size": 4, "n_pairs": 100_000},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "lmul_attention"
    model: str = "smollm2-135m-instruct"  # anything jaxlab.interop.models.load_experiment_model takes
    n_rows: int = 16
    seq_len: int = 256
    batch_size: int = 4          # rows per forward pass
    n_pairs: int = 100_000       # operand pairs for each relative-error distribution
    seed: int = 0

    def __post_init__(self):
        if self.n_rows < 1 or self.batch_size < 1 or self.n_rows % self.batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be >= 1 and divide n_rows ({self.n_rows})")
        if self.seq_len < 2 or self.n_pairs < 1:
            raise ValueError("need seq_len >= 2 and n_pairs >= 1")


def get_config():
    return Config()


def _attention_operands(params, mcfg, rows_BT, seen, layer: int):
    """(q_BTHD Dh^-1/2, k_BSKD, v_BSKD, probs_BHTS) of one layer, rebuilt from the captured
    residual stream (``seen``: apply's capture of "resid" and "attn_probs") the way the
    attention block computes them."""
    from jaxlab.nn.attention import rope_for
    from jaxlab.nn.linear import dense
    from jaxlab.nn.norms import norm, rms_norm
    from jaxlab.nn.rope import rotate

    lp = jax.tree.map(lambda a: a[layer], params["layers"])
    h = norm(lp["attn_norm"], seen["resid"][layer], mcfg.norm_type, mcfg.norm_eps)
    q, k, v = (dense(lp["attn"][n], h, "btd,dhk->bthk") for n in ("q", "k", "v"))
    if mcfg.qk_norm:
        q, k = rms_norm(lp["attn"]["q_norm"], q, mcfg.norm_eps), rms_norm(lp["attn"]["k_norm"], k, mcfg.norm_eps)
    rope = rope_for(mcfg.attention, jnp.broadcast_to(jnp.arange(rows_BT.shape[1]), rows_BT.shape))
    return rotate(q, *rope) * mcfg.head_dim ** -0.5, rotate(k, *rope), v, seen["attn_probs"][layer]


def real_pairs(params, mcfg, rows_BT, n_pairs: int, rng) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Operand pairs of attention's two products drawn uniformly over layers, rows, heads,
    query t, visible key s <= t and (for q.k and probs.v) the head dimension:
    {"qk": (q_thd, k_s,h//G,d), "pv": (a_hts, v_s,h//G,d)}."""
    from jaxlab.models import transformer

    _, seen = transformer.apply(params, rows_BT, mcfg, capture=("resid", "attn_probs"))
    B, T = rows_BT.shape
    H, K, Dh, L = mcfg.n_heads, mcfg.n_kv_heads, mcfg.head_dim, mcfg.n_layers
    per_layer = np.bincount(rng.integers(0, L, n_pairs), minlength=L)
    out = {"qk": ([], []), "pv": ([], [])}
    for layer in range(L):
        n = int(per_layer[layer])
        if n == 0:
            continue
        q, k, v, p = (np.asarray(a, np.float32) for a in _attention_operands(params, mcfg, rows_BT, seen, layer))
        b, h, d = rng.integers(0, B, n), rng.integers(0, H, n), rng.integers(0, Dh, n)
        t = rng.integers(0, T, n)
        s = (rng.random(n) * (t + 1)).astype(np.int64)  # a visible key
        kh = h // (H // K)
        out["qk"][0].append(q[b, t, h, d])
        out["qk"][1].append(k[b, s, kh, d])
        out["pv"][0].append(p[b, h, t, s])
        out["pv"][1].append(v[b, s, kh, d])
    return {name: (np.concatenate(x), np.concatenate(y)) for name, (x, y) in out.items()}


def error_summary(x, y) -> dict[str, dict[str, float]]:
    """Per method: mean and median relative error over the pairs whose exact product is
    non-zero and whose approximation is finite, and the share of pairs that are not finite
    (float8 e4m3 has no infinity: |x| > 448 rounds to NaN)."""
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    keep = x * y != 0
    errs = lmul.relative_errors(x[keep], y[keep])
    out = {}
    for name in METHODS:
        e = errs[name]
        ok = np.isfinite(e)
        out[name] = {"mean": float(e[ok].mean()), "median": float(np.median(e[ok])),
                     "not_finite": float(1.0 - ok.mean())}
    return out


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    from jaxlab.interop.models import load_experiment_model
    from jaxlab.models import transformer

    mcfg, params, tokenizer = load_experiment_model(cfg.model, cfg.seed)
    rows = sample_token_rows(tokenizer, cfg.n_rows, cfg.seq_len, cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    rx, ry = rng.standard_normal(cfg.n_pairs), rng.standard_normal(cfg.n_pairs)
    errors = {"random": error_summary(rx, ry)}
    pairs = real_pairs(params, mcfg, jnp.asarray(rows[:min(2, cfg.n_rows)]), cfg.n_pairs, rng)
    for name, (x, y) in pairs.items():
        errors[name] = error_summary(x, y)
    hist = {"random": lmul.relative_errors(rx[:20000], ry[:20000])}
    for name, (x, y) in pairs.items():
        keep = x[:20000] * y[:20000] != 0
        hist[name] = lmul.relative_errors(x[:20000][keep], y[:20000][keep])

    arms = ARMS
    if progress:
        from tqdm.auto import tqdm
        arms = tqdm(arms, desc="attention products", unit="arm")
    row_losses = {}
    for arm in arms:
        acfg = dataclasses.replace(mcfg, attention_products=arm)

        @jax.jit
        def losses(p, tok_BT, acfg=acfg):
            logp = jax.nn.log_softmax(transformer.apply(p, tok_BT[:, :-1], acfg).astype(jnp.float32), -1)
            return -jnp.take_along_axis(logp, tok_BT[:, 1:, None], -1)[..., 0].mean(-1)

        row_losses[arm] = np.concatenate([np.asarray(losses(params, jnp.asarray(rows[i:i + cfg.batch_size])))
                                          for i in range(0, cfg.n_rows, cfg.batch_size)]).tolist()
    mean = {arm: float(np.mean(v)) for arm, v in row_losses.items()}
    _plot(hist, mean, workdir)
    err_rows = "\n".join(f"| {m} | " + " | ".join(f"{errors[src][m]['mean']:.4f} / {errors[src][m]['median']:.4f}"
                                                  for src in ("random", "qk", "pv")) + " |" for m in METHODS)
    return {"row_losses": row_losses, **{f"{arm}_loss": v for arm, v in mean.items()},
            "lmul3_minus_fp8_e4m3": mean["lmul3"] - mean["fp8_e4m3"],
            "loss_change": {arm: mean[arm] - mean["exact"] for arm in mean}, "errors": errors,
            "log_vocab": math.log(mcfg.vocab_size), "n_layers": mcfg.n_layers,
            "report": ("| arm | held-out loss | change vs exact |\n|---|---|---|\n"
                       + "\n".join(f"| {arm} | {mean[arm]:.4f} | {mean[arm] - mean['exact']:+.4f} |" for arm in mean)
                       + "\n\nRelative error of one product, mean / median:\n\n"
                         "| method | random normal | real q.k operands | real probs.v operands |\n|---|---|---|---|\n"
                       + err_rows + "\n\n![relative errors and losses](lmul_attention.png)")}


def _plot(hist: dict, mean: dict, workdir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(hist) + 1, figsize=(5 * (len(hist) + 1), 4))
    titles = {"random": "random normal pairs", "qk": "real q.k operand pairs", "pv": "real probs.v operand pairs"}
    bins = np.linspace(-8, 0, 60)
    for ax, (src, errs) in zip(axes, hist.items()):
        for m in ("lmul_m3", "lmul_m4", "fp8_e4m3", "fp8_e5m2"):
            e = errs[m]
            e = e[np.isfinite(e)]
            ax.hist(np.log10(np.maximum(e, 1e-8)), bins=bins, histtype="step", label=m)
        ax.set_xlabel("log10 relative error of one product")
        ax.set_title(titles[src])
        ax.legend(fontsize=7)
    ax = axes[-1]
    names = list(mean)
    ax.bar(range(len(names)), [mean[n] - mean["exact"] for n in names])
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylabel("held-out loss change vs exact (nats / token)")
    ax.axhline(0, color="grey", lw=0.5)
    fig.tight_layout()
    fig.savefig(workdir / "lmul_attention.png", dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    lm = np.array([run["row_losses"]["lmul3"] for run in per_seed])
    f8 = np.array([run["row_losses"]["fp8_e4m3"] for run in per_seed])
    exact = max(run["exact_loss"] for run in per_seed)
    finite = bool(all(np.all(np.isfinite(np.array(list(run["row_losses"].values())))) for run in per_seed))
    if finite:
        r = stats.paired_bootstrap_interval(lm, f8)
    else:
        r = {"effect": 0.0, "low": 0.0, "high": 0.0, "seeds": len(per_seed), "problems": lm.shape[1]}
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=THRESHOLD, direction="less",
        test=f"nested paired bootstrap of loss(L-Mul m=3) - loss(fp8 e4m3) over {r['seeds']} seeds x "
             f"{r['problems']} rows",
        preconditions=[("the model predicts text", exact < per_seed[0]["log_vocab"],
                        f"exact-attention loss {exact:.3f} vs uniform {per_seed[0]['log_vocab']:.3f}"),
                       ("every arm's loss is finite", finite, "a non-finite row loss" if not finite else "")])
