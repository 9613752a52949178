"""InftyThink: at a fixed maximum context, reasoning in summarised segments solves longer
instances than one pass (Yan et al. 2025, "InftyThink: Breaking the Length Limits of
Long-Context Reasoning").

Task (:class:`jaxlab.ttc.infty.IterationTask`): iterate x -> (5 x + 3) mod 64 from x_0 for n
steps; the answer is x_n. The reasoning writes every x_t, so one pass needs about 3n bytes after
the prompt, and a model whose context is C = ``max_context`` bytes cannot finish an instance
whose trace does not fit. A programmatic teacher writes the training data: one-pass traces
(``one_pass_record``) and InftyThink segments of ``segment_steps`` updates that end in a summary
"[x=x_t n=steps left]" or the answer (``segment_records``).

Models. Two byte-level transformers of the same size, initialisation, optimiser and number of
steps are trained from scratch with SFT (``jaxlab.train.sft``) on instances with n in
``train_n``: one on the one-pass traces that fit C (longer ones cannot be trained at that
context and are left out), one on the segments. Both decode greedily within C:
one pass gets C - |prompt| new tokens; InftyThink iterates (``jaxlab.ttc.infty.infty_think``:
prompt + last summary, at most ``segment_tokens`` new tokens, at most ``max_iterations``).

Claim (fixed before any run, version 1): on instances whose one-pass trace does not fit the
context (n in ``long_n``), InftyThink is right more often than one pass. Effect: the mean over
seeds and instances of correct_infty - correct_one_pass on those instances; 95% interval:
nested paired bootstrap over seeds x instances (:func:`jaxlab.stats.paired_bootstrap_interval`).
Held when the interval lies above 0, not held when it lies at or below 0, inconclusive
otherwise. Precondition: both models are right on at least 80% of the short instances (n in
``short_n``, which both can fit): both learnt the task, so a difference on long instances is
about the context, not about one model failing to learn. That one pass cannot finish a long
instance follows from the context; what the claim tests is that the segmented model carries its
state through the summaries well enough to finish them.

Also reported: accuracy per n for both (accuracy_vs_n.png) and the tokens and iterations used.

Presets.
  smoke: a tiny model, a few steps; seconds (the precondition fails: inconclusive).
  paper: d_model 64, 2 layers, 1,500 SFT steps of 32 rows x 64 bytes per model, C = 64 bytes,
    segments of 4 updates, 48 test instances per n, 3 seeds.

    jaxlab run experiments/inftythink.py --preset smoke --seeds 2
    jaxlab run experiments/inftythink.py --preset paper --seeds 3 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxlab import stats
from jaxlab.data.chat import encode_record
from jaxlab.data.tokenizer import BYTES
from jaxlab.models import transformer
from jaxlab.train import sharding as shd
from jaxlab.train.fit import LoopConfig
from jaxlab.train.optim import OptimConfig
from jaxlab.train.sft import SFTConfig, train_sft
from jaxlab.ttc import infty

CLAIM = ("At a fixed context of 64 bytes, a small model reasoning in summarised segments (InftyThink) solves "
         "iterated-map instances too long for one pass more often than the same model trained for one pass.")
CLAIM_VERSION = 1
MIN_SHORT_ACCURACY = 0.8
REPORT_KEYS = ["one_pass_short", "infty_short", "one_pass_long", "infty_long"]
PRESETS = {
    "smoke": {"d_model": 16, "n_layers": 1, "steps": 4, "batch_size": 8, "n_test": 4, "n_train_records": 64,
              "test_n": (2, 24), "short_n": (2,), "long_n": (24,), "max_iterations": 2},
    "paper": {},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "inftythink"
    max_context: int = 64              # C, bytes (BOS, prompt and output)
    segment_steps: int = 4             # updates per InftyThink segment
    segment_tokens: int = 32           # the most new tokens of one iteration
    max_iterations: int = 16
    train_n: tuple[int, int] = (1, 40)
    test_n: tuple[int, ...] = (4, 8, 16, 24, 32, 40)
    short_n: tuple[int, ...] = (4, 8)  # both methods can fit these
    long_n: tuple[int, ...] = (24, 32, 40)  # one pass cannot
    n_test: int = 48                   # instances per n
    n_train_records: int = 20000       # instances drawn for training (before the context filter)
    d_model: int = 64
    n_layers: int = 2
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self):
        if not set(self.short_n) <= set(self.test_n) or not set(self.long_n) <= set(self.test_n):
            raise ValueError(f"short_n {self.short_n} and long_n {self.long_n} must be among test_n {self.test_n}")
        if self.max_context < 16 or self.segment_steps < 1:
            raise ValueError(f"need max_context >= 16 and segment_steps >= 1, got {self.max_context}, "
                             f"{self.segment_steps}")


def get_config() -> Config:
    return Config()


def model_config(cfg: Config) -> transformer.Config:
    return transformer.Config(vocab_size=264, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=4, n_kv_heads=2,
                              head_dim=cfg.d_model // 4, mlp_dim=4 * cfg.d_model)


def fits(record: dict, max_context: int) -> bool:
    """The record's tokens (BOS, prompt, response, EOS) fit the context."""
    return len(encode_record(record, BYTES)["inputs"]) + 1 <= max_context


def training_records(cfg: Config, task: infty.IterationTask) -> dict[str, list[dict]]:
    rng = np.random.default_rng(cfg.seed)
    draws = [task.draw(rng, *cfg.train_n) for _ in range(cfg.n_train_records)]
    one = [r for r in (task.one_pass_record(x0, n) for x0, n in draws) if fits(r, cfg.max_context)]
    seg = [r for x0, n in draws for r in task.segment_records(x0, n, cfg.segment_steps)]
    too_long = [r for r in seg if not fits(r, cfg.max_context)]
    if too_long:
        raise ValueError(f"a segment does not fit max_context={cfg.max_context}: {too_long[0]}")
    return {"one_pass": one, "infty": seg}


def train(records: list[dict], workdir: Path, cfg: Config, *, progress: bool) -> dict:
    mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
    sft = SFTConfig(batch_size=cfg.batch_size, seq_len=cfg.max_context,
                    loop=LoopConfig(steps=cfg.steps, seed=cfg.seed, log_every=max(1, cfg.steps // 20),
                                    eval_every=10 ** 9, checkpoint_every=max(1, cfg.steps // 2)))
    return train_sft(workdir, records, model_cfg=model_config(cfg), sft=sft, mesh=mesh, progress=progress,
                     optim=OptimConfig(lr=cfg.lr, warmup_steps=min(50, cfg.steps)), tokenizer=BYTES).params


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    workdir = Path(workdir)
    task = infty.IterationTask()
    records = training_records(cfg, task)
    m_cfg = model_config(cfg)
    one_params = train(records["one_pass"], workdir / "one_pass", cfg, progress=progress)
    infty_params = train(records["infty"], workdir / "infty", cfg, progress=progress)
    rng = np.random.default_rng(10_000 + cfg.seed)
    tests = [(int(rng.integers(task.m)), n) for n in cfg.test_n for _ in range(cfg.n_test)]
    prompts = [task.prompt(x0, n) for x0, n in tests]
    truth = [str(task.answer(x0, n)) for x0, n in tests]
    one = infty.one_pass(one_params, m_cfg, BYTES, prompts, max_context=cfg.max_context)
    inf = infty.infty_think(infty_params, m_cfg, BYTES, prompts, segment_tokens=cfg.segment_tokens,
                            max_context=cfg.max_context, max_iterations=cfg.max_iterations)
    rows = [{"n": n, "one_pass": o["answer"] == t, "infty": i["answer"] == t, "one_pass_tokens": o["tokens"],
             "infty_tokens": i["tokens"], "iterations": i["iterations"]}
            for (_, n), t, o, i in zip(tests, truth, one, inf)]
    per_n = {str(n): {m: float(np.mean([r[m] for r in rows if r["n"] == n])) for m in ("one_pass", "infty")}
             for n in cfg.test_n}
    mean = lambda m, ns: float(np.mean([r[m] for r in rows if r["n"] in ns]))  # noqa: E731
    _plot(per_n, workdir / "accuracy_vs_n.png", cfg)
    table = ["| n | one pass | InftyThink | InftyThink iterations (mean) |", "|---:|---:|---:|---:|"]
    for n in cfg.test_n:
        its = np.mean([r["iterations"] for r in rows if r["n"] == n])
        table.append(f"| {n} | {per_n[str(n)]['one_pass']:.3f} | {per_n[str(n)]['infty']:.3f} | {its:.1f} |")
    return {"rows": rows, "per_n": per_n, "one_pass_records": len(records["one_pass"]),
            "infty_records": len(records["infty"]),
            "one_pass_short": mean("one_pass", cfg.short_n), "infty_short": mean("infty", cfg.short_n),
            "one_pass_long": mean("one_pass", cfg.long_n), "infty_long": mean("infty", cfg.long_n),
            "short_n": list(cfg.short_n), "long_n": list(cfg.long_n),
            "report": "\n".join(table + ["", "![accuracy vs n](accuracy_vs_n.png)"])}


def _plot(per_n: dict, path: Path, cfg: Config) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [int(n) for n in per_n]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for m, label in (("one_pass", "one pass"), ("infty", "InftyThink")):
        ax.plot(ns, [per_n[str(n)][m] for n in ns], marker="o", label=label)
    ax.set_xlabel("steps n of the instance")
    ax.set_ylabel("accuracy")
    ax.set_title(f"context {cfg.max_context} bytes")
    ax.set_ylim(-0.02, 1.02)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    long_n, short_n = set(per_seed[0]["long_n"]), set(per_seed[0]["short_n"])
    inf_SP = np.array([[r["infty"] for r in s["rows"] if r["n"] in long_n] for s in per_seed], np.float64)
    one_SP = np.array([[r["one_pass"] for r in s["rows"] if r["n"] in long_n] for s in per_seed], np.float64)
    short = {m: float(np.mean([r[m] for s in per_seed for r in s["rows"] if r["n"] in short_n]))
             for m in ("one_pass", "infty")}
    r = stats.paired_bootstrap_interval(inf_SP, one_SP)
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=f"nested paired bootstrap of InftyThink - one pass on long instances over {r['seeds']} seeds x "
             f"{r['problems']} instances",
        preconditions=[(f"both right on >= {MIN_SHORT_ACCURACY:.0%} of short instances",
                        min(short.values()) >= MIN_SHORT_ACCURACY,
                        f"one pass {short['one_pass']:.3f}, InftyThink {short['infty']:.3f}")])
