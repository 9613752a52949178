"""Length extrapolation of softmax vs softplus attention (Gao & Spratling, "Softplus Attention
with Re-weighting Boosts Length Extrapolation in Large Language Models", arXiv 2501.13428).

Two byte-level decoder LMs (RoPE), identical but for the attention, are trained at one length
L on the Python standard library's own source and evaluated at L, 2L, 4L, 8L and 16L:

  softmax   standard softmax attention
  softplus  LSSA: softmax's exp replaced by Softplus, the scores scaled by log(n_t) (n_t = keys
            query t sees), l1-normalised (jaxlab.kernels.attention.reference). Evaluated as
            trained (p = 1) and with a re-weighting switched on at evaluation only (LSSAR, no
            retraining): the l1-normalised weights a_ts raised to a power p and normalised
            again, a_ts^p / sum_s a_ts^p, for each p in ``eval_powers``.

The paper's equations could not be found. The shared paper notes and seeds give the abstract
only; the stored copies of the paper (arXiv HTML v2-v5) and of its summaries could be read only
from their openings, and its code (github.com/iminfine/freeatten) is not in the stored
repositories. Secondary summaries call the re-weighting "power-function-based", report it with
p = 15 at 16x, and give the length scale as "log d log N". So the re-weighting here is the
closest documented form, a^p / sum_s a^p, NOT verified to be the paper's exact equation; and
the score scale is log(n_t) / sqrt(d_head) (the summaries' constant factor log d is left out).
The claim's power is fixed at p = 2 (not the paper's 15, which belongs to its own, unverified
form); p = 4 is reported beside it.

Corpus (jaxlab.data.stdlib_corpus): the ``.py`` files of this Python's standard library
(about 31 MB on 3.11), split by whole file (10% validation by a hash of the path). The train
files go through the project's data pipeline (DataConfig.path = a folder of their copies);
the evaluation reads whole validation files.

Same documents at every length (jaxlab.evals.context_length): the evaluation takes the
``eval_docs`` validation files (in crc32 order of their paths) long enough for a 16L window,
``windows_per_doc`` windows each, and scores the SAME last L tokens of each window at every
context length C = L .. 16L: only the context before those tokens differs.

Claim (fixed before any run; CLAIM_VERSION 2). For document p and seed s let

    inc_softmax(s, p) = nll_softmax(16L) - nll_softmax(L)
    inc_lssar(s, p)   = nll_softplus,p=2(16L) - nll_softplus,p=1(L)

(nats per token on the scored tokens; the re-weighted model is measured against the same
network as trained, at L, so a re-weighting that hurts at L cannot make its increase look
small). Effect = mean over seeds and documents of inc_softmax - inc_lssar; held when its 95%
nested paired bootstrap interval (seeds, then documents) lies above 0, not held when it lies
at or below 0, else inconclusive. Preconditions: (1) softmax visibly degrades beyond L: the
lower end of the 95% interval of mean inc_softmax exceeds ``DEGRADE_MARGIN`` = 0.10 nats/token;
(2) both models learned the text: their mean loss at L (on the scored tokens, whose contexts
there run from 1 to L tokens) is below log(256) / 2 = 2.77 nats/token (half the uniform byte
guess).

    jaxlab run experiments/softplus_length_extrapolation.py --preset smoke --seeds 2 --publish
    jaxlab run experiments/softplus_length_extrapolation.py --preset paper --seeds 3 --publish

Presets: ``smoke`` (L = 32, a 2-layer d=64 model, 300 steps, 16 documents; minutes on 2 CPU
cores; the tests run it cut down to seconds; its verdict may honestly be inconclusive) and
``paper`` (L = 128, a 6-layer d=256 model (5.2M parameters), 4000 steps of 32 x 128 tokens
(16M tokens, about half an epoch of the train files), 128 documents x 2 windows, contexts up
to 2048). The paper preset needs a GPU: on these 2 shared CPU cores its 6 trainings alone would
take many hours. Expected GPU time on one H200: 15 to 30 minutes for the 3 seeds (2 x 3
trainings of 4000 steps of a 5.2M-parameter model, a few minutes each, mostly compilation and
step overhead, plus the evaluation: 128 x 2 windows at 5 context lengths and, for softplus, 3
powers). It is one line of ``scripts/gpu_claims.sh``; until it runs, the README says "not yet
run at the paper preset".
"""

from __future__ import annotations

import dataclasses
import math
import sys
import zlib
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.data import EOS_ID, PAD_ID
from jaxlab.data.pipeline import DataConfig, resolve_data_dir
from jaxlab.data.stdlib_corpus import (prepare_train_folder, read_bytes, source_files, split_files,
                                       stdlib_root)
from jaxlab.data.tokenizer import BOS_ID
from jaxlab.models import transformer
from jaxlab.samplers import SampleConfig
from jaxlab.train.config import ExperimentConfig, TrainConfig
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig

CLAIM = ("Softplus attention with re-weighting (LSSAR, p=2) raises the loss on the same tokens "
         "less than softmax attention does when the context grows from the training length L to 16L.")
CLAIM_VERSION = 2
CLAIM_POWER = 2.0  # the re-weighting power the claim is decided with
DEGRADE_MARGIN = 0.10  # nats/token: softmax must degrade by more than this (interval's low end)
LEARNED_LOSS = math.log(256) / 2  # nats/token at L: half the uniform byte guess
LONGEST = 16  # the claim compares L with 16L

REPORT_KEYS = ["claim_increase", "increase", "loss_x1", "loss_x16", "loss_x16_p2", "increase_p2",
               "loss_x16_p4", "increase_p4", "train_loss", "train_wall_s"]

PRESETS = {
    "smoke": {"lm.train.seq_len": 32, "lm.train.batch_size": 16, "lm.train.loop.steps": 300,
              "lm.train.loop.eval_every": 300, "lm.train.loop.checkpoint_every": 300,
              "lm.optim.warmup_steps": 30, "lm.model.d_model": 64, "lm.model.n_layers": 2,
              "lm.model.n_heads": 2, "lm.model.n_kv_heads": 2, "lm.model.head_dim": 32,
              "lm.model.mlp_dim": 192, "lm.model.scan_unroll": 2, "lm.sample.max_new_tokens": 16,
              "eval_docs": 16, "windows_per_doc": 1},
    "paper": {"lm.train.seq_len": 128, "lm.train.batch_size": 32, "lm.train.loop.steps": 4000,
              "lm.train.loop.eval_every": 1000, "lm.train.loop.checkpoint_every": 1000,
              "lm.optim.warmup_steps": 200, "lm.model.d_model": 256, "lm.model.n_layers": 6,
              "lm.model.n_heads": 4, "lm.model.n_kv_heads": 4, "lm.model.head_dim": 64,
              "lm.model.mlp_dim": 768, "lm.model.scan_unroll": 1, "lm.sample.max_new_tokens": 64,
              "eval_docs": 128, "windows_per_doc": 2},
}


@dataclasses.dataclass(frozen=True)
class Config:
    lm: ExperimentConfig
    corpus_val_percent: float = 10.0  # percent of stdlib files (by path hash) held out
    eval_multipliers: tuple[int, ...] = (1, 2, 4, 8, 16)
    eval_powers: tuple[float, ...] = (1.0,)  # softplus: re-weighting powers at evaluation
    eval_docs: int = 128  # validation files scored (the same ones at every length and seed)
    windows_per_doc: int = 2  # non-overlapping 16L windows per file
    eval_batch_tokens: int = 16384  # input tokens per evaluation batch


def _lm_config(name: str, kind: str) -> ExperimentConfig:
    model = transformer.Config(vocab_size=264, d_model=256, n_layers=6, n_heads=4, n_kv_heads=4,
                               head_dim=64, mlp_dim=768, attention_kind=kind)
    return ExperimentConfig(
        name=name, model=model,
        data=DataConfig(chunk_bytes=8192, val_percent=1.0),  # path: set by run() (the train files)
        optim=OptimConfig(lr=3e-3, warmup_steps=200, schedule="cosine", final_lr_fraction=0.1,
                          weight_decay=0.1, clip_norm=1.0),
        train=TrainConfig(batch_size=32, seq_len=128, eval_batches=4,
                          loop=LoopConfig(steps=4000, eval_every=1000, checkpoint_every=1000, log_every=50)),
        sample=SampleConfig(max_new_tokens=64, temperature=0.8, top_p=0.95, stop_tokens=(EOS_ID,),
                            pad_id=PAD_ID),
        prompt="def ",
    )


def get_config() -> dict[str, Config]:
    return {
        "softmax": Config(lm=_lm_config("softmax", "softmax")),
        "softplus": Config(lm=_lm_config("softplus", "softplus"), eval_powers=(1.0, 2.0, 4.0)),
    }


# ----------------------------------------------------------------------------- corpus


def _corpus(cfg: Config) -> tuple[Path, list[str], list[str]]:
    """(library root, train file names, validation file names)."""
    root = stdlib_root()
    train_names, val_names = split_files(source_files(root), cfg.corpus_val_percent)
    return root, train_names, val_names


def _train_folder(cfg: Config, root: Path, train_names: list[str]) -> Path:
    """The folder of train-file copies under the data dir, named by the Python version, the
    split and a hash of the file list (a different library gets a different folder)."""
    v = sys.version_info
    digest = zlib.crc32("\n".join(train_names).encode())
    name = f"python{v.major}.{v.minor}.{v.micro}-val{cfg.corpus_val_percent:g}-{digest:08x}"
    return prepare_train_folder(root, train_names, resolve_data_dir(cfg.lm.data.data_dir) / "stdlib_py" / name)


def eval_documents(root: Path, val_names: list[str], *, min_tokens: int, n_docs: int) -> list[tuple[str, np.ndarray]]:
    """The first ``n_docs`` validation files, in crc32 order of their paths, whose tokens
    [BOS, bytes..., EOS] number at least ``min_tokens``: (name, tokens) pairs."""
    docs = []
    for name in sorted(val_names, key=lambda n: (zlib.crc32(n.encode()), n)):
        data = read_bytes(root, name)
        if data is None or len(data) + 2 < min_tokens:
            continue
        tokens = np.concatenate([[BOS_ID], np.frombuffer(data, np.uint8).astype(np.int32), [EOS_ID]])
        docs.append((name, tokens.astype(np.int32)))
        if len(docs) == n_docs:
            break
    return docs


# ----------------------------------------------------------------------------- evaluation


def doc_losses(params, model_cfg: transformer.Config, docs, *, context: int, max_context: int,
               n_scored: int, windows_per_doc: int, batch_tokens: int) -> np.ndarray:
    """[P] mean NLL per document of the last ``n_scored`` targets of its windows (the same
    targets for every ``context``), at context length ``context``."""
    from jaxlab.evals.context_length import suffix_nll_N, suffix_windows, window_ends

    import jax.numpy as jnp

    rows_in, rows_tg, owner = [], [], []
    for p, (_, tokens) in enumerate(docs):
        ends = window_ends(len(tokens), max_context, windows_per_doc)
        x, y = suffix_windows(tokens, ends, context)
        rows_in.append(x)
        rows_tg.append(y)
        owner += [p] * len(ends)
    inputs, targets, owner = np.concatenate(rows_in), np.concatenate(rows_tg), np.asarray(owner)
    batch = max(1, batch_tokens // context)
    nll = []
    for i in range(0, len(inputs), batch):
        x, y = inputs[i:i + batch], targets[i:i + batch]
        n = len(x)
        if n < batch:  # one shape per context length: pad with copies of the first row
            x = np.concatenate([x, np.repeat(x[:1], batch - n, 0)])
            y = np.concatenate([y, np.repeat(y[:1], batch - n, 0)])
        nll.append(np.asarray(suffix_nll_N(params, jnp.asarray(x), jnp.asarray(y), model_cfg, n_scored))[:n])
    nll = np.concatenate(nll)
    return np.array([nll[owner == p].mean() for p in range(len(docs))])


def _suffix(p: float) -> str:
    return "" if p == 1.0 else f"_p{p:g}"


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    from jaxlab.train.checkpoint import load_params
    from jaxlab.train.loop import train

    root, train_names, val_names = _corpus(cfg)
    train_dir = _train_folder(cfg, root, train_names)
    lm = dataclasses.replace(cfg.lm, data=dataclasses.replace(cfg.lm.data, path=str(train_dir)))
    L = lm.train.seq_len
    if LONGEST not in cfg.eval_multipliers or 1 not in cfg.eval_multipliers:
        raise ValueError(f"eval_multipliers must contain 1 and {LONGEST}, got {cfg.eval_multipliers}")
    max_context = max(cfg.eval_multipliers) * L
    docs = eval_documents(root, val_names, min_tokens=max_context + 1, n_docs=cfg.eval_docs)
    if len(docs) < cfg.eval_docs:
        raise ValueError(f"only {len(docs)} validation files hold a {max_context}-token window; "
                         f"eval_docs={cfg.eval_docs}")

    train_results = train(lm, workdir / "train", progress=progress)
    params = load_params(workdir / "train")[1]
    kind = lm.model.attention_kind
    powers = [float(p) for p in cfg.eval_powers] if kind == "softplus" else [1.0]
    results = {"attention": kind, "train_seq_len": L, "steps": lm.train.loop.steps,
               "params": train_results["params"], "train_loss": train_results["train_loss"],
               "val_loss": train_results["val_loss"], "train_wall_s": train_results["train_wall_s"],
               "corpus_files": {"train": len(train_names), "validation": len(val_names)},
               "corpus_train_bytes": sum((root / n).stat().st_size for n in train_names),
               "eval_docs": [name for name, _ in docs], "windows_per_doc": cfg.windows_per_doc,
               "scored_tokens_per_length": len(docs) * cfg.windows_per_doc * L,
               "powers": powers, "multipliers": list(cfg.eval_multipliers), "doc_nll": {}}
    for p in powers:
        model_cfg = dataclasses.replace(lm.model, attention_reweight_power=p)
        per_len = {}
        for m in cfg.eval_multipliers:
            losses = doc_losses(params, model_cfg, docs, context=m * L, max_context=max_context, n_scored=L,
                                windows_per_doc=cfg.windows_per_doc, batch_tokens=cfg.eval_batch_tokens)
            per_len[str(m)] = [float(v) for v in losses]
            results[f"loss_x{m}{_suffix(p)}"] = float(losses.mean())
        results["doc_nll"][f"p{p:g}"] = per_len
        # the increase is measured from the network as trained (p = 1) at L
        results[f"increase{_suffix(p)}"] = results[f"loss_x{LONGEST}{_suffix(p)}"] - results["loss_x1"]
    # the increase the claim compares: softmax as trained, softplus re-weighted with CLAIM_POWER
    results["claim_increase"] = results[f"increase{_suffix(CLAIM_POWER if kind == 'softplus' else 1.0)}"]
    header = "| context | " + " | ".join("loss" if p == 1.0 else f"loss, p={p:g}" for p in powers) + " |"
    lines = [header, "|---" * (len(powers) + 1) + "|"]
    for m in cfg.eval_multipliers:
        lines.append(f"| {m * L} ({m}x) | " + " | ".join(f"{results[f'loss_x{m}{_suffix(p)}']:.4f}" for p in powers) + " |")
    results["report"] = (f"Loss (nats/token) of the {kind} model trained at {L} tokens on the same "
                         f"{results['scored_tokens_per_length']} scored tokens ({len(docs)} validation files) at "
                         "every context length:\n\n" + "\n".join(lines) + "\n")
    return results


# ----------------------------------------------------------------------------- claim


def increases_SP(per_seed: list[dict], power: float) -> np.ndarray:
    """[S, P]: per seed and document, nll at 16L (re-weighting ``power``) - nll at L (as trained)."""
    key = f"p{power:g}"
    return np.array([np.asarray(r["doc_nll"][key][str(LONGEST)]) - np.asarray(r["doc_nll"]["p1"]["1"])
                     for r in per_seed])


def claim_verdict(runs: dict) -> stats.Verdict:
    softmax, softplus = runs["softmax"], runs["softplus"]
    inc_sm, inc_lr = increases_SP(softmax, 1.0), increases_SP(softplus, CLAIM_POWER)
    r = stats.paired_bootstrap_interval(inc_sm, inc_lr)
    degrade = stats.paired_bootstrap_interval(inc_sm, np.zeros_like(inc_sm))
    at_l = {name: float(np.mean([run["loss_x1"] for run in per_seed])) for name, per_seed in runs.items()}
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=(f"nested paired bootstrap over {r['seeds']} seeds x {r['problems']} documents of "
              f"(softmax increase - LSSAR p={CLAIM_POWER:g} increase), L to {LONGEST}L, nats/token"),
        preconditions=[
            ("softmax degrades beyond L", degrade["low"] > DEGRADE_MARGIN,
             f"softmax increase {degrade['effect']:+.3f} nats/token, 95% interval [{degrade['low']:+.3f}, "
             f"{degrade['high']:+.3f}]; needs low > {DEGRADE_MARGIN:.2f}"),
            ("both models learned the text", max(at_l.values()) < LEARNED_LOSS,
             "loss at L: " + ", ".join(f"{k} {v:.3f}" for k, v in at_l.items()) +
             f" nats/token; needs < {LEARNED_LOSS:.2f}"),
        ])


# ----------------------------------------------------------------------------- report


def _curves(results: dict) -> dict[str, list[tuple[int, float]]]:
    """{label: [(multiplier, mean loss), ...]} for every (variant, power) of one result dict per
    variant (the first seed's)."""
    curves = {}
    for name, r in results.items():
        for p in r.get("powers", [1.0]):
            label = name if p == 1.0 else f"{name}, re-weighted p={p:g}"
            curves[label] = [(m, r[f"loss_x{m}{_suffix(p)}"]) for m in r["multipliers"]]
    return curves


def summarize(results: dict, workdir: Path) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # ``results`` is {variant: results} (one seed) or {variant: [results per seed]}
    per_seed = {k: (v if isinstance(v, list) else [v]) for k, v in results.items()}
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    lines = ["## Loss on the same scored tokens by context length\n"]
    for s in range(max(len(v) for v in per_seed.values())):
        curves = _curves({k: v[s] for k, v in per_seed.items() if s < len(v)})
        mults = sorted({m for c in curves.values() for m, _ in c})
        lines += [f"Seed {s}:\n", "| context / L | " + " | ".join(curves) + " |", "|---" * (len(curves) + 1) + "|"]
        for m in mults:
            lines.append(f"| {m}x | " + " | ".join(f"{dict(c).get(m, math.nan):.4f}" for c in curves.values()) + " |")
        lines.append("")
        for i, (label, c) in enumerate(curves.items()):
            ax.plot([m for m, _ in c], [v for _, v in c], marker="o", color=f"C{i}", alpha=0.8,
                    label=label if s == 0 else None)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context length / training length")
    ax.set_ylabel("loss on the same scored tokens (nats/token)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(workdir / "length_extrapolation.png", dpi=120)
    plt.close(fig)
    return "\n".join(lines) + "\n![loss by context length](length_extrapolation.png)\n"
