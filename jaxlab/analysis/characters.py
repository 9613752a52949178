"""Character-level accuracy against tokenization (CharBench, Uzan and Pinter 2025): the length
of the token that holds a queried character, and how correctness correlates with it.

    spans = token_char_spans(tokenizer, text)         [(start, end), ...] one per token
    n = token_length_at(tokenizer, text, i)            characters of the token holding text[i]
    r = point_biserial(lengths_N, correct_N)           Pearson r of a length and a 0/1 outcome
    r, low, high = nested_bootstrap_correlation(lengths_S, correct_S)

Token spans come from decoding growing prefixes of the token ids: token k covers characters
[len(decode(ids[:k])), len(decode(ids[:k+1]))) of the text. That is exact when every token
boundary is a character boundary (always for ASCII text, which is what the character tasks
write); the text must decode back to itself. A byte tokenizer gives every ASCII character a
token of length 1. A token's length counts every character it covers, a leading space
included (" function" is 9).

The correlation is the point-biserial r (the Pearson correlation of a numeric x with a 0/1 y):

    r = (mean x | y=1  -  mean x | y=0) / s_x * sqrt(p (1 - p)),    p = mean y,
    s_x = the population standard deviation of x

CharBench reports that on positional tasks r is negative (the longer the token that holds the
character, the less often the model locates it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def token_char_spans(tokenizer, text: str) -> list[tuple[int, int]]:
    """The character span [start, end) of each token of ``tokenizer.encode(text)`` (no BOS),
    from prefix decodes (module docstring). Raises ValueError when the text does not decode
    back to itself or a token boundary splits a character."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"token_char_spans needs a non-empty str, got {text!r}")
    ids = [int(i) for i in np.asarray(tokenizer.encode(text)).reshape(-1)]
    if tokenizer.decode(ids) != text:
        raise ValueError(f"the tokenizer does not decode {text[:40]!r}... back to itself")
    spans, start = [], 0
    for k in range(len(ids)):
        prefix = tokenizer.decode(ids[:k + 1])
        if not text.startswith(prefix):
            raise ValueError(f"token {k} of {text[:40]!r} ends inside a character (prefix {prefix[-8:]!r})")
        spans.append((start, len(prefix)))
        start = len(prefix)
    return spans


def token_length_at(tokenizer, text: str, char_index: int) -> int:
    """The length in characters of the token that holds ``text[char_index]``."""
    if not isinstance(char_index, (int, np.integer)) or not 0 <= char_index < len(text):
        raise ValueError(f"char_index={char_index!r} must be an int in [0, {len(text)})")
    for start, end in token_char_spans(tokenizer, text):
        if start <= char_index < end:
            return end - start
    raise ValueError(f"no token holds character {char_index} of {text[:40]!r}")


def point_biserial(x_N, y_N) -> float:
    """The point-biserial correlation of numeric ``x_N`` and 0/1 ``y_N`` (module docstring;
    equal to Pearson's r). Raises ValueError on mismatched or empty input, a y that is not
    0/1, or a constant x or y (r is undefined)."""
    x = np.asarray(x_N, np.float64).reshape(-1)
    y = np.asarray(y_N, np.float64).reshape(-1)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"need two arrays of one length >= 2, got {np.shape(x_N)} and {np.shape(y_N)}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y must hold 0/1 values only")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite")
    p, sx = y.mean(), x.std()
    if p in (0.0, 1.0) or sx == 0.0:
        raise ValueError(f"the correlation is undefined: y is constant ({p:.0f}) or x is constant"
                         if p in (0.0, 1.0) else "the correlation is undefined: x is constant")
    return float((x[y == 1].mean() - x[y == 0].mean()) / sx * np.sqrt(p * (1.0 - p)))


def nested_bootstrap_correlation(x_S: Sequence, y_S: Sequence, confidence: float = 0.95, *,
                                 n_boot: int = 2000, seed: int = 0) -> dict:
    """The point-biserial r of all (x, y) pairs pooled over seeds, with a nested percentile
    bootstrap interval: each replicate draws S seeds with replacement and, within each drawn
    seed, its examples with replacement, pools them and takes r; replicates where r is
    undefined (a constant x or y) are dropped. (low, high) are the alpha/2 and 1 - alpha/2
    quantiles of the defined replicates, widened if needed to hold the estimate.

    ``x_S[s]``, ``y_S[s]``: the token lengths and 0/1 correctness of seed s's examples.
    Returns ``{"effect", "low", "high", "seeds", "examples", "defined"}`` (defined: the share of
    replicates with a defined r). Raises ValueError when r of the pooled data is undefined."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    xs = [np.asarray(x, np.float64).reshape(-1) for x in x_S]
    ys = [np.asarray(y, np.float64).reshape(-1) for y in y_S]
    if not xs or len(xs) != len(ys) or any(x.shape != y.shape or x.size == 0 for x, y in zip(xs, ys)):
        raise ValueError("need the same number (>= 1) of seeds and, per seed, as many x as y values (>= 1)")
    effect = point_biserial(np.concatenate(xs), np.concatenate(ys))
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(int(n_boot)):
        picks = rng.integers(0, len(xs), size=len(xs))
        idx = [rng.integers(0, xs[s].size, size=xs[s].size) for s in picks]
        x = np.concatenate([xs[s][i] for s, i in zip(picks, idx)])
        y = np.concatenate([ys[s][i] for s, i in zip(picks, idx)])
        if 0.0 < y.mean() < 1.0 and x.std() > 0.0:
            reps.append(point_biserial(x, y))
    if not reps:
        raise ValueError("no bootstrap replicate has a defined correlation")
    alpha = 1.0 - confidence
    low, high = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
    return {"effect": effect, "low": float(min(low, effect)), "high": float(max(high, effect)),
            "seeds": len(xs), "examples": int(sum(x.size for x in xs)), "defined": len(reps) / int(n_boot)}
