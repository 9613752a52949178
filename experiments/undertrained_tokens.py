"""Under-trained tokens (Land and Bartolo 2024, "Fishing for Magikarp").

Two models, two questions (jaxlab.analysis.tokens):

1. The claim, on a pretrained model (SmolLM2-135M-Instruct): reference tokens are the
   tokenizer's unreachable ids (text decodes to something that never encodes back to the id:
   lone UTF-8 continuation bytes of the byte-level BPE). Candidates are the ``percentile``
   closest tokens to them by the unembedding indicator (first principal component removed).
   ``n_verify`` candidates and as many random other tokens (neither candidate nor reference),
   drawn by the seed, are verified by prompting: p_max(t) is the largest probability that the
   model's next token is t over two prompts that ask for t again (an instruction to repeat it,
   and plain repetition "t t t").

   Claim (fixed before any run, version 1): candidates are repeated with far lower probability
   than random tokens. Effect: mean log10 p_max(random) - mean log10 p_max(candidate) (two
   independent samples per seed; nested two-sample bootstrap over seeds and tokens); held
   when its 95% interval lies above 1 (candidates at least 10x less likely on the log average),
   not held when it lies at or below 1. Precondition: the reference set is not empty and the
   random tokens are repeated at all (median p_max(random) >= 0.01), so the prompts work.
   Reported: the share of candidates and of random tokens with p_max < 0.01 ("verified").

2. Reported, on a byte model trained here on the embedded corpus, where the ground truth is
   known: bytes that never occur in the corpus are under-trained. References: ``n_references``
   of them, drawn by the seed; precision and recall of the indicator's top-k (k = the number
   of the other absent bytes, so precision = recall = R-precision) and a precision-recall curve.

    jaxlab run experiments/undertrained_tokens.py --preset smoke --seeds 2        # tiny models (tests)
    jaxlab run experiments/undertrained_tokens.py --preset paper --seeds 3 --publish   # SmolLM2 + a 600-step byte model
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.analysis import tokens

CLAIM = ("Tokens flagged by the unembedding indicator as under-trained are repeated with at least "
         "10x lower probability (log average) than random tokens when the model is asked to repeat them.")
CLAIM_VERSION = 1
THRESHOLD_LOG10 = 1.0
VERIFIED_P = 0.01
REPORT_KEYS = ["log10_gap", "candidates_verified", "random_verified", "byte_model_r_precision"]
PRESETS = {
    "smoke": {"model": "byte-model", "n_verify": 8, "byte_model": "tiny", "byte_steps": 20},
    "paper": {"model": "smollm2-135m-instruct", "n_verify": 64, "byte_model": "quickstart", "byte_steps": 600},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "undertrained_tokens"
    model: str = "smollm2-135m-instruct"  # a name or path load_model takes, or "byte-model" (part 2's model)
    percentile: float = 98.0
    n_verify: int = 64
    byte_model: str = "quickstart"   # "quickstart" (configs/models.py) or "tiny"
    byte_steps: int = 600
    n_references: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.byte_model not in ("quickstart", "tiny"):
            raise ValueError(f"byte_model must be 'quickstart' or 'tiny', got {self.byte_model!r}")
        if not 0.0 < self.percentile < 100.0 or self.n_verify < 1 or self.n_references < 1:
            raise ValueError("need 0 < percentile < 100, n_verify >= 1 and n_references >= 1")


def get_config():
    return Config()


def _train_byte_model(cfg: Config, workdir: Path, progress: bool):
    """A byte LM trained on the embedded corpus (resumable in ``workdir``), its params and the
    bytes the corpus never contains."""
    from configs import models
    from jaxlab.data.corpus import default_documents
    from jaxlab.models import transformer
    from jaxlab.train.loop import pretrain_byte_model

    if cfg.byte_model == "tiny":
        mcfg = transformer.Config(vocab_size=259, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16,
                                  mlp_dim=64)
        params = pretrain_byte_model(workdir, mcfg, steps=cfg.byte_steps, seed=cfg.seed, batch_size=8,
                                     seq_len=64, progress=progress)
    else:
        mcfg = models.get("quickstart")
        params = pretrain_byte_model(workdir, mcfg, steps=cfg.byte_steps, seed=cfg.seed, checkpoint_every=200,
                                     progress=progress)
    present = set()
    for _, text in default_documents():
        present |= set(text.encode("utf-8"))
    absent = np.asarray(sorted(set(range(256)) - present), np.int64)
    return mcfg, params, absent


def _unembedding(params: dict, mcfg) -> np.ndarray:
    u = params["embed"]["embedding"] if mcfg.tie_embeddings else np.asarray(params["unembed"]["kernel"]).T
    return np.asarray(u, np.float32)


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    from jaxlab.data import ByteTokenizer

    rng = np.random.default_rng(cfg.seed)
    byte_cfg, byte_params, absent = _train_byte_model(cfg, workdir / "byte_model", progress)
    references = rng.choice(absent, size=min(cfg.n_references, len(absent) - 1), replace=False)
    truth = np.setdiff1d(absent, references)
    scores = tokens.undertrained_scores(_unembedding(byte_params, byte_cfg)[:256], references)
    scores[references] = -np.inf
    ranked = np.argsort(-scores, kind="stable")[:256 - len(references)]
    hits = np.cumsum(np.isin(ranked, truth))
    k = np.arange(1, len(ranked) + 1)
    r_precision = float(hits[len(truth) - 1] / len(truth))

    if cfg.model == "byte-model":
        mcfg, params, tok = byte_cfg, byte_params, ByteTokenizer()
    else:
        from jaxlab.interop.models import load_model
        mcfg, params, tok = load_model(cfg.model)
    reference_ids = tokens.unreachable_ids(tok)
    reference_ids = reference_ids[reference_ids < mcfg.vocab_size]
    if reference_ids.size == 0:
        raise ValueError(f"{cfg.model}'s tokenizer has no unreachable ids to use as references")
    unembed = _unembedding(params, mcfg)[:tok.vocab_size]
    candidates = tokens.undertrained_candidates(unembed, reference_ids, cfg.percentile)
    others = np.setdiff1d(np.arange(tok.vocab_size), np.concatenate([candidates, reference_ids]))
    special = [t for t in (tok.bos_id, tok.pad_id, *tok.eos_ids) if t is not None]
    others = np.setdiff1d(others, special)
    n = min(cfg.n_verify, len(candidates), len(others))
    if n == 0:
        raise ValueError(f"the indicator flagged no token outside the {reference_ids.size} references at "
                         f"percentile {cfg.percentile}; lower the percentile")
    cand_sample = rng.choice(candidates, size=n, replace=False)
    rand_sample = rng.choice(others, size=n, replace=False)
    p = tokens.repeat_probabilities(params, mcfg, tok, np.concatenate([cand_sample, rand_sample]))
    p_cand, p_rand = p[:n], p[n:]
    floor = 1e-12  # log10 of a probability that underflowed
    log_cand, log_rand = np.log10(np.maximum(p_cand, floor)), np.log10(np.maximum(p_rand, floor))
    _plot(log_cand, log_rand, k, hits, len(truth), workdir)
    examples = [{"id": int(t), "text": tok.decode(np.array([t], np.int32)), "p_max": float(q)}
                for t, q in sorted(zip(cand_sample, p_cand), key=lambda x: x[1])[:10]]
    return {"references": int(reference_ids.size), "candidates": int(candidates.size),
            "log10_p_candidates": log_cand.tolist(), "log10_p_random": log_rand.tolist(),
            "log10_gap": float(log_rand.mean() - log_cand.mean()),
            "candidates_verified": float(np.mean(p_cand < VERIFIED_P)),
            "random_verified": float(np.mean(p_rand < VERIFIED_P)),
            "median_p_random": float(np.median(p_rand)), "least_repeated_candidates": examples,
            "byte_model_absent_bytes": int(len(absent)), "byte_model_r_precision": r_precision,
            "report": ("Least repeated candidates: "
                       + ", ".join(f"{e['id']} {e['text']!r} ({e['p_max']:.2g})" for e in examples)
                       + "\n\n![repeat probabilities and the byte model's precision-recall](undertrained.png)")}


def _plot(log_cand, log_rand, k, hits, n_truth: int, workdir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(min(log_cand.min(), log_rand.min()), 0, 30)
    a.hist(log_rand, bins=bins, alpha=0.6, label="random tokens")
    a.hist(log_cand, bins=bins, alpha=0.6, label="indicator candidates")
    a.axvline(np.log10(VERIFIED_P), color="grey", linestyle="--")
    a.set_xlabel("log10 p_max (asked to repeat the token)")
    a.legend(fontsize=8)
    b.plot(hits / n_truth, hits / k)
    b.set_xlabel("recall (absent bytes)")
    b.set_ylabel("precision")
    b.set_title("byte model: indicator against the known absent bytes")
    fig.tight_layout()
    fig.savefig(workdir / "undertrained.png", dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    r = stats.two_sample_nested_bootstrap([run["log10_p_random"] for run in per_seed],
                                          [run["log10_p_candidates"] for run in per_seed])
    median_random = min(run["median_p_random"] for run in per_seed)
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=THRESHOLD_LOG10,
        test=f"nested two-sample bootstrap of mean log10 p_max(random) - mean log10 p_max(candidate) over "
             f"{r['seeds']} seeds",
        preconditions=[("the prompts make the model repeat a random token", median_random >= VERIFIED_P,
                        f"lowest per-seed median p_max of random tokens {median_random:.3g} (needs >= {VERIFIED_P})")])
