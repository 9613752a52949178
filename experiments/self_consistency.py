"""Self-consistency: a majority vote of N sampled answers beats the greedy answer (Wang et al.
2023, "Self-Consistency Improves Chain of Thought Reasoning in Language Models").

Model and task. SmolLM2-135M-Instruct, zero-shot through its chat template, on
``instructed_arithmetic`` with one-digit operands (``a+b`` and ``a-b`` asked in words, "Answer
with the number only."; the answer is the last integer of the answer line). A pilot of 24
problems of a separate seed (100) before the claim was fixed: greedy accuracy 0.33 (it often
writes "3 + 4 = 7", sometimes a sentence that ends on another number). Per seed, ``n_problems``
test problems of the task (seed s draws its own problems) get a greedy answer and ``budget``
samples at ``temperature`` (:func:`jaxlab.ttc.harness.run_methods`: one prefill per prompt,
every method on the same samples).

Claim (fixed before any run, version 1): the majority vote of N = ``budget`` samples is right
more often than greedy decoding. Effect: the mean over seeds and problems of
vote_p - greedy_p (vote_p: the vote's score, the share of correct answers among the tied top
answers; greedy_p: 1/0); 95% interval: nested paired bootstrap over seeds x problems
(:func:`jaxlab.stats.paired_bootstrap_interval`). Held when the interval lies above 0, not held
when it lies at or below 0, inconclusive otherwise. Precondition: greedy accuracy (pooled over
seeds) within [0.2, 0.6] (the model partly solves the task; else inconclusive).

Also reported, not part of the verdict: best-of-N with the verifier as an oracle, the
confidence-weighted vote and DeepConf's filtered vote on the same samples, and accuracy
against tokens generated for k = 1, 2, 4, ... N samples (accuracy_vs_tokens.png).

Presets.
  smoke: a tiny random byte model stands in for SmolLM2 (it answers nothing right: the
    precondition fails, inconclusive); seconds.
  paper: SmolLM2-135M-Instruct, 50 problems per seed, N = 8 samples at temperature 0.7, at
    most 32 new tokens, 2 seeds (sized for the shared CPUs: a pilot of 16 problems x 8 samples
    of 48 tokens took 5 minutes under a load average near 14).

    jaxlab run experiments/self_consistency.py --preset smoke --seeds 2
    jaxlab run experiments/self_consistency.py --preset paper --seeds 2 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.ttc import harness

CLAIM = ("On one-digit arithmetic asked in words, SmolLM2-135M-Instruct's majority vote of 8 sampled answers "
         "is right more often than its greedy answer.")
CLAIM_VERSION = 1
GREEDY_RANGE = (0.2, 0.6)  # precondition: the model partly solves the task
REPORT_KEYS = ["greedy_accuracy", "vote_accuracy", "bon_accuracy", "deepconf_accuracy", "greedy_tokens",
               "vote_tokens"]
METHODS = ("greedy", "bon", "vote", "wvote", "deepconf")
PRESETS = {
    "smoke": {"model": "tiny-random", "n_problems": 8, "budget": 4, "max_new_tokens": 6, "window": 2,
              "batch_size": 16},
    "paper": {"model": "smollm2-135m-instruct", "n_problems": 50, "budget": 8, "max_new_tokens": 32,
              "window": 4, "batch_size": 64},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "self_consistency"
    model: str = "smollm2-135m-instruct"   # a load_model spec or "tiny-random"
    task: str = "instructed_arithmetic"
    difficulty: tuple[int, int] = (1, 1)
    n_problems: int = 50
    budget: int = 8                        # N samples per problem
    temperature: float = 0.7
    max_new_tokens: int = 32
    top_logprobs: int = 20
    window: int = 4                        # DeepConf group window (answers are ~15 tokens)
    keep: float = 0.5                      # DeepConf offline filter
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self):
        if self.n_problems < 2 or self.budget < 2:
            raise ValueError(f"need n_problems >= 2 and budget >= 2, got {self.n_problems}, {self.budget}")


def get_config() -> Config:
    return Config()


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    out = harness.run_config(cfg, Path(workdir) / "ttc", METHODS, progress=progress)
    m = out["methods"]
    res = {f"{name}_accuracy": m[name]["points"][-1]["accuracy"] for name in METHODS}
    res.update(greedy_tokens=m["greedy"]["points"][-1]["tokens"], vote_tokens=m["vote"]["points"][-1]["tokens"],
               greedy_scores=m["greedy"]["scores"], vote_scores=m["vote"]["scores"],
               points={name: m[name]["points"] for name in METHODS}, wall_s=out["wall_s"],
               report="\n".join([harness.markdown_table(out), "", "![accuracy vs tokens](ttc/accuracy_vs_tokens.png)"]))
    return res


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    vote_SP = np.array([r["vote_scores"] for r in per_seed], np.float64)
    greedy_SP = np.array([r["greedy_scores"] for r in per_seed], np.float64)
    g = float(greedy_SP.mean())
    r = stats.paired_bootstrap_interval(vote_SP, greedy_SP)
    low, high = GREEDY_RANGE
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=f"nested paired bootstrap of vote - greedy over {r['seeds']} seeds x {r['problems']} problems",
        preconditions=[(f"greedy accuracy within [{low}, {high}]", low <= g <= high,
                        f"greedy accuracy {g:.3f} over {greedy_SP.size} problems")])
