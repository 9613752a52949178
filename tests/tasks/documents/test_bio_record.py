"""bio_record inverts bio_tags: gold tags decode to the gold record; hostile tag sequences
decode to a defined record without error."""

import numpy as np
import pytest

from jaxlab.tasks.documents import bio_record, bio_spans, bio_tags, field_scores, render_document
from jaxlab.train.tagging import byte_tokens


@pytest.mark.parametrize("seed", range(6))
def test_gold_tags_decode_to_the_gold_record(seed):
    doc = render_document(np.random.default_rng(seed), 8)  # distractors, noise, multi-byte currency
    _, offsets = byte_tokens(doc.text)
    record = bio_record(bio_tags(doc.spans, offsets), offsets, doc.text, fields=list(doc.record))
    assert set(record) == set(doc.record)
    assert field_scores(doc.record, doc.types, record)["f1"] == 1.0
    for f, (s, e) in doc.spans.items():  # every shown field, asked or not, comes back verbatim
        assert bio_record(bio_tags(doc.spans, offsets), offsets, doc.text)[f] == doc.text[s:e]


def test_multibyte_characters_map_to_whole_characters():
    text = "Total: €1.234,50\n"
    ids, offsets = byte_tokens(text)
    assert len(ids) == len(text.encode()) and len(offsets) == len(ids)
    tags = bio_tags({"total": (7, 16)}, offsets)
    assert tags.count("B-total") == 1 and tags[7:10] == ["B-total", "I-total", "I-total"]  # the 3 bytes of €
    assert bio_record(tags, offsets, text) == {"total": "€1.234,50"}


def test_hostile_tags_decode_to_a_defined_record():
    text = "abcdefghij"
    offsets = [(i, i + 1) for i in range(len(text))]
    tags = ["I-x",            # I without B opens a run of x
            "I-x", "B-y", "I-x",  # y interrupts x; the I-x after it opens a new (shorter) run
            "O", "I-y", "I-y", "I-y",  # a longer run of y (I without B) wins over the single B-y
            "B-z-w", "garbage"]  # a field name with a dash; a malformed tag is O
    assert bio_spans(tags, offsets) == [("x", 0, 2, 2), ("y", 2, 3, 1), ("x", 3, 4, 1), ("y", 5, 8, 3),
                                        ("z-w", 8, 9, 1)]
    assert bio_record(tags, offsets, text, fields=["x", "y", "q"]) == {"x": "ab", "y": "fgh", "q": None}
    assert bio_record(["B-x"] * 3, [(0, 0), (0, 0), (1, 1)], "ab") == {}  # empty-offset tokens are O
    assert bio_record(["B-x", "I-x"], [(0, 1), (1, 2)], "  ", fields=["x"]) == {"x": None}  # blank value
    with pytest.raises(ValueError, match="3 tags but 2 offsets"):
        bio_spans(["O"] * 3, [(0, 1), (1, 2)])
