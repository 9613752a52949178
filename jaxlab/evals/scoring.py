"""Scoring completions of task problems: per-problem records, majority votes, summaries.

Pure functions of text (no model), so given completions can be scored directly:

    record = score_problem(task, example, greedy_response, sampled_responses)
    summary = summarize([record, ...], samples=8)

Every response goes through the task's exact verifier (hostile input; nothing is ever
``eval``-ed). Metrics of P problems, each with a greedy completion and k sampled ones
(c_p of them correct):

    greedy accuracy  = (1/P) sum_p greedy_correct_p          Wilson interval
    format rate      = share of greedy answers that are well formed (right or wrong)
    pass@j           = (1/P) sum_p [1 - C(k - c_p, j) / C(k, j)]    j = 1, 2, 4, ..., k; bootstrap
    maj@k            = (1/P) sum_p majority_p                  bootstrap over problems

majority_p votes over the k sampled answers, grouped by the task's parse of the answer (so
``3*5+7`` and ``(3*5)+7`` are one vote in countdown; malformed answers do not vote); the
most voted answer is verified. Ties score the share of tied answers that are correct (the
expected score of a uniformly random tie-break); a problem with no well-formed answer scores 0.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from jaxlab import stats
from jaxlab.tasks import Example, Task
from jaxlab.tasks.base import PARSE_ERRORS, extract_answer


def answer_key(task: Task, response: str) -> str | None:
    """The vote of a response: ``repr`` of the task's parse of its answer line, or None when
    the answer is missing or malformed."""
    answer = extract_answer(response)
    if answer is None:
        return None
    try:
        parsed = task.parse(answer)
    except PARSE_ERRORS:
        return None
    return None if parsed is None else repr(parsed)


def majority_vote(keys: Sequence[str | None], correct: Sequence[bool]) -> float:
    """Majority-vote score of one problem's samples (module docstring): ``keys[i]`` is sample
    i's vote (None: no vote), ``correct[i]`` whether it is right. Samples with equal keys must
    agree on correctness."""
    if len(keys) != len(correct):
        raise ValueError(f"{len(keys)} votes but {len(correct)} correctness flags")
    votes = Counter(k for k in keys if k is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    winners = [k for k, v in votes.items() if v == top]
    right = {k: bool(c) for k, c in zip(keys, correct) if k is not None}
    return sum(right[k] for k in winners) / len(winners)


def score_problem(task: Task, example: Example, greedy: str | None,
                  sampled: Sequence[str] = (), *, split: str | None = None) -> dict:
    """One problem's record: its prompt, reference answer, difficulty (and split), the greedy
    response with ``greedy_correct`` / ``greedy_formed``, and the sampled responses with
    ``sample_correct``, ``n_correct`` and ``majority`` (the maj@k score)."""
    record = {"prompt": example.prompt, "answer": example.answer,
              "difficulty": int(example.meta["difficulty"])}
    if split is not None:
        record["split"] = split
    if greedy is not None:
        record.update(greedy=greedy, greedy_correct=bool(task.verify(example, greedy)),
                      greedy_formed=bool(task.format_reward(greedy)))
    if sampled:
        correct = [bool(task.verify(example, r)) for r in sampled]
        keys = [answer_key(task, r) for r in sampled]
        record.update(samples=list(sampled), sample_correct=correct, n_correct=int(sum(correct)),
                      majority=majority_vote(keys, correct))
    return record


def pass_ks(samples: int) -> list[int]:
    """The k of the reported pass@k: 1, 2, 4, ... up to ``samples``, and ``samples`` itself."""
    ks, k = [], 1
    while k < samples:
        ks.append(k)
        k *= 2
    return ks + [samples] if samples >= 1 else []


def _mean_interval(values, confidence, n_boot, seed) -> dict:
    low, high = stats.bootstrap_mean_interval(values, confidence, n_boot=n_boot, seed=seed)
    return {"value": float(np.mean(values)), "low": low, "high": high}


def summarize_records(records: Sequence[dict], *, confidence: float = 0.95,
                      n_boot: int = stats.DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """The metrics of the module docstring over ``records`` (all with the same number of
    samples k, or none): ``{"n", "greedy": {"correct", "accuracy", "low", "high"},
    "format_rate", "truncated_rate", "pass@j": {"k", "value", "low", "high"}, ..., "maj@k":
    {"k", "value", "low", "high"}}``; greedy keys only when records have greedy responses."""
    if not records:
        raise ValueError("summarize_records needs at least one record")
    out: dict = {"n": len(records)}
    if "greedy" in records[0]:
        correct = sum(bool(r["greedy_correct"]) for r in records)
        low, high = stats.wilson_interval(correct, len(records), confidence)
        out["greedy"] = {"correct": correct, "accuracy": correct / len(records), "low": low, "high": high}
        out["format_rate"] = float(np.mean([r["greedy_formed"] for r in records]))
        if "greedy_truncated" in records[0]:
            out["truncated_rate"] = float(np.mean([r["greedy_truncated"] for r in records]))
    if "samples" in records[0]:
        sizes = {len(r["samples"]) for r in records}
        if len(sizes) != 1:
            raise ValueError(f"records hold different numbers of samples: {sorted(sizes)}")
        k = sizes.pop()
        c_P = np.array([r["n_correct"] for r in records])
        for j in pass_ks(k):
            out[f"pass@{j}"] = stats.pass_at_k_interval(k, c_P, j, confidence, n_boot=n_boot, seed=seed)
        out[f"maj@{k}"] = {"k": k, **_mean_interval([r["majority"] for r in records], confidence,
                                                    n_boot, seed)}
    return out


def summarize(records: Sequence[dict], **kwargs) -> dict:
    """``{"overall": summarize_records(all), "by_difficulty": {d: summarize_records(level d)},
    "by_split": {split: summarize_records(that split)}}`` (difficulties ascending, as strings,
    the way JSON writes keys; ``by_split`` only when the records carry their split)."""
    levels, splits = defaultdict(list), defaultdict(list)
    for r in records:
        levels[r["difficulty"]].append(r)
        if "split" in r:
            splits[r["split"]].append(r)
    out = {"overall": summarize_records(records, **kwargs),
           "by_difficulty": {str(d): summarize_records(levels[d], **kwargs) for d in sorted(levels)}}
    if splits:
        out["by_split"] = {s: summarize_records(rs, **kwargs) for s, rs in splits.items()}
    return out
