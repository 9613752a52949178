"""Untrusted JSON records: bounded parsing and field-level scoring.

Parsing (:func:`parse_record`) never evaluates anything and is bounded before ``json`` sees the
text: at most ``MAX_RECORD_CHARS`` characters, bracket nesting at most ``MAX_DEPTH`` (counted
outside strings), at most ``MAX_KEYS`` keys, number literals of at most ``MAX_NUMBER_CHARS``
characters, no ``NaN`` / ``Infinity``. The top level must be an object with string keys.

Duplicate keys make a record malformed (None): JSON leaves their meaning open (RFC 8259), and
taking either the first or the last value would let a model hedge by writing both.

Scoring (:func:`field_scores`) against a gold record ``{key: value or None}`` with field types
``{key: type}`` (:mod:`jaxlab.tasks.documents.values`). A predicted key whose value is None
(JSON ``null``) counts as not predicted; gold None means the field is absent from the
document. With

    TP = requested keys whose gold is not None and whose normalised prediction equals it
    FP = predicted (non-null) keys that are not TP: a wrong value, a value for an absent field,
         a key that was not requested, or a value of the wrong type
    FN = gold (non-null) keys that are not TP

precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN) (a wrong
value counts once in FP and once in FN). When the gold holds no field and nothing is
predicted, precision = recall = F1 = 1. ``exact`` is 1 when FP = FN = 0. A malformed record
scores 0 on all four.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from jaxlab.tasks.documents.values import normalize

MAX_RECORD_CHARS = 4096
MAX_DEPTH = 4
MAX_KEYS = 64
MAX_NUMBER_CHARS = 24


class _Malformed(ValueError):
    pass


def _depth_ok(text: str, max_depth: int) -> bool:
    depth, in_string, escaped = 0, False, False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif c in "]}":
            depth -= 1
    return True


def _pairs(pairs):
    if len(pairs) > MAX_KEYS:
        raise _Malformed("too many keys")
    out = {}
    for key, value in pairs:
        if key in out:
            raise _Malformed(f"duplicate key {key!r}")
        out[key] = value
    return out


def _number(kind):
    def parse(text):
        if len(text) > MAX_NUMBER_CHARS:
            raise _Malformed("number literal too long")
        return kind(text)
    return parse


def _constant(name):
    raise _Malformed(f"{name} is not JSON")


def parse_json(text: str, *, max_chars: int = MAX_RECORD_CHARS, max_depth: int = MAX_DEPTH):
    """Any JSON value of ``text`` within the bounds of the module docstring, else None."""
    if not isinstance(text, str) or len(text) > max_chars or not _depth_ok(text, max_depth):
        return None
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_int=_number(int),
                          parse_float=_number(float), parse_constant=_constant)
    except (ValueError, RecursionError, MemoryError, TypeError):
        return None


def parse_record(text: str) -> dict | None:
    """The JSON object in ``text`` (module docstring bounds, duplicate keys rejected), else None."""
    value = parse_json(text)
    return value if isinstance(value, dict) else None


def _matches(predicted, gold, kind: str) -> bool:
    if isinstance(predicted, bool) or not isinstance(predicted, (str, int, float)):
        return False
    if isinstance(predicted, (int, float)) and kind != "amount":
        return False
    key = normalize(predicted, kind)
    return key is not None and key == normalize(gold, kind)


def field_counts(gold: Mapping, types: Mapping, predicted: Mapping) -> tuple[int, int, int]:
    """(TP, FP, FN) of a parsed prediction (module docstring)."""
    tp = fp = 0
    for key, value in predicted.items():
        if value is None:
            continue
        if key in gold and gold[key] is not None and _matches(value, gold[key], types[key]):
            tp += 1
        else:
            fp += 1
    n_gold = sum(v is not None for v in gold.values())
    return tp, fp, n_gold - tp


def field_scores(gold: Mapping, types: Mapping, predicted: Mapping | None) -> dict[str, float]:
    """``{"precision", "recall", "f1", "exact"}`` of a prediction (None: malformed, all 0)."""
    if predicted is None:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "exact": 0.0}
    tp, fp, fn = field_counts(gold, types, predicted)
    if tp + fp + fn == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "exact": 1.0}
    return {"precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn), "exact": float(fp == 0 and fn == 0)}
