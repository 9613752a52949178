"""jaxlab.analysis.characters: token spans and lengths on a tokenizer whose tokens are known,
the byte tokenizer (every length 1), the point-biserial correlation against numpy's Pearson
r, and the nested bootstrap on a planted effect."""

import numpy as np
import pytest

from jaxlab.analysis.characters import (nested_bootstrap_correlation, point_biserial, token_char_spans,
                                        token_length_at)
from jaxlab.data.tokenizer import BYTES


class ChunkTokenizer:
    """Greedy longest match over a fixed vocabulary of pieces, then single characters."""

    def __init__(self, pieces):
        self.vocab = sorted(set(pieces), key=len, reverse=True)
        self.chars = {}

    def _id(self, piece):
        if piece in self.vocab:
            return self.vocab.index(piece)
        return self.chars.setdefault(piece, 1000 + len(self.chars))

    def encode(self, text, *, bos=False, eos=False):
        ids, i = [], 0
        while i < len(text):
            piece = next((p for p in self.vocab if text.startswith(p, i)), text[i])
            ids.append(self._id(piece))
            i += len(piece)
        return np.asarray(ids, np.int32)

    def decode(self, ids, *, stop_at_eos=False):
        inverse = {v: k for k, v in self.chars.items()}
        return "".join(self.vocab[i] if i < 1000 else inverse[i] for i in ids)


def test_spans_and_lengths_of_known_tokens():
    tok = ChunkTokenizer(["straw", "berry", ' "'])
    text = 'the word "strawberry"?'
    spans = token_char_spans(tok, text)
    assert [text[a:b] for a, b in spans] == list("the word") + [' "', "straw", "berry", '"', "?"]
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a < b for a, b in spans) and all(spans[k][1] == spans[k + 1][0] for k in range(len(spans) - 1))
    start = text.index("strawberry")
    assert [token_length_at(tok, text, start + i) for i in range(10)] == [5] * 10
    assert token_length_at(tok, text, 0) == 1 and token_length_at(tok, text, text.index('"') - 1) == 2
    with pytest.raises(ValueError, match="char_index=22"):
        token_length_at(tok, text, len(text))


def test_byte_tokenizer_gives_every_character_length_one():
    text = 'At which position is the first "r" in the word "error"?'
    assert [b - a for a, b in token_char_spans(BYTES, text)] == [1] * len(text)
    assert token_length_at(BYTES, text, 5) == 1


def test_point_biserial_is_pearson_and_has_the_known_value():
    rng = np.random.default_rng(0)
    x, y = rng.integers(1, 8, size=200), rng.integers(0, 2, size=200)
    assert point_biserial(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    # x = [1, 2, 3, 4], y = [1, 1, 0, 0]: (1.5 - 3.5) / sqrt(1.25) * 0.5 = -0.894...
    assert point_biserial([1, 2, 3, 4], [1, 1, 0, 0]) == pytest.approx(-2 / np.sqrt(1.25) * 0.5)
    for x, y, match in (([1, 1, 1], [0, 1, 0], "x is constant"), ([1, 2, 3], [0, 0, 0], "y is constant"),
                        ([1, 2], [0, 2], "0/1"), ([1], [1], "length >= 2")):
        with pytest.raises(ValueError, match=match):
            point_biserial(x, y)


def test_nested_bootstrap_finds_a_planted_negative_correlation():
    rng = np.random.default_rng(1)
    xs, ys = [], []
    for _ in range(2):
        x = rng.integers(1, 8, size=100)
        xs.append(x)
        ys.append((rng.random(100) < np.where(x <= 3, 0.8, 0.2)).astype(int))  # long tokens: less often right
    r = nested_bootstrap_correlation(xs, ys, n_boot=300)
    assert r["effect"] == pytest.approx(point_biserial(np.concatenate(xs), np.concatenate(ys)))
    assert r["low"] <= r["effect"] <= r["high"] < 0 and r["seeds"] == 2 and r["examples"] == 200
    null = nested_bootstrap_correlation(xs, [rng.integers(0, 2, size=100) for _ in xs], n_boot=300)
    assert null["low"] < 0 < null["high"]
    with pytest.raises(ValueError, match="constant"):
        nested_bootstrap_correlation([[1, 2]], [[0, 0]])
