"""Document extraction: generated documents hold their targets, verifiers and scores on
hostile records, BIO tags from spans, splits and determinism."""

import csv
import io
import json
import re

import numpy as np
import pytest

from jaxlab import tasks
from jaxlab.tasks.documents import bio_label_names, bio_tags, field_scores, normalize, parse_record, render_document
from jaxlab.tasks.documents.generator import DISTRACTORS, KINDS, LAYOUTS, SCHEMAS
from jaxlab.tasks.documents.records import MAX_DEPTH, MAX_RECORD_CHARS


def structural_values(text, layout):
    """Every value the layout's own syntax delimits (a parser per serialisation)."""
    if layout == "json":
        return [v for k, v in json.loads(text).items() if k not in ("document", "items")]
    if layout == "csv":
        return [row[1] for row in csv.reader(io.StringIO(text)) if len(row) == 2]
    if layout == "markdown":
        return [cells[2].strip() for line in text.splitlines()
                if len(cells := line.split("|")) == 4]
    if layout == "html":
        return re.findall(r"<th>[^<]*</th><td>([^<]*)</td>", text)
    if layout == "kv":
        return [m.group(1) for line in text.splitlines() if (m := re.match(r"^.+?(?:\s?:\s+| - )(.+)$", line))]
    # two_column: "Label: value<pad>Label: value"
    return [v for line in text.splitlines() for v in re.findall(r":\s(.+?)(?=\s{2,}[^:]+:|$)", line)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", KINDS)
def test_clean_documents_parse_back_to_their_records(kind, layout):
    rng = np.random.default_rng([3, KINDS.index(kind), LAYOUTS.index(layout)])
    for difficulty in (1, 4, 7, 10):
        doc = render_document(rng, difficulty, kind=kind, layout=layout, noise=False)
        parsed = structural_values(doc.text, layout)
        for field, gold in doc.record.items():
            if gold is None:
                assert field not in doc.spans  # absent: not shown
                continue
            start, end = doc.spans[field]
            written = doc.text[start:end]
            assert written in parsed, (field, written, layout)
            assert normalize(written, doc.types[field]) == normalize(gold, doc.types[field]) is not None


def test_noisy_documents_keep_exact_value_spans_and_asked_field_counts():
    rng = np.random.default_rng(0)
    noisy_seen = False
    for difficulty in range(1, 11):
        for _ in range(6):
            doc = render_document(rng, difficulty, layout="kv")
            n_fields = len(SCHEMAS[doc.kind])
            assert len(doc.record) == min(1 + difficulty, n_fields)
            pool = n_fields - len(doc.record) + len(DISTRACTORS[doc.kind])
            # shown = asked and present + distractors
            assert len(doc.spans) == sum(v is not None for v in doc.record.values()) + min(difficulty // 2, pool)
            for field, gold in doc.record.items():
                if gold is not None:
                    s, e = doc.spans[field]
                    assert normalize(doc.text[s:e], doc.types[field]) == normalize(gold, doc.types[field])
            if difficulty >= 8:
                clean = render_document(np.random.default_rng(1), difficulty, kind=doc.kind, layout="kv", noise=False)
                noisy_seen |= bool(re.search(r"[a-z] [a-z]", doc.text)) and clean.text != doc.text
    assert noisy_seen


def test_generation_is_deterministic_per_seed():
    task = tasks.get("doc_extract")
    a = [task.generate(np.random.default_rng(7), d) for d in (1, 5, 9)]
    b = [task.generate(np.random.default_rng(7), d) for d in (1, 5, 9)]
    c = [task.generate(np.random.default_rng(8), d) for d in (1, 5, 9)]
    assert a == b and a != c


def test_spans_in_meta_locate_values_in_the_prompt():
    task = tasks.get("doc_extract")
    rng = np.random.default_rng(2)
    for _ in range(20):
        ex = task.generate(rng, 6)
        base = ex.meta["doc_start"]
        for field, (s, e) in ex.meta["spans"].items():
            gold = ex.meta["record"].get(field)
            if gold is not None:
                assert normalize(ex.prompt[base + s:base + e], ex.meta["types"][field]) == \
                    normalize(gold, ex.meta["types"][field])


GOLD = {"invoice_number": "INV-7", "total": "1234.50", "due_date": "2024-03-12", "currency": "EUR",
        "vendor_name": "Acme  Labs GmbH", "ship_date": None}
TYPES = {"invoice_number": "id", "total": "amount", "due_date": "date", "currency": "currency",
         "vendor_name": "text", "ship_date": "date"}


def test_known_field_scores():
    right = {"invoice_number": "INV-7", "total": "€1.234,50", "due_date": "12 Mar 2024", "currency": "eur",
             "vendor_name": "acme labs gmbh", "ship_date": None}
    assert field_scores(GOLD, TYPES, right) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "exact": 1.0}
    # missing keys count as not predicted (null): recall drops, precision stays
    assert field_scores(GOLD, TYPES, {"total": 1234.5}) == {"precision": 1.0, "recall": 0.2,
                                                            "f1": pytest.approx(2 / 6), "exact": 0.0}
    # 1 right, 1 wrong value (FP and FN), a value for an absent field and an extra key (FP each)
    pred = {"invoice_number": "INV-7", "total": "1234.51", "ship_date": "2024-01-01", "note": "x"}
    s = field_scores(GOLD, TYPES, pred)
    assert s == {"precision": 0.25, "recall": 0.2, "f1": pytest.approx(2 / (2 + 3 + 4)), "exact": 0.0}
    assert field_scores({"a": None}, {"a": "text"}, {}) == {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                                           "exact": 1.0}
    assert field_scores(GOLD, TYPES, None)["f1"] == 0.0


@pytest.mark.parametrize("value, kind, key", [
    ("2024-03-12", "date", "2024-03-12"), ("2024/03/12", "date", "2024-03-12"),
    ("12.03.2024", "date", "2024-03-12"), ("March 12, 2024", "date", "2024-03-12"),
    ("12-Mar-2024", "date", "2024-03-12"), ("Mar 12 2024", "date", "2024-03-12"),
    ("03/12/2024", "date", None), ("2024-02-30", "date", None), ("２０２４-03-12", "date", None),
    ("$1,234.56", "amount", "1234.56"), ("1.234,56 EUR", "amount", "1234.56"), ("CHF 1'234.56", "amount", "1234.56"),
    ("1 234,56", "amount", "1234.56"), ("12,50", "amount", "12.50"), ("¥1,234", "amount", "1234"),
    ("1,234,567", "amount", "1234567"), ("١٢٣", "amount", None), ("１２.５", "amount", None),
    ("12..5", "amount", None),
    ("1e5", "amount", None), ("NaN", "amount", None), (True, "amount", None), (1e300, "amount", None),
    ("  Acme   Labs ", "text", "acme labs"), ("inv-7", "id", "inv-7"), ("eur", "currency", "EUR"),
    ("euro", "currency", None), ("+44 (20) 7946-0958", "phone", "+442079460958"), ("call me", "phone", None),
    ("x" * 300, "text", None),
])
def test_normalize_known_values(value, kind, key):
    got = normalize(value, kind)
    if key is None:
        assert got is None
    elif kind == "date":
        assert got.isoformat() == key
    elif kind == "amount":
        from decimal import Decimal
        assert got == Decimal(key)
    else:
        assert got == key


@pytest.mark.parametrize("text", [
    "", "{", "[1, 2]", '"a string"', "null", '{"a": 1,}', "{'a': 1}", '{"total": NaN}', '{"total": Infinity}',
    '{"a": 1, "a": 2}',  # duplicate keys: malformed, so a model cannot hedge
    '{"a": ' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}",
    '{"a": "' + "x" * MAX_RECORD_CHARS + '"}', '{"a": ' + "9" * 30 + "}",
    '{"a": 1}' + " trailing", '{1: "a"}',
])
def test_hostile_records_are_malformed(text):
    assert parse_record(text) is None


def test_deep_nesting_inside_strings_is_fine_and_depth_counts_outside_them():
    assert parse_record('{"a": "[[[[[[[[[[{{{{{{"}') == {"a": "[[[[[[[[[[{{{{{{"}
    assert parse_record('{"a": {"b": [1]}}') == {"a": {"b": [1]}}


def test_verifier_and_reward_on_hostile_responses():
    task = tasks.get("doc_extract")
    ex = task.generate(np.random.default_rng(4), 5)
    record = json.loads(ex.answer)
    assert task.verify(ex, ex.answer) == 1.0 and task.reward(ex, ex.answer) == 1.0
    assert task.verify(ex, f"Let me read the document.\n{ex.answer}\n") == 1.0  # scratchpad lines
    assert task.format_reward('{"anything": "x"}') == 1.0 and task.format_reward("{oops") == 0.0
    key = next(k for k, v in record.items() if v is not None)
    dup = ex.answer[:-1] + f", {json.dumps(key)}: {json.dumps(record[key])}}}"
    hostile = ["", "{}" * 5000, "x" * 10_000, dup, json.dumps(record, indent=2),  # multi-line: last line is "}"
               '{"a": ' + "[" * 500 + "]" * 500 + "}", b"\xff\xfe", "\u0000" * 100]
    for response in hostile:
        assert task.verify(ex, response) == 0.0
        assert 0.0 <= task.reward(ex, response) < 1.0
    # wrong types: a list, a nested object, a bool for a field count as wrong (FP + FN)
    for bad in ([record[key]], {"v": record[key]}, True):
        partial = dict(record, **{key: bad})
        n = sum(v is not None for v in record.values())
        assert task.verify(ex, json.dumps(partial)) == 0.0
        assert task.reward(ex, json.dumps(partial)) == pytest.approx(2 * (n - 1) / (2 * (n - 1) + 2))
    with pytest.raises(TypeError):
        task.verify(ex, 12)


def test_bio_tags_from_spans_and_offsets():
    doc = render_document(np.random.default_rng(5), 6, kind="invoice", layout="kv", noise=False)
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", doc.text)]
    offsets = [(0, 0)] + words + [(0, 0)]  # specials (e.g. [CLS], [SEP]) have empty offsets
    tags = bio_tags(doc.spans, offsets)
    assert tags[0] == tags[-1] == "O" and len(tags) == len(offsets)
    for field, (s, e) in doc.spans.items():
        covered = [t for t, (a, b) in enumerate(offsets) if a < b and a < e and b > s]
        assert [tags[t] for t in covered] == [f"B-{field}"] + [f"I-{field}"] * (len(covered) - 1)
        joined = doc.text[offsets[covered[0]][0]:offsets[covered[-1]][1]]
        assert joined == doc.text[s:e]  # word tokens align with the written value here
    assert sum(t.startswith("B-") for t in tags) == len(doc.spans)
    only = bio_tags(doc.spans, offsets, fields=[next(iter(doc.record))])
    assert {t[2:] for t in only if t != "O"} <= {next(iter(doc.record))}
    # character-level offsets: every character of a span is tagged
    chars = [(i, i + 1) for i in range(len(doc.text))]
    char_tags = bio_tags(doc.spans, chars)
    for field, (s, e) in doc.spans.items():
        assert char_tags[s] == f"B-{field}" and set(char_tags[s + 1:e]) <= {f"I-{field}"}
    assert bio_label_names(["total"]) == ["O", "B-total", "I-total"]


def test_splits_are_disjoint_and_verify():
    task = tasks.get("doc_extract", layouts=["json", "csv"], kinds=["receipt"])
    s = task.splits(seed=0, n_train=30, n_test=10, n_ood=10)
    keys = [task.equivalence_key(e) for v in s.values() for e in v]
    assert len(set(keys)) == len(keys) == 50
    assert all(e.meta["layout"] in ("json", "csv") and e.meta["kind"] == "receipt" for v in s.values() for e in v)
    assert all(e.meta["difficulty"] >= 6 for e in s["ood"])
    assert all(task.verify(e, e.answer) == 1.0 for v in s.values() for e in v)


def test_bad_settings_name_the_field():
    with pytest.raises(tasks.TaskError, match="layouts=.*'pdf'"):
        tasks.get("doc_extract", layouts=("pdf",))
    with pytest.raises(tasks.TaskError, match="kinds="):
        tasks.get("doc_extract", kinds=())
