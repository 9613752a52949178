"""Answers from intermediate points of a trace, voted, beat the last answer (Hammoud et al.
2025, "Beyond the Last Answer: Your Reasoning Trace Uncovers More than You Think").

Model and task as in ``experiments/self_consistency.py``: SmolLM2-135M-Instruct, zero-shot
through its chat template, on one-digit ``instructed_arithmetic`` (pilot greedy accuracy 0.33
on 24 problems of seed 100). Method (the harness's ``inter``, :mod:`jaxlab.ttc.harness`): one
trace per problem is sampled at ``temperature``; its M tokens (before its stop token) are cut
after round(j M / J) tokens, j = 1..J-1 (J = ``inter_points`` = 4; distinct cuts in
[1, M - 1]); from each cut the model continues greedily, and the answer of prefix +
continuation is parsed. The final answer is the majority vote of these intermediate answers
and the trace's own last answer (ties score the share of correct tied answers). The paper
segments long reasoning traces at linguistic markers; answers here are ~15 tokens, so the cuts
are at fixed fractions of the trace.

Claim (version 2, fixed before its run): the vote over intermediate answers is right more
often than the trace's last answer. Effect: the mean over seeds and problems of
inter_p - last_p (last_p: 1/0, the trace's own answer; the harness's ``vote`` at k = 1);
95% interval: nested paired bootstrap over seeds x problems
(:func:`jaxlab.stats.paired_bootstrap_interval`). Held when the interval lies above 0, not held
when it lies at or below 0, inconclusive otherwise. Precondition: greedy accuracy (pooled)
within [0.2, 0.6]; else inconclusive. (Version 1 cut the greedy trace and was stopped during
its first seed, unpublished: a greedy continuation of a greedy trace's prefix regenerates the
same trace, so all 50 answers of seed 0 were unchanged and the comparison was empty by
construction.)

Presets.
  smoke: a tiny random byte model stands in (precondition fails: inconclusive); seconds.
  paper: SmolLM2-135M-Instruct, 50 problems per seed (the same problems as self_consistency's
    paper preset), traces at temperature 0.7, at most 32 new tokens per completion, 2 seeds.

    jaxlab run experiments/intermediate_answers.py --preset smoke --seeds 2
    jaxlab run experiments/intermediate_answers.py --preset paper --seeds 2 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.ttc import harness

CLAIM = ("On one-digit arithmetic asked in words, the majority vote of SmolLM2-135M-Instruct's answers from "
         "intermediate points of a sampled trace is right more often than the trace's last answer.")
CLAIM_VERSION = 2
GREEDY_RANGE = (0.2, 0.6)
REPORT_KEYS = ["last_accuracy", "inter_accuracy", "last_tokens", "inter_tokens", "changed", "greedy_accuracy"]
METHODS = ("greedy", "vote", "inter")
PRESETS = {
    "smoke": {"model": "tiny-random", "n_problems": 8, "max_new_tokens": 6, "batch_size": 16},
    "paper": {"model": "smollm2-135m-instruct", "n_problems": 50, "max_new_tokens": 32, "batch_size": 64},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "intermediate_answers"
    model: str = "smollm2-135m-instruct"
    task: str = "instructed_arithmetic"
    difficulty: tuple[int, int] = (1, 1)
    n_problems: int = 50
    inter_points: int = 4                  # J: cuts at j/J of the trace, j < J
    temperature: float = 0.7               # the trace's
    max_new_tokens: int = 32
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self):
        if self.inter_points < 2 or self.n_problems < 2:
            raise ValueError(f"need inter_points >= 2 and n_problems >= 2, got {self.inter_points}, {self.n_problems}")


def get_config() -> Config:
    return Config()


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    out = harness.run_task(cfg.model, cfg.task, n=cfg.n_problems, seed=cfg.seed, difficulty=cfg.difficulty,
                           methods=METHODS, budget=1, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                           inter_points=cfg.inter_points, batch_size=cfg.batch_size, progress=progress)
    harness.write_results(out, Path(workdir) / "ttc",
                          title=f"{cfg.model}, {cfg.task} {cfg.difficulty}, seed {cfg.seed}")
    m = out["methods"]
    last, i = m["vote"], m["inter"]
    return {"last_accuracy": last["points"][0]["accuracy"], "inter_accuracy": i["points"][0]["accuracy"],
            "last_tokens": last["points"][0]["tokens"], "inter_tokens": i["points"][0]["tokens"],
            "changed": int(np.sum(np.array(i["scores"]) != np.array(last["scores"]))),
            "greedy_accuracy": m["greedy"]["points"][0]["accuracy"], "greedy_scores": m["greedy"]["scores"],
            "last_scores": last["scores"], "inter_scores": i["scores"], "wall_s": out["wall_s"],
            "report": "\n".join([harness.markdown_table(out), "", "![accuracy vs tokens](ttc/accuracy_vs_tokens.png)"])}


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    inter_SP = np.array([r["inter_scores"] for r in per_seed], np.float64)
    last_SP = np.array([r["last_scores"] for r in per_seed], np.float64)
    greedy_SP = np.array([r["greedy_scores"] for r in per_seed], np.float64)
    g = float(greedy_SP.mean())
    r = stats.paired_bootstrap_interval(inter_SP, last_SP)
    low, high = GREEDY_RANGE
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=f"nested paired bootstrap of inter - last answer over {r['seeds']} seeds x {r['problems']} problems",
        preconditions=[(f"greedy accuracy within [{low}, {high}]", low <= g <= high,
                        f"greedy accuracy {g:.3f} over {greedy_SP.size} problems")])
