"""DeepConf (Fu et al. 2025, "Deep Think with Confidence"): confidence of reasoning traces
from the model's own token distributions, for filtered voting and online early stopping.

    token confidence   C_i = -(1/k) sum_{j=1..k} log P_i(j)     over the top-k tokens at step i
    group confidence   C_G(i) = (1/|G_i|) sum_{t in G_i} C_t      G_i the window of the last n
                                                                   tokens up to i (fewer at the start)
    trace confidence   lowest  = min_i C_G(i)
                       bottom  = mean of the lowest ``fraction`` of the C_G(i)
                       tail    = mean of C_t over the last ``tail`` tokens

A peaked distribution has one likely and k - 1 unlikely tokens, so a large C means a confident
step. Online, a warm-up of traces sets the threshold s = the (100 - 100 keep)-th percentile of
their lowest group confidences (keep = 0.1 keeps the top 10%: s is high; 0.9 is lenient), and a
new trace stops at the first step whose group confidence falls below s.
"""

from __future__ import annotations

import numpy as np


def token_confidence(topk_logprobs_TK) -> np.ndarray:
    """C_t [T] from the log-probs of the k most likely tokens at each step [T, k]."""
    lp = np.asarray(topk_logprobs_TK, np.float64)
    if lp.ndim != 2 or lp.shape[1] < 1:
        raise ValueError(f"top-k log-probs must be [T, k] with k >= 1, got shape {lp.shape}")
    return -lp.mean(axis=1)


def group_confidence(token_conf_T, window: int) -> np.ndarray:
    """C_G(i) [T]: the mean of C_t over the window of the last ``window`` tokens ending at i."""
    c = np.asarray(token_conf_T, np.float64)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    csum = np.concatenate([[0.0], np.cumsum(c)])
    end = np.arange(1, c.size + 1)
    start = np.maximum(0, end - window)
    return (csum[end] - csum[start]) / (end - start)


def trace_confidence(token_conf_T, *, kind: str = "lowest", window: int = 16, fraction: float = 0.1,
                     tail: int = 16) -> float:
    """One number per trace (module docstring): ``kind`` in lowest, bottom, tail, mean."""
    c = np.asarray(token_conf_T, np.float64)
    if c.size == 0:
        raise ValueError("a trace with no tokens has no confidence")
    if kind == "mean":
        return float(c.mean())
    if kind == "tail":
        return float(c[-tail:].mean())
    groups = group_confidence(c, window)
    if kind == "lowest":
        return float(groups.min())
    if kind == "bottom":
        n = max(1, int(np.ceil(fraction * groups.size)))
        return float(np.sort(groups)[:n].mean())
    raise ValueError(f"kind must be lowest, bottom, tail or mean, got {kind!r}")


def stop_threshold(warmup_confidences, keep: float) -> float:
    """s: the (100 - 100 keep)-th percentile of the warm-up traces' (lowest) confidences."""
    c = np.asarray(warmup_confidences, np.float64)
    if c.size == 0 or not 0 < keep <= 1:
        raise ValueError(f"need warm-up confidences and 0 < keep <= 1, got {c.size} values, keep={keep}")
    return float(np.percentile(c, 100.0 * (1.0 - keep)))


def early_stop_step(token_conf_T, threshold: float, window: int) -> int | None:
    """The first step i (0-based) whose group confidence is below ``threshold``, once a full
    window has been generated; None when the trace never falls below it."""
    groups = group_confidence(token_conf_T, window)
    below = np.flatnonzero(groups[window - 1:] < threshold)
    return None if below.size == 0 else int(below[0] + window - 1)
