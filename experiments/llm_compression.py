"""Lossless text compression with a language model (LLMZip, Valmeekam et al. 2023; FineZip,
Mittu et al. 2024): arithmetic coding under the model's next-token distribution
(jaxlab.analysis.compression), against gzip -9, bz2 -9 and xz -9e on the same text.

Passages of ``passage_bytes`` bytes of the embedded documentation, at starts drawn by the seed
(jaxlab.data.corpus.sample_token_rows over bytes), are each compressed by the model coder and by
the three compressors. Decoding costs one forward pass per token, so the round trip is tested
on a sample: the first ``decode_bytes`` of each of the first ``decode_passages`` passages are
compressed and decoded again (this also gives the decode throughput).

Claim (fixed before any run, version 1): the model coder needs fewer bits per byte than
xz -9e. Effect: the mean over seeds and passages of bpb(xz -9e) - bpb(model); held when its 95%
interval (nested paired bootstrap over seeds x passages) lies above 0. Preconditions: the coder
is lossless: every decoded sample equals its text (``decompress(compress(x)) == x``; a failure
makes the sizes meaningless); both sides compress at all (mean bits per byte below 8, the raw
size), so the passages are long enough for xz's container to amortise and the model predicts
text rather than losing to raw bytes. Reported beside it: gzip and bz2, and the encode / decode
throughput of the model coder next to the compressors' (bytes/s). The model may have seen
Python's documentation in pre-training; the claim is about the coder, not memorisation, and
the report says so.

    jaxlab run experiments/llm_compression.py --preset smoke --seeds 2        # a tiny random model (tests)
    jaxlab run experiments/llm_compression.py --preset paper --seeds 3 --publish   # SmolLM2-135M-Instruct
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.analysis import compression
from jaxlab.data import ByteTokenizer
from jaxlab.data.corpus import sample_token_rows

CLAIM = "Arithmetic coding under the language model compresses held-out text to fewer bits per byte than xz -9e."
CLAIM_VERSION = 1
COMPRESSORS = ("gzip-9", "bz2-9", "xz-9e")
REPORT_KEYS = ["model_bits_per_byte", "xz-9e_bits_per_byte", "gzip-9_bits_per_byte", "encode_bytes_per_s",
               "decode_bytes_per_s", "roundtrips"]
PRESETS = {
    "smoke": {"model": "tiny-random", "passages": 3, "passage_bytes": 256, "window": 64, "decode_passages": 1,
              "decode_bytes": 64},
    "paper": {"model": "smollm2-135m-instruct", "passages": 12, "passage_bytes": 2048, "window": 256,
              "decode_passages": 2, "decode_bytes": 256},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "llm_compression"
    model: str = "smollm2-135m-instruct"  # a name or path load_model takes, or "tiny-random"
    passages: int = 12
    passage_bytes: int = 2048
    window: int = 256                     # tokens per coded chunk (one forward pass each)
    decode_passages: int = 2              # decoding costs one forward pass per token:
    decode_bytes: int = 256               # the round trip is tested on these prefixes
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.decode_passages <= self.passages:
            raise ValueError(f"decode_passages must be in [1, passages={self.passages}], got {self.decode_passages}")
        if not 1 <= self.decode_bytes <= self.passage_bytes:
            raise ValueError(f"decode_bytes must be in [1, passage_bytes={self.passage_bytes}], got {self.decode_bytes}")


def get_config():
    return Config()


def _model(cfg: Config):
    if cfg.model == "tiny-random":
        from jaxlab.models import transformer
        mcfg = transformer.Config(vocab_size=259, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=16,
                                  mlp_dim=64)
        return mcfg, transformer.init(mcfg, jax.random.key(0)), ByteTokenizer()
    from jaxlab.interop.models import load_model
    return load_model(cfg.model)


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    mcfg, params, tokenizer = _model(cfg)
    rows = sample_token_rows(ByteTokenizer(), cfg.passages, cfg.passage_bytes, cfg.seed)
    texts = [bytes(row.tolist()).decode("utf-8", errors="ignore") for row in rows]
    probs_fn = compression.model_probs_fn(params, mcfg, cfg.window)
    items = list(enumerate(texts))
    if progress:
        from tqdm.auto import tqdm
        items = tqdm(items, desc="passages", unit="passage")
    reports = [compression.compression_report(text, tokenizer, probs_fn, cfg.window, decode=False)
               for _, text in items]
    decoded = []
    for text in texts[:cfg.decode_passages]:
        sample = text[:cfg.decode_bytes]
        data = compression.compress(sample, tokenizer, probs_fn, cfg.window)
        start = time.perf_counter()
        back = compression.decompress(data, tokenizer, probs_fn, cfg.window)
        decoded.append({"bytes": len(sample.encode()), "roundtrip": back == sample,
                        "decode_bytes_per_s": len(sample.encode()) / (time.perf_counter() - start)})
    keys = ["model_bits_per_byte"] + [f"{c}_bits_per_byte" for c in COMPRESSORS]
    out = {k: float(np.mean([r[k] for r in reports])) for k in keys}
    speeds = ["encode_bytes_per_s"] + [f"{c}_bytes_per_s" for c in COMPRESSORS]
    out.update({k: float(np.median([r[k] for r in reports])) for k in speeds})
    out["decode_bytes_per_s"] = float(np.median([r["decode_bytes_per_s"] for r in decoded]))
    out["roundtrips"] = sum(r["roundtrip"] for r in decoded)
    out["decoded"] = len(decoded)
    _plot(reports, workdir)
    return {**out, "passages": reports, "decoded_samples": decoded,
            "report": "![bits per byte per passage](compression.png)\n\nThe model may have seen this "
                      "documentation in pre-training: the sizes measure the coder with this model, not "
                      "generalisation to unseen text."}


def _plot(reports: list[dict], workdir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    names = ["model"] + list(COMPRESSORS)
    values = [[r[f"{n}_bits_per_byte"] for r in reports] for n in names]
    ax.boxplot(values)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_ylabel("bits per byte")
    ax.set_title(f"{len(reports)} passages")
    fig.tight_layout()
    fig.savefig(workdir / "compression.png", dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    per_seed = next(iter(runs.values()))
    xz = np.array([[p["xz-9e_bits_per_byte"] for p in run["passages"]] for run in per_seed])
    model = np.array([[p["model_bits_per_byte"] for p in run["passages"]] for run in per_seed])
    r = stats.paired_bootstrap_interval(xz, model)
    good = sum(run["roundtrips"] for run in per_seed)
    decoded = sum(run["decoded"] for run in per_seed)
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=f"nested paired bootstrap of bpb(xz -9e) - bpb(model) over {r['seeds']} seeds x {r['problems']} passages",
        preconditions=[("the coder is lossless", good == decoded,
                        f"{good} of {decoded} decoded samples equal their text"),
                       ("xz compresses the passages", float(xz.mean()) < 8.0,
                        f"xz -9e {xz.mean():.2f} bits per byte (needs < 8)"),
                       ("the model compresses the passages", float(model.mean()) < 8.0,
                        f"model {model.mean():.2f} bits per byte (needs < 8)")])
