"""Alternating local/global attention against all-global attention for field extraction by
token classification (ModernBERT, Warner et al. 2024: every third layer global, the others a
sliding window).

Two encoders of the same size (``jaxlab.models.encoder``: byte tokens, the same width, depth,
heads and parameters) are trained as BIO taggers of the document fields
(``jaxlab.train.tagging``) on the same documents in the same order for the same steps, from
the same initialisation:

    alternating   layer l global when l % 3 == 0, else local: query t sees key s only when
                  |t - s| <= local_window / 2
    global        every layer global (each token sees the whole document)

Documents: ``jaxlab.tasks.documents.render_documents`` at difficulty ``difficulty`` (fields,
distractors, OCR noise), every kind, the ``layouts`` listed (HTML, the longest, is left out to
keep rows at ``seq_len`` bytes; a longer document is drawn again and the share reported). The
window is a small fraction of a document: at the paper preset local_window = 32 bytes against
documents of roughly 250-640 bytes (median about 420), so a local layer sees at most 33 of a
document's several hundred bytes (precondition below). Held-out documents (``n_test``, drawn from the seed) are
tagged, their tags decoded to records (``bio_record``: the asked fields, the longest run of
each), and scored by ``field_scores``, as a decoder's JSON would be. Seeds change the
documents, the initialisation and the data order.

Claim (version 1, fixed before any run). Alternating attention is non-inferior: its held-out
field F1 is within a margin of 0.03 of all-global's. Effect = mean over seeds and test
documents of F1_alternating - F1_global (per-document field F1), 95% interval by the nested
paired bootstrap over seeds and documents (``stats.paired_bootstrap_interval``); threshold
-0.03: held when the interval lies above -0.03, not held when it lies at or below -0.03,
inconclusive otherwise. Preconditions:
  1. the all-global model learns the task: its mean held-out F1 is at least 0.5 (a floor: a
     model that has not learned the task makes any non-inferiority vacuous);
  2. the window binds: the median held-out document is at least 4 x local_window bytes long
     (else the local layers see most of it and the comparison is not about locality);
  3. the cost is lower: the alternating model's analytic attention FLOPs on the held-out
     documents are below the global model's. This is a precondition, not a second claim:
     non-inferiority is only of interest at a lower cost, and the analytic count (below) is
     the cost the architecture fixes. Measured training wall time of both is reported beside
     it, not gated: on 2 CPU cores shared with other jobs it measures the neighbours as much
     as the model, and at this width the MLP and the per-layer dispatch weigh as much as
     attention.

Analytic attention FLOPs of a document of n tokens (scores q k^T and weights @ v, 2 FLOPs per
multiply-add, forward pass): 4 H Dh V per layer, with V the visible (query, key) pairs:
V = n^2 for a global layer, and V = n (2 r + 1) - r (r + 1) for a local layer of half-width
r = local_window // 2 (n > r; n^2 otherwise), since a query within r of an end loses the keys
past it. Training is 3x the forward (``jaxlab.train.mfu``'s convention); the ratio is the same.

    jaxlab run experiments/local_global_extraction.py --preset smoke --seeds 2 --publish   # a minute or two
    jaxlab run experiments/local_global_extraction.py --preset paper --seeds 2 --publish   # ~20 min per seed, 2 shared CPU cores
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.models import encoder
from jaxlab.tasks.documents import field_scores, render_documents
from jaxlab.tasks.documents.generator import FIELDS, LAYOUTS
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sharding import MeshConfig, experiment_mesh
from jaxlab.train.tagging import TaggingConfig, extract_records, train_tagger

CLAIM = ("An encoder with alternating local/global attention (every third layer global, a sliding window "
         "elsewhere) extracts document fields by token classification within 0.03 F1 of the same encoder "
         "with global attention in every layer, at lower attention cost.")
CLAIM_VERSION = 1
REPORT_KEYS = ["f1_alternating", "f1_global", "f1_difference", "attention_flops_ratio",
               "train_wall_s_alternating", "train_wall_s_global", "median_doc_bytes"]
MARGIN = 0.03
F1_FLOOR = 0.5
WINDOW_FACTOR = 4
ARMS = ("alternating", "global")
PRESETS = {
    "smoke": {"difficulty": (1, 2), "layouts": ("kv", "csv"), "seq_len": 256, "local_window": 16,
              "d_model": 32, "n_layers": 3, "n_heads": 2, "head_dim": 16, "mlp_dim": 64, "n_train": 16,
              "n_test": 4, "steps": 4, "batch_size": 4, "eval_batch": 4},
    "paper": {"difficulty": (6, 9), "seq_len": 640, "local_window": 32, "d_model": 64, "n_layers": 3,
              "n_heads": 2, "head_dim": 32, "mlp_dim": 128, "n_train": 2000, "n_test": 200, "steps": 250,
              "batch_size": 8},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "local_global_extraction"
    difficulty: tuple[int, int] = (6, 9)
    layouts: tuple[str, ...] = tuple(lay for lay in LAYOUTS if lay != "html")
    seq_len: int = 640             # bytes per row; longer documents are drawn again
    local_window: int = 32         # a local layer sees |t - s| <= local_window // 2
    global_every: int = 3
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 2
    head_dim: int = 32
    mlp_dim: int = 128
    n_train: int = 2000
    n_test: int = 200
    steps: int = 250
    batch_size: int = 8
    optim: OptimConfig = OptimConfig(lr=2e-3, warmup_steps=20, schedule="cosine", weight_decay=0.01)
    eval_batch: int = 16
    seed: int = 0
    mesh: MeshConfig = MeshConfig(data=1)

    def __post_init__(self):
        if not set(self.layouts) <= set(LAYOUTS) or not self.layouts:
            raise ValueError(f"layouts must be a non-empty subset of {LAYOUTS}, got {self.layouts}")
        if self.local_window >= self.seq_len:
            raise ValueError(f"local_window={self.local_window} must be below seq_len={self.seq_len}")

    def encoder(self, arm: str) -> encoder.EncoderConfig:
        """The encoder of an arm: identical but for the layer types."""
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; arms: {ARMS}")
        return encoder.EncoderConfig(
            vocab_size=259, d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
            head_dim=self.head_dim, mlp_dim=self.mlp_dim, global_every=self.global_every,
            local_window=self.local_window, layer_types=("global",) * self.n_layers if arm == "global" else None)


def get_config() -> Config:
    return Config()


def visible_pairs(n: int, layer_type: str, local_window: int) -> int:
    """V, the (query, key) pairs a layer computes on an n-token document (module docstring):
    n^2 (global), n (2 r + 1) - r (r + 1) with r = local_window // 2 (local, n > r)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    r = local_window // 2
    if layer_type == "global" or n <= r:
        return n * n
    return n * (2 * r + 1) - r * (r + 1)


def attention_flops(n: int, enc: encoder.EncoderConfig) -> float:
    """Forward attention FLOPs of an n-token document: sum over layers of 4 H Dh V."""
    return float(sum(4 * enc.n_heads * enc.head_dim * visible_pairs(n, t, enc.local_window) for t in enc.types))


def _train_wall(result, path: Path) -> float | None:
    """The run's training wall time, kept in ``path`` so a finished run read back still has it."""
    if result.train_wall_s is not None:
        path.write_text(json.dumps({"train_wall_s": result.train_wall_s}))
        return result.train_wall_s
    return json.loads(path.read_text())["train_wall_s"] if path.exists() else None


def run(cfg: Config, workdir: Path, *, progress: bool) -> dict:
    workdir = Path(workdir)
    train_docs, redrawn_train = render_documents(np.random.default_rng([cfg.seed, 0]), cfg.n_train, cfg.difficulty,
                                                 layouts=cfg.layouts, max_bytes=cfg.seq_len)
    test_docs, redrawn_test = render_documents(np.random.default_rng([cfg.seed, 1]), cfg.n_test, cfg.difficulty,
                                               layouts=cfg.layouts, max_bytes=cfg.seq_len)
    tag_cfg = TaggingConfig(fields=tuple(FIELDS), batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                            loop=LoopConfig(steps=cfg.steps, seed=cfg.seed, log_every=max(1, cfg.steps // 40),
                                            eval_every=cfg.steps, checkpoint_every=cfg.steps))
    mesh = experiment_mesh(cfg.mesh)
    lengths = np.asarray([len(d.text.encode("utf-8")) for d in test_docs])
    out: dict = {"median_doc_bytes": float(np.median(lengths)), "min_doc_bytes": int(lengths.min()),
                 "redrawn_fraction": (redrawn_train + redrawn_test) / (redrawn_train + redrawn_test
                                                                         + cfg.n_train + cfg.n_test),
                 "local_window": cfg.local_window, "layer_types": list(cfg.encoder("alternating").types)}
    per_doc, losses = {}, {}
    for arm in ARMS:
        enc = cfg.encoder(arm)
        result = train_tagger(workdir / arm, train_docs, encoder_cfg=enc, cfg=tag_cfg, optim=cfg.optim, mesh=mesh,
                              progress=progress)
        records = extract_records(result.state.params, test_docs, enc, tag_cfg, batch_size=cfg.eval_batch,
                                  progress=progress)
        per_doc[arm] = [field_scores(d.record, d.types, r)["f1"] for d, r in zip(test_docs, records)]
        losses[arm] = [m["train/loss"] for m in result.records if "train/loss" in m]
        out[f"f1_{arm}"] = float(np.mean(per_doc[arm]))
        out[f"train_wall_s_{arm}"] = _train_wall(result, workdir / arm / "train_wall.json")
        out[f"steady_tokens_per_s_{arm}"] = result.mean_tail("train/tokens_per_s")
        out[f"attention_flops_{arm}"] = float(sum(attention_flops(int(n), enc) for n in lengths))
        out[f"final_loss_{arm}"] = losses[arm][-1]
        out[f"examples_{arm}"] = [{"text": d.text, "gold": d.record, "predicted": r}
                                  for d, r in list(zip(test_docs, records))[:3]]
    out["f1_difference"] = out["f1_alternating"] - out["f1_global"]
    out["attention_flops_ratio"] = out["attention_flops_alternating"] / out["attention_flops_global"]
    out["per_doc_f1"] = per_doc
    out["losses"] = losses
    _plot(losses, per_doc, workdir / "local_global.png")
    out["report"] = _seed_report(out, cfg)
    return out


def _seed_report(r: dict, cfg: Config) -> str:
    lines = [f"Layers {r['layer_types']} (alternating) against all global; local window {cfg.local_window} bytes; "
             f"held-out documents of median {r['median_doc_bytes']:.0f} bytes (shortest {r['min_doc_bytes']}).", "",
             "| arm | field F1 | train wall s | attention GFLOPs (forward, test set) | final loss |",
             "|---|---|---|---|---|"]
    for arm in ARMS:
        wall = r[f"train_wall_s_{arm}"]
        lines.append(f"| {arm} | {r[f'f1_{arm}']:.3f} | {'-' if wall is None else f'{wall:.0f}'} | "
                     f"{r[f'attention_flops_{arm}'] / 1e9:.2f} | {r[f'final_loss_{arm}']:.3f} |")
    lines += ["", "![training loss and per-document F1](local_global.png)"]
    return "\n".join(lines)


def _plot(losses: dict, per_doc: dict, path: Path) -> None:
    """Training loss of both arms, and the per-document F1 of one arm against the other."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for arm, ys in losses.items():
        a.plot(np.arange(1, len(ys) + 1), ys, label=arm)
    a.set_yscale("log")
    a.set_xlabel("logged step")
    a.set_ylabel("training loss")
    a.legend(fontsize=8)
    b.scatter(per_doc["global"], per_doc["alternating"], s=10, alpha=0.5)
    b.plot([0, 1], [0, 1], color="#b03a2e", linestyle="--", linewidth=1)
    b.set_xlabel("F1, all global")
    b.set_ylabel("F1, alternating")
    b.set_title("held-out documents")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    """The three-way non-inferiority verdict (module docstring) from every seed's per-document F1."""
    per_seed = next(iter(runs.values()))
    alt_SP = np.asarray([r["per_doc_f1"]["alternating"] for r in per_seed], np.float64)
    glob_SP = np.asarray([r["per_doc_f1"]["global"] for r in per_seed], np.float64)
    r = stats.paired_bootstrap_interval(alt_SP, glob_SP)
    f1_global = float(glob_SP.mean())
    median = float(np.median([r_["median_doc_bytes"] for r_ in per_seed]))
    window = per_seed[0]["local_window"]
    flops = {arm: sum(r_[f"attention_flops_{arm}"] for r_ in per_seed) for arm in ARMS}
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=-MARGIN,
        test=(f"F1 alternating - F1 global, nested paired bootstrap over {r['seeds']} seeds x {r['problems']} "
              f"held-out documents; non-inferiority margin {MARGIN}"),
        preconditions=[
            ("the all-global model learns the task", f1_global >= F1_FLOOR,
             f"mean F1 of all-global {f1_global:.3f} (needs >= {F1_FLOOR})"),
            ("the window binds", median >= WINDOW_FACTOR * window,
             f"median document {median:.0f} bytes against {WINDOW_FACTOR} x window = {WINDOW_FACTOR * window}"),
            ("alternating attention costs less", flops["alternating"] < flops["global"],
             f"analytic attention FLOPs ratio {flops['alternating'] / flops['global']:.3f}"),
        ])
