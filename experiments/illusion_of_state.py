"""State tracking on permutation groups (Merrill, Petty and Sabharwal 2024, "The Illusion of
State in State-Space Models", arXiv 2404.08819): transformers and Mamba-style SSMs of fixed
depth cannot compose the permutations of a non-solvable group over long sequences (the word
problem of any non-solvable group is NC1-complete, Barrington 1989; both architectures are in
TC0), which a recurrent network with a dense, nonlinear state transition does; on a solvable
group the gap is smaller.

Task (:mod:`jaxlab.data.groups`): a sequence of T group elements g_1 .. g_T, drawn uniformly
and independently, as tokens (indices into the group's element table); at every position t
the model predicts the running product p_t = g_t o ... o g_1 (|G| classes). Trained with
cross-entropy on fresh sequences of length ``length`` (each step a new batch), so position t of
a causal model is the problem of length t: the per-position accuracy on ``eval_sequences``
fresh sequences is the accuracy-against-length sweep, t = 1 .. L (L = ``length``).

Groups: ``hard_group`` A5 (60 elements; the smallest non-solvable group) and ``easy_group`` A4
(12 elements, solvable). S5 (120 elements, non-solvable) is the other natural hard group
(``--set hard_group=S5``), but none of the models learns even its product table within this
CPU budget: in pilot runs at d_model 32-64 and 2000-4000 steps the recurrent networks reached
position-2 accuracy 0.01-0.58 on S5 and A5 with a GRU, and 0.46 on S5 with the RNN below, which
learns A5 (0.97 at t = 32). So the claim is checked on A5 against A4, both subgroups of even
permutations.

Models, each with input and output embeddings of width ``d_model``, untied:

    transformer  2 layers of :mod:`jaxlab.models.transformer` (RoPE, 4 heads, SwiGLU of 2 d_model)
    mamba        2 layers of :mod:`jaxlab.models.mamba` (Mamba-1 blocks, d_state 8, expand 2)
    rnn          1 layer of :mod:`jaxlab.nn.rnn`: h_t = tanh(U[g_t] h_{t-1} + b[g_t]), a dense
                 H x H transition chosen by the input (the paper's "RNN" with input-dependent
                 transitions), then a linear read-out; it has more parameters (|G| H^2) than
                 the others, which does not matter to the claim (the fixed-depth models' limit
                 is not one of size)

all trained alike: AdamW (lr ``lr``, warm-up over the first 10% of steps up to 100, cosine
decay, no weight decay, gradients clipped at norm 1), ``steps`` steps of ``batch`` sequences,
with a length curriculum: at step k the loss covers positions 1 .. L_k,
L_k = min(L, 2 + (L - 2) k / (steps / 2)) (the sequences stay L long; later positions,
unlearnable until the short products are, would otherwise drown the gradient in noise), so the
second half of training covers every length.

Claim (fixed before any run, version 1). acc_m,G(t): model m's accuracy at position t on group
G, one value per seed. A model succeeds at length t when acc >= 0.9 (``SUCCEED``) and fails
when acc <= 0.5 (``FAIL``). With best(G) = max(acc_transformer,G(L), acc_mamba,G(L)), the
better of the two fixed-depth models at the longest length, and gap(G) = acc_rnn,G(L) - best(G):

    part 1  best(A5) < 0.5: on the non-solvable group both the transformer and Mamba fail at L;
    part 2  gap(A5) - gap(A4) > 0: the gap is smaller on the solvable group.

Each is a mean over seeds with a 95% percentile bootstrap interval over seeds
(:func:`jaxlab.stats.bootstrap_mean_interval`); a part is held when its whole interval is on the
claim's side of its threshold, not held when its whole interval is on the other side. The claim
is held when both parts are held, not held when either is not held, else inconclusive.
Preconditions: (1) the dense RNN succeeds on the hard group at L (mean acc_rnn(L) >= 0.9), so
L is a length at which a recurrent state still tracks the product; (2) every model learned the
group's product table: mean accuracy at position 2 (one product) >= 0.9 for every model and
group, so a failure at L is about length, not about training. The verdict shows part 2's effect
and interval; its reason states part 1's.

    jaxlab run experiments/illusion_of_state.py --preset smoke --seeds 2               # 5 min on 2 loaded cores
    jaxlab run experiments/illusion_of_state.py --preset paper --seeds 3 --publish     # 31 min on 2 loaded cores
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import stats
from jaxlab.data import groups
from jaxlab.models import mamba, transformer
from jaxlab.nn.linear import dense, init_dense
from jaxlab.nn.rnn import init_token_rnn, token_rnn
from jaxlab.train.optim import OptimConfig, make_optimizer

CLAIM = ("On permutation composition over the non-solvable group A5, a 2-layer transformer and a "
         "2-layer Mamba fail (accuracy <= 0.5) at a length at which an RNN with a dense state still "
         "succeeds (>= 0.9), and the gap is smaller on the solvable group A4.")
CLAIM_VERSION = 1
REPORT_KEYS = ["best_fixed_hard", "gap_hard", "gap_easy", "rnn_hard"]
MODELS = ("transformer", "mamba", "rnn")
SUCCEED, FAIL = 0.9, 0.5
PRESETS = {
    "smoke": {"length": 12, "steps": 300, "batch": 32, "d_model": 32, "eval_sequences": 256},
    "paper": {"length": 32, "steps": 2000, "batch": 32, "d_model": 32, "eval_sequences": 1024},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "illusion_of_state"
    hard_group: str = "A5"
    easy_group: str = "A4"
    models: tuple[str, ...] = MODELS
    length: int = 32
    d_model: int = 32
    steps: int = 2000
    batch: int = 32
    lr: float = 3e-3
    eval_sequences: int = 1024
    seed: int = 0

    def __post_init__(self):
        for g in (self.hard_group, self.easy_group):
            groups.permutation_group(g)  # raises ValueError for a bad name
        if set(self.models) - set(MODELS) or not self.models:
            raise ValueError(f"models must be a non-empty subset of {MODELS}, got {self.models}")
        if self.length < 2 or self.d_model < 8 or self.steps < 1 or self.batch < 1:
            raise ValueError(f"need length >= 2, d_model >= 8, steps >= 1, batch >= 1; got length={self.length}, "
                             f"d_model={self.d_model}, steps={self.steps}, batch={self.batch}")


def get_config():
    return Config()


# ------------------------------------------------------------------------------------ models

def model_fns(kind: str, n_classes: int, d_model: int):
    """(init(key) -> params, apply(params, tokens [B, T]) -> logits [B, T, n_classes])."""
    if kind == "transformer":
        cfg = transformer.Config(vocab_size=n_classes, d_model=d_model, n_layers=2, n_heads=4, n_kv_heads=4,
                                 head_dim=d_model // 4, mlp_dim=2 * d_model, tie_embeddings=False)
        return (lambda key: transformer.init(cfg, key)), (lambda p, t: transformer.apply(p, t, cfg))
    if kind == "mamba":
        cfg = mamba.Config(vocab_size=n_classes, d_model=d_model, n_layers=2, d_state=8, expand=2,
                           tie_embeddings=False)
        return (lambda key: mamba.init(cfg, key)), (lambda p, t: mamba.apply(p, t, cfg))
    if kind == "rnn":
        def init(key):
            k_r, k_o = jax.random.split(key)
            return {"rnn": init_token_rnn(k_r, n_classes, d_model),
                    "out": init_dense(k_o, (d_model,), (n_classes,), bias=True)}

        def apply(p, tokens_BT):
            return dense(p["out"], token_rnn(p["rnn"], tokens_BT), "bth,hv->btv")
        return init, apply
    raise ValueError(f"unknown model {kind!r}; expected one of {MODELS}")


@functools.lru_cache(maxsize=None)
def _compiled(kind: str, n_classes: int, d_model: int, lr: float, steps: int):
    """(init, optimizer, jitted train step, jitted predict) of one model and setting, built
    once so that every seed reuses the compiled functions."""
    init, apply = model_fns(kind, n_classes, d_model)
    opt = make_optimizer(OptimConfig(lr=lr, warmup_steps=min(100, steps // 10), weight_decay=0.0), steps)

    def loss_fn(p, words_BT, products_BT, weight_T):
        ce_BT = optax.softmax_cross_entropy_with_integer_labels(apply(p, words_BT), products_BT)
        return (ce_BT * weight_T).sum() / (weight_T.sum() * ce_BT.shape[0])

    @jax.jit
    def step(p, s, words_BT, products_BT, weight_T):
        loss, grads = jax.value_and_grad(loss_fn)(p, words_BT, products_BT, weight_T)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    predict = jax.jit(lambda p, w: jnp.argmax(apply(p, w), axis=-1))
    return init, opt, step, predict


def train_and_evaluate(kind: str, group: groups.PermutationGroup, cfg: Config, seed: int) -> dict:
    """Trains model ``kind`` on ``group``'s word problem and returns its per-position accuracy
    on fresh sequences, its parameter count and its last losses."""
    init, opt, step, predict = _compiled(kind, group.order, cfg.d_model, cfg.lr, cfg.steps)
    params = init(jax.random.key(seed))
    rng = np.random.default_rng([seed, zlib_group(group.name)])
    state, losses = opt.init(params), []
    positions_T = np.arange(1, cfg.length + 1)
    for k in range(cfg.steps):
        words, products = groups.sample_words(group, rng, cfg.batch, cfg.length)
        weight_T = (positions_T <= curriculum_length(k, cfg.steps, cfg.length)).astype(np.float32)
        params, state, loss = step(params, state, jnp.asarray(words), jnp.asarray(products), jnp.asarray(weight_T))
        losses.append(loss)
    eval_rng = np.random.default_rng([seed, zlib_group(group.name), 1])
    words, products = groups.sample_words(group, eval_rng, cfg.eval_sequences, cfg.length)
    correct_NT = np.concatenate([np.asarray(predict(params, jnp.asarray(words[i:i + 256]))) == products[i:i + 256]
                                 for i in range(0, cfg.eval_sequences, 256)])
    acc_T = correct_NT.mean(axis=0)
    losses = np.asarray(jax.device_get(losses), np.float64)
    return {"group": group.name, "model": kind,
            "params": int(sum(x.size for x in jax.tree.leaves(params))),
            "final_loss": float(losses[-min(50, len(losses)):].mean()),
            "accuracy_by_length": acc_T.tolist(),
            "acc_final": float(acc_T[-1]), "acc_at_2": float(acc_T[1]),
            "success_length": success_length(acc_T)}


def curriculum_length(step: int, steps: int, length: int) -> int:
    """The longest position in the loss at ``step`` (the module docstring's curriculum): 2 at
    the start, growing linearly to ``length`` at half the steps, then ``length``."""
    half = max(steps // 2, 1)
    return min(length, 2 + (length - 2) * step // half)


def zlib_group(name: str) -> int:
    """A stable integer of a group's name, to give each group its own data stream."""
    return zlib.crc32(name.encode())


def success_length(acc_T) -> int:
    """The longest t with accuracy >= SUCCEED at every position 1 .. t (0 if position 1 fails)."""
    ok = np.asarray(acc_T) >= SUCCEED
    return int(np.argmin(ok)) if not ok.all() else len(ok)


# ------------------------------------------------------------------------------------ run

def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    jobs = [(g, m) for g in (cfg.hard_group, cfg.easy_group) for m in cfg.models]
    if progress:
        from tqdm.auto import tqdm
        jobs = tqdm(jobs, desc="trainings", unit="model")
    rows = []
    for g, m in jobs:
        rows.append(train_and_evaluate(m, groups.permutation_group(g), cfg, cfg.seed))
    out = {"rows": rows, "length": cfg.length, "hard_group": cfg.hard_group, "easy_group": cfg.easy_group,
           **seed_summary(rows, cfg.hard_group, cfg.easy_group)}
    _plot([out], workdir / "illusion_of_state.png", f"seed {cfg.seed}")
    out["report"] = "![accuracy against length](illusion_of_state.png)"
    return out


def seed_summary(rows: list[dict], hard: str, easy: str) -> dict:
    """One seed's numbers for the claim: best(G), gap(G) and the RNN's accuracy at L (the
    module docstring); None where a model is missing."""
    acc = {(r["group"], r["model"]): r["acc_final"] for r in rows}
    out = {}
    for label, g in (("hard", hard), ("easy", easy)):
        if all((g, m) in acc for m in MODELS):
            out[f"best_fixed_{label}"] = max(acc[(g, "transformer")], acc[(g, "mamba")])
            out[f"gap_{label}"] = acc[(g, "rnn")] - out[f"best_fixed_{label}"]
            out[f"rnn_{label}"] = acc[(g, "rnn")]
    return out


def _plot(per_seed: list[dict], path: Path, title: str) -> None:
    """Accuracy against length (position t), one panel per group, one line per model (the
    mean over ``per_seed``'s runs)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [per_seed[0]["hard_group"], per_seed[0]["easy_group"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, g in zip(axes, names):
        for m, color in zip(MODELS, ("tab:orange", "tab:green", "tab:blue")):
            curves = [r["accuracy_by_length"] for run in per_seed for r in run["rows"]
                      if r["group"] == g and r["model"] == m]
            if curves:
                acc_T = np.mean(curves, axis=0)
                ax.plot(np.arange(1, len(acc_T) + 1), acc_T, color=color, label=m)
        ax.axhline(SUCCEED, color="0.6", lw=0.8, ls="--")
        ax.axhline(FAIL, color="0.6", lw=0.8, ls=":")
        ax.set_title(f"{g} ({groups.permutation_group(g).order} elements)")
        ax.set_xlabel("length t (position)")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("accuracy of the running product")
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarize(results: dict, workdir: Path) -> str:
    per_seed = next(iter(results.values()))
    _plot(per_seed, workdir / "accuracy_by_length.png", f"accuracy against length, mean over {len(per_seed)} seeds")
    rows = ["| group | model | parameters | accuracy at 2 | accuracy at L | longest length with accuracy >= 0.9 "
            "(per seed) |", "|---|---|---|---|---|---|"]
    for g in (per_seed[0]["hard_group"], per_seed[0]["easy_group"]):
        for m in MODELS:
            rs = [r for run in per_seed for r in run["rows"] if r["group"] == g and r["model"] == m]
            if rs:
                rows.append(f"| {g} | {m} | {rs[0]['params']:,} | {np.mean([r['acc_at_2'] for r in rs]):.3f} | "
                            f"{np.mean([r['acc_final'] for r in rs]):.3f} | "
                            f"{', '.join(str(r['success_length']) for r in rs)} |")
    return ("\n![accuracy against length](accuracy_by_length.png)\n\n"
            f"Means over seeds; L = {per_seed[0]['length']}.\n\n" + "\n".join(rows) + "\n")


# ------------------------------------------------------------------------------------ verdict

def _interval(values_S) -> tuple[float, float, float]:
    x = np.asarray(values_S, np.float64)
    low, high = stats.bootstrap_mean_interval(x)
    m = float(x.mean())
    return m, min(low, m), max(high, m)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    missing = [k for k in ("best_fixed_hard", "gap_hard", "gap_easy") if k not in per_seed[0]]
    if missing:
        raise ValueError(f"the claim needs all of {MODELS} on both groups; the runs lack {missing}")
    hard, easy = per_seed[0]["hard_group"], per_seed[0]["easy_group"]
    fail = _interval([r["best_fixed_hard"] for r in per_seed])
    diff = _interval([r["gap_hard"] - r["gap_easy"] for r in per_seed])
    rnn_hard = float(np.mean([r["rnn_hard"] for r in per_seed]))
    table = {}
    for run in per_seed:
        for r in run["rows"]:
            table.setdefault((r["group"], r["model"]), []).append(r["acc_at_2"])
    worst_key, worst = min(((k, float(np.mean(v))) for k, v in table.items()), key=lambda kv: kv[1])
    preconditions = [
        (f"the dense RNN succeeds on {hard} at L", rnn_hard >= SUCCEED,
         f"mean accuracy of the RNN at L = {per_seed[0]['length']}: {rnn_hard:.3f} (needs >= {SUCCEED})"),
        ("every model learned the product table", worst >= SUCCEED,
         f"lowest mean accuracy at position 2: {worst:.3f} ({worst_key[1]} on {worst_key[0]}; needs >= {SUCCEED})"),
    ]
    part1 = stats.decide(*fail, threshold=FAIL, direction="less", preconditions=preconditions,
                         test=f"bootstrap over {len(per_seed)} seeds of best({hard})")
    part2 = stats.decide(*diff, threshold=0.0, preconditions=preconditions,
                         test=f"bootstrap over {len(per_seed)} seeds of gap({hard}) - gap({easy})")
    # the headline is part 2 (its effect is the report's); the claim needs both
    return stats.all_parts({f"gap({hard}) - gap({easy})": part2, f"best({hard})": part1})
