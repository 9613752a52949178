"""SVIP: the draft's entropy says when to stop drafting, and each target pass then yields more
tokens than with a fixed draft length (Zhang et al. 2024, "Draft Model Knows When to Stop: A
Self-Verification Length Policy for Speculative Decoding").

Model, draft and task (shared with ``experiments/speculative_bild.py``:
:class:`jaxlab.ttc.speculation.ComparisonConfig`). The target is SmolLM2-135M-Instruct, decoding greedily through its chat
template on ``doc_extract`` (field extraction from generated business documents, difficulty
1-3; the answer is JSON that copies values from the document) up to ``max_new_tokens`` or its
end-of-turn token. The draft is made from the target in the run
(:func:`jaxlab.ttc.speculation.build_draft`): the target pruned to ``draft_layers`` of its 30
layers by angular distance, distilled (``sft.loss=distill``, the target's distributions as soft
labels) on the target's own greedy answers to ``n_train`` training problems, its head cut to the
``draft_vocab`` most frequent tokens of those prompts and answers. Every seed draws its own
problems and distils its own draft. ``n_test`` held-out problems are decoded at batch 1 by
plain greedy decoding, speculative decoding with a fixed ``gamma`` and with SVIP's length rule
(up to ``svip_gamma`` tokens; stop when 1 - sqrt(svip_c H(q)) < svip_min_accept, i.e. the
draft's entropy exceeds (1 - 0.5)^2 / 0.5 = 0.5 nats), all with exact acceptance
(:func:`jaxlab.ttc.speculation.compare`).

Claim (fixed before any run, version 1): with the same draft, SVIP yields more tokens per target
call than the fixed draft length gamma = 4, at equal output. Effect: the mean over seeds and
problems of tokens_per_call(SVIP) - tokens_per_call(fixed); 95% interval: nested paired
bootstrap over seeds x problems (:func:`jaxlab.stats.paired_bootstrap_interval`). Held when the
interval lies above 0, not held when it lies at or below 0, inconclusive otherwise.
Preconditions: (1) equal output: both methods reproduce the target's greedy output on at least
95% of the problems (a gamma + 1 token pass rounds differently from a 1-token step, which can
flip a near tie); (2) the fixed-gamma draft accepts on average between 0.5 and gamma - 0.5
tokens per round (a useless or a perfect draft leaves nothing for a length rule to decide).

Also reported: wall-time speed-up of both against plain greedy decoding on this machine, draft
calls, the distillation's KL and greedy agreement, and prompt lookup (n-gram copying from the
context, no draft model, up to ``lookup_gamma`` = 8 tokens) on the same problems.

Presets.
  smoke: a tiny random byte model stands in for SmolLM2, a 1-layer draft, instructed arithmetic
    prompts; seconds. Its verdict means nothing.
  paper: SmolLM2-135M-Instruct, an 8-layer draft with a 4,096-token head distilled for 40 steps
    on 48 problems, 12 test problems, 48 new tokens, 2 seeds.

    jaxlab run experiments/speculative_svip.py --preset smoke
    jaxlab run experiments/speculative_svip.py --preset paper --seeds 2 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.ttc import speculation

CLAIM = ("With a pruned and distilled SmolLM2-135M draft, SVIP's entropy-based draft length yields more tokens per "
         "target call than a fixed draft length of 4, at equal greedy output.")
CLAIM_VERSION = 1
MIN_IDENTICAL = 0.95
REPORT_KEYS = ["fixed_tokens_per_call", "svip_tokens_per_call", "fixed_speedup", "svip_speedup"]
PRESETS = {
    "smoke": speculation.SMOKE,
    "paper": {},
}


@dataclasses.dataclass(frozen=True)
class Config(speculation.ComparisonConfig):
    name: str = "speculative_svip"


def get_config() -> Config:
    return Config()


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    return speculation.run_comparison(cfg, workdir, ("fixed", "svip", "lookup"), progress=progress)


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    svip_SP = np.array([[r["tokens_per_call"] for r in s["rows"]["svip"]] for s in per_seed], np.float64)
    fixed_SP = np.array([[r["tokens_per_call"] for r in s["rows"]["fixed"]] for s in per_seed], np.float64)
    identical = {m: float(np.mean([r["identical"] for s in per_seed for r in s["rows"][m]])) for m in ("fixed", "svip")}
    accepted = float(np.mean([s["summary"]["fixed"]["tokens_per_call"] - 1 for s in per_seed]))
    gamma = per_seed[0]["settings"]["gamma"]
    r = stats.paired_bootstrap_interval(svip_SP, fixed_SP)
    return stats.decide(
        r["effect"], r["low"], r["high"], threshold=0.0,
        test=f"nested paired bootstrap of SVIP - fixed tokens per target call over {r['seeds']} seeds x "
             f"{r['problems']} problems",
        preconditions=[
            (f"both outputs equal the target's greedy output on >= {MIN_IDENTICAL:.0%} of problems",
             min(identical.values()) >= MIN_IDENTICAL,
             f"identical: fixed {identical['fixed']:.0%}, SVIP {identical['svip']:.0%}"),
            (f"the fixed-gamma draft accepts between 0.5 and {gamma - 0.5} tokens per round",
             0.5 <= accepted <= gamma - 0.5, f"{accepted:.2f} accepted per round")])
