"""DeepConf reaches majority voting's accuracy with fewer generated tokens (Fu et al. 2025,
"Deep Think with Confidence").

Model, task and samples as in ``experiments/self_consistency.py``: SmolLM2-135M-Instruct on
one-digit ``instructed_arithmetic`` (pilot greedy accuracy 0.33 on 24 problems of seed 100),
N = ``budget`` samples per problem at ``temperature``, each with its per-token top-20
log-probs (:func:`jaxlab.ttc.harness.run_methods`).

DeepConf online (:mod:`jaxlab.ttc.deepconf`, the harness's ``deepconf-online``): token
confidence C_t = -(1/k) sum_j log P_t(j) over the top k = 20 tokens; group confidence = the
mean C_t over a sliding window of ``window`` tokens; a trace's confidence = its lowest group
confidence. The first ``warmup`` samples of a problem are generated in full; the threshold s
is the (100 - 100 ``stop_keep``)-th percentile of their confidences; every sample stops at the
first step whose group confidence falls below s, and only samples never stopped vote,
weighted by their confidence. Tokens: warm-up samples in full plus each other sample up to its
stop (exact: a stopped trace's prefix is what was sampled). Settings, fixed with the claim:
``stop_keep`` = 0.1 (DeepConf-low, the paper's headline token savings), ``warmup`` = 4 of
N = 8, window 4 tokens (answers here are ~15 tokens; the paper's 2048-token window is for long
reasoning traces). DeepConf-high (``stop_keep`` 0.9) on the same samples is reported beside it.

Claim (fixed before any run, version 1): at N = 8, DeepConf-low's accuracy is no more than
0.05 below majority voting's, and it generates at least 10% fewer tokens. Two effects, each a
mean over seeds x problems with a nested paired bootstrap interval
(:func:`jaxlab.stats.paired_bootstrap_interval`):

    accuracy   a = deepconf_p - vote_p                            part held when low > -0.05
    tokens     t = (tokens_vote_p - tokens_deepconf_p) / mean_p tokens_vote_p     (saved share)
                                                                  part held when low > 0.10

Held when both parts hold; not held when either part's interval lies entirely on the wrong side
of its threshold (a: high <= -0.05; t: high <= 0.10); inconclusive otherwise. The reported
effect is a (with its interval); the token part is in the verdict's test text. Precondition:
greedy accuracy (pooled over seeds) within [0.2, 0.6]; else inconclusive.

Presets.
  smoke: a tiny random byte model stands in (precondition fails: inconclusive); seconds.
  paper: SmolLM2-135M-Instruct, 50 problems per seed, N = 8 at temperature 0.7, at most 32
    new tokens, 2 seeds (the same problems and samples as self_consistency's paper preset).

    jaxlab run experiments/deepconf.py --preset smoke --seeds 2
    jaxlab run experiments/deepconf.py --preset paper --seeds 2 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.ttc import harness

CLAIM = ("On one-digit arithmetic asked in words, SmolLM2-135M-Instruct with DeepConf-low (online early "
         "stopping) at 8 samples is within 0.05 of majority voting's accuracy with at least 10% fewer tokens.")
CLAIM_VERSION = 1
GREEDY_RANGE = (0.2, 0.6)
ACCURACY_MARGIN = -0.05     # a > -0.05
TOKEN_SAVING = 0.10         # t > 0.10
STOP_KEEP_HIGH = 0.9        # DeepConf-high, reported beside the claim's DeepConf-low
REPORT_KEYS = ["vote_accuracy", "deepconf_accuracy", "deepconf_high_accuracy", "vote_tokens", "deepconf_tokens",
               "deepconf_high_tokens", "greedy_accuracy"]
METHODS = ("greedy", "vote", "deepconf", "deepconf-online")
PRESETS = {
    "smoke": {"model": "tiny-random", "n_problems": 8, "budget": 4, "warmup": 2, "max_new_tokens": 6,
              "window": 2, "batch_size": 16},
    "paper": {"model": "smollm2-135m-instruct", "n_problems": 50, "budget": 8, "warmup": 4,
              "max_new_tokens": 32, "window": 4, "batch_size": 64},
}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "deepconf"
    model: str = "smollm2-135m-instruct"
    task: str = "instructed_arithmetic"
    difficulty: tuple[int, int] = (1, 1)
    n_problems: int = 50
    budget: int = 8
    warmup: int = 4
    stop_keep: float = 0.1                 # DeepConf-low
    temperature: float = 0.7
    max_new_tokens: int = 32
    top_logprobs: int = 20
    window: int = 4
    keep: float = 0.5                      # the offline filtered vote (reported)
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.warmup < self.budget:
            raise ValueError(f"warmup must be in [1, budget - 1], got warmup={self.warmup}, budget={self.budget}")
        if self.n_problems < 2:
            raise ValueError(f"need n_problems >= 2, got {self.n_problems}")


def get_config() -> Config:
    return Config()


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    out = harness.run_config(cfg, Path(workdir) / "ttc", METHODS, progress=progress, warmup=cfg.warmup,
                             stop_keep=cfg.stop_keep)
    m = out["methods"]
    high = harness.score_methods(out["problems"], ["deepconf-online"], budget=cfg.budget, window=cfg.window,
                                 keep=cfg.keep, warmup=cfg.warmup, stop_keep=STOP_KEEP_HIGH,
                                 wall_s=out["wall_s"], seed=cfg.seed)["methods"]["deepconf-online"]
    dc, vote = m["deepconf-online"], m["vote"]
    return {"greedy_accuracy": m["greedy"]["points"][-1]["accuracy"],
            "vote_accuracy": vote["points"][-1]["accuracy"], "deepconf_accuracy": dc["points"][-1]["accuracy"],
            "deepconf_high_accuracy": high["points"][-1]["accuracy"],
            "offline_filtered_accuracy": m["deepconf"]["points"][-1]["accuracy"],
            "vote_tokens": vote["points"][-1]["tokens"], "deepconf_tokens": dc["points"][-1]["tokens"],
            "deepconf_high_tokens": high["points"][-1]["tokens"],
            "greedy_scores": m["greedy"]["scores"], "vote_scores": vote["scores"], "deepconf_scores": dc["scores"],
            "vote_token_counts": vote["tokens"], "deepconf_token_counts": dc["tokens"],
            "points": {name: m[name]["points"] for name in METHODS}, "deepconf_high_points": high["points"],
            "wall_s": out["wall_s"],
            "report": "\n".join([harness.markdown_table(out), "",
                                 f"DeepConf-high (stop_keep {STOP_KEEP_HIGH}) on the same samples: accuracy "
                                 f"{high['points'][-1]['accuracy']:.3f} [{high['points'][-1]['low']:.3f}, "
                                 f"{high['points'][-1]['high']:.3f}], {high['points'][-1]['tokens']:.1f} tokens "
                                 "per problem.", "", "![accuracy vs tokens](ttc/accuracy_vs_tokens.png)"])}


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    arr = lambda key: np.array([r[key] for r in per_seed], np.float64)
    acc = stats.paired_bootstrap_interval(arr("deepconf_scores"), arr("vote_scores"))
    vote_tokens = arr("vote_token_counts")
    scale = float(vote_tokens.mean())
    tok = stats.paired_bootstrap_interval(vote_tokens / scale, arr("deepconf_token_counts") / scale)
    g = float(arr("greedy_scores").mean())
    low, high = GREEDY_RANGE
    pre = [(f"greedy accuracy within [{low}, {high}]", low <= g <= high,
            f"greedy accuracy {g:.3f} over {arr('greedy_scores').size} problems")]
    v_acc = stats.decide(acc["effect"], acc["low"], acc["high"], threshold=ACCURACY_MARGIN, preconditions=pre,
                         test="")
    v_tok = stats.decide(tok["effect"], tok["low"], tok["high"], threshold=TOKEN_SAVING, test="")
    outcomes = {v_acc.outcome, v_tok.outcome}
    if "inconclusive" in outcomes and v_acc.reason.startswith("precondition"):
        outcome, reason = "inconclusive", v_acc.reason
    elif "not held" in outcomes:
        outcome, reason = "not held", ("accuracy part not held" if v_acc.outcome == "not held" else
                                       "token part not held")
    elif outcomes == {"held"}:
        outcome, reason = "held", ""
    else:
        outcome, reason = "inconclusive", "an interval contains its threshold"
    test = (f"nested paired bootstrap over {acc['seeds']} seeds x {acc['problems']} problems: accuracy "
            f"deepconf - vote (threshold {ACCURACY_MARGIN}) and saved token share {tok['effect']:.3f} "
            f"[{tok['low']:.3f}, {tok['high']:.3f}] (threshold {TOKEN_SAVING}): accuracy part {v_acc.outcome}, "
            f"token part {v_tok.outcome}")
    return stats.Verdict(outcome, v_acc.effect, v_acc.low, v_acc.high, ACCURACY_MARGIN, "greater", test,
                         v_acc.preconditions, reason)
