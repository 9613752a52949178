"""BiLD: a small model writes while it is confident, a large model takes over where it is not and
rolls back the small model's tokens it finds unlikely; the speed-up comes with output that
mostly agrees with the large model's own (Kim et al. 2023, "Speculative Decoding with Big Little
Decoder").

Model, draft and task: as in ``experiments/speculative_svip.py`` (SmolLM2-135M-Instruct, greedy,
``doc_extract`` difficulty 1-3 through the chat template, a draft pruned to ``draft_layers``
layers, distilled on the target's own answers to ``n_train`` problems, its head over
``draft_vocab`` tokens; :func:`jaxlab.ttc.speculation.build_draft`). BiLD
(:class:`jaxlab.samplers.speculative.SpeculativeConfig` ``length="bild", accept="bild"``): the
draft writes up to ``bild_gamma`` tokens and falls back to the target as soon as its top
probability is below ``bild_fallback`` = 0.5; the target keeps each draft token while
-log p(token) <= ``bild_rollback`` = 2 nats and replaces the first one that fails with its argmax.

Claim (fixed before any run, version 1): BiLD's output agrees with the target's own greedy output
on at least 90% of its tokens. Effect: the mean over seeds and problems of the share of the
target's greedy tokens that BiLD reproduces at the same position
(:func:`jaxlab.ttc.speculation.agreement`; a shift after one differing token counts every later
token as a disagreement, so this is strict); 95% interval: nested paired bootstrap over seeds x
problems against a constant 0.9 (:func:`jaxlab.stats.paired_bootstrap_interval`). Held when the
interval lies above 0.9, not held when it lies at or below 0.9, inconclusive otherwise.
Precondition (the speed-up the agreement has to come with): BiLD needs at most 1/1.5 target calls
per token (>= 1.5 tokens per target call, pooled over seeds).

Also reported: wall-time speed-up against plain greedy decoding on this machine and the share of
outputs identical to greedy.

Presets.
  smoke: a tiny random byte model stands in for SmolLM2 (the draft is an unpruned copy);
    seconds. Its verdict means nothing.
  paper: SmolLM2-135M-Instruct, an 8-layer draft with a 4,096-token head distilled for 40 steps on
    48 problems, 12 test problems, 48 new tokens, 2 seeds.

    jaxlab run experiments/speculative_bild.py --preset smoke
    jaxlab run experiments/speculative_bild.py --preset paper --seeds 2 --publish
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxlab import stats
from jaxlab.ttc import speculation

CLAIM = ("BiLD with a pruned and distilled SmolLM2-135M draft reproduces at least 90% of SmolLM2-135M-Instruct's "
         "greedy tokens while making at most one target call per 1.5 tokens.")
CLAIM_VERSION = 1
MIN_AGREEMENT = 0.9
MIN_TOKENS_PER_CALL = 1.5
REPORT_KEYS = ["bild_tokens_per_call", "bild_speedup"]
PRESETS = {
    "smoke": speculation.SMOKE,
    "paper": {},
}


@dataclasses.dataclass(frozen=True)
class Config(speculation.ComparisonConfig):
    name: str = "speculative_bild"


def get_config() -> Config:
    return Config()


def run(cfg: Config, workdir: Path, *, progress: bool = True) -> dict:
    return speculation.run_comparison(cfg, workdir, ("bild",), progress=progress)


def claim_verdict(runs: dict) -> stats.Verdict:
    """The verdict of the module docstring from ``runs = {variant: [results per seed]}``."""
    per_seed = next(iter(runs.values()))
    agree_SP = np.array([[r["agreement"] for r in s["rows"]["bild"]] for s in per_seed], np.float64)
    tokens = sum(s["summary"]["bild"]["tokens"] for s in per_seed)
    calls = sum(s["summary"]["bild"]["target_calls"] for s in per_seed)
    r = stats.paired_bootstrap_interval(agree_SP, np.full_like(agree_SP, MIN_AGREEMENT))
    per_call = tokens / max(calls, 1)
    return stats.decide(
        r["effect"] + MIN_AGREEMENT, r["low"] + MIN_AGREEMENT, r["high"] + MIN_AGREEMENT, threshold=MIN_AGREEMENT,
        test=f"nested bootstrap of BiLD's token agreement with greedy over {r['seeds']} seeds x {r['problems']} problems",
        preconditions=[(f"BiLD yields >= {MIN_TOKENS_PER_CALL} tokens per target call", per_call >= MIN_TOKENS_PER_CALL,
                        f"{per_call:.2f} tokens per target call")])
