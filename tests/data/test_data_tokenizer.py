import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxlab.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, ByteTokenizer

TOK = ByteTokenizer()


def test_constants():
    assert (PAD_ID, BOS_ID, EOS_ID, VOCAB_SIZE) == (256, 257, 258, 259)
    assert (TOK.pad_id, TOK.bos_id, TOK.eos_id, TOK.vocab_size) == (256, 257, 258, 259)
    assert hash(TOK) == hash(ByteTokenizer())


@pytest.mark.parametrize("text", ["", "hello", "héllo wörld", "你好, 世界", "🙂 e\u0301 \x00\n\t"])
def test_round_trip(text):
    ids = TOK.encode(text)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert ids.tolist() == list(text.encode("utf-8"))
    assert TOK.decode(ids) == text


@given(st.text())
def test_round_trip_any_text(text):
    assert TOK.decode(TOK.encode(text, bos=True, eos=True)) == text


def test_bos_eos():
    ids = TOK.encode("ab", bos=True, eos=True)
    assert ids.tolist() == [BOS_ID, 97, 98, EOS_ID]
    assert TOK.encode("é", eos=True).tolist() == [0xC3, 0xA9, EOS_ID]


def test_decode_drops_specials_and_stops_at_eos():
    ids = [BOS_ID, 104, 105, PAD_ID, EOS_ID, 33, EOS_ID, 300]
    assert TOK.decode(ids) == "hi!"
    assert TOK.decode(ids, stop_at_eos=True) == "hi"
    assert TOK.decode(np.array([[104], [105]])) == "hi"


def test_decode_invalid_utf8_is_replaced():
    assert TOK.decode([0xFF, 104]) == "\ufffdh"
    assert TOK.decode(TOK.encode("é")[:1]) == "\ufffd"


def test_decode_rejects_negative_ids():
    with pytest.raises(ValueError, match=">= 0"):
        TOK.decode([1, -1])
