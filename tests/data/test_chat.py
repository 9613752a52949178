"""Chat / instruction examples, preference pairs and their packed batches (jaxlab.data.chat)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxlab.data import chat
from jaxlab.data.corpus import DataError
from jaxlab.data.pipeline import BATCH_KEYS
from jaxlab.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, ByteTokenizer
from jaxlab.losses.lm import cross_entropy_sums
from jaxlab.models import transformer

TOK = ByteTokenizer()


def test_prompt_response_example_hand_checked():
    e = chat.encode_example("ab", "c")
    # stream [BOS, a, b, c, EOS]: inputs drop the last, targets drop the first.
    np.testing.assert_array_equal(e["inputs"], [BOS_ID, ord("a"), ord("b"), ord("c")])
    np.testing.assert_array_equal(e["targets"], [ord("a"), ord("b"), ord("c"), EOS_ID])
    np.testing.assert_array_equal(e["loss_mask"], [0, 0, 1, 1])
    assert e["inputs"].dtype == np.int32 and e["loss_mask"].dtype == np.float32
    # Empty prompt: the first response byte is predicted from BOS. Empty response: EOS only.
    np.testing.assert_array_equal(chat.encode_example("", "x")["loss_mask"], [1, 1])
    e = chat.encode_example("q", "")
    np.testing.assert_array_equal(e["targets"], [ord("q"), EOS_ID])
    np.testing.assert_array_equal(e["loss_mask"], [0, 1])


@given(prompt=st.text(max_size=12), response=st.text(max_size=12))
def test_loss_mask_covers_exactly_the_response_and_eos(prompt, response):
    e = chat.encode_example(prompt, response)
    n_prompt, n_response = len(prompt.encode()), len(response.encode())
    assert len(e["inputs"]) == n_prompt + n_response + 1
    np.testing.assert_array_equal(e["loss_mask"], [0] * n_prompt + [1] * (n_response + 1))
    trained = e["targets"][e["loss_mask"] > 0]
    assert trained[-1] == EOS_ID and TOK.decode(trained) == response
    assert TOK.decode(e["inputs"]) == prompt + response  # [BOS] + prompt + response
    np.testing.assert_array_equal(e["inputs"][1:], e["targets"][:-1])  # one stream, shifted


def test_multi_turn_messages_train_every_assistant_turn():
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"}, {"role": "user", "content": "2?"},
            {"role": "assistant", "content": "two"}]
    e = chat.encode_messages(msgs)
    text = "System: be brief\nUser: hi\nAssistant: yo\x00User: 2?\nAssistant: two\x00"
    expected = [EOS_ID if ch == "\x00" else ord(ch) for ch in text]
    np.testing.assert_array_equal(e["targets"], expected)
    trained = "".join("|" if t == EOS_ID else chr(t) for t in e["targets"][e["loss_mask"] > 0])
    assert trained == "yo|two|"
    # The generation prompt of the history is exactly the training prefix before "two".
    prompt = chat.encode_prompt(msgs[:4])
    stream = np.concatenate([[BOS_ID], e["targets"]])
    np.testing.assert_array_equal(prompt, stream[:len(prompt)])
    assert TOK.decode(stream[len(prompt):]) == "two"
    with pytest.raises(DataError, match="no 'assistant'"):
        chat.encode_messages(msgs[:2])
    with pytest.raises(DataError, match="role"):
        chat.encode_messages([{"role": "bot", "content": "x"}])


def test_pairs_share_the_prompt_and_mask_it_in_both_halves():
    chosen, rejected = chat.encode_pair({"prompt": "3*3=", "chosen": "9", "rejected": "6"})
    np.testing.assert_array_equal(chosen["inputs"][:5], rejected["inputs"][:5])
    for e in (chosen, rejected):
        np.testing.assert_array_equal(e["loss_mask"], [0, 0, 0, 0, 1, 1])
    # A messages prompt ends with the assistant header, then the response.
    c, _ = chat.encode_pair({"prompt": [{"role": "user", "content": "hi"}], "chosen": "a",
                             "rejected": "b"})
    assert TOK.decode(c["inputs"]) == "User: hi\nAssistant: a"
    with pytest.raises(DataError, match="'prompt', 'chosen', 'rejected'"):
        chat.encode_pair({"prompt": "x", "chosen": "y"})
    with pytest.raises(DataError, match="SFT record"):
        chat.encode_record({"text": "x"})
    with pytest.raises(DataError, match="prompt must be a str"):
        chat.encode_example(3, "x")


def test_overflow_is_an_error_or_keeps_the_first_tokens():
    e = chat.encode_example("abcd", "xyz")  # 8 tokens: 4 prompt, 4 trained
    with pytest.raises(DataError, match="8 tokens .4 prompt, 4 response incl. EOS. does not fit 6"):
        chat.fit(e, 6)
    t = chat.fit(e, 6, "truncate")
    np.testing.assert_array_equal(t["targets"], [ord(c) for c in "abcdxy"])
    np.testing.assert_array_equal(t["loss_mask"], [0, 0, 0, 0, 1, 1])
    with pytest.raises(DataError, match="leaves no response token"):
        chat.fit(e, 4, "truncate")
    with pytest.raises(DataError, match="overflow"):
        chat.fit(e, 4, "drop")
    same = chat.fit(e, 8)  # fits exactly: unchanged
    assert all(np.array_equal(same[k], e[k]) for k in e) and set(same) == set(e)


# ---------------------------------------------------------------- packed SFT batches

SFT_RECORDS = [{"prompt": f"{i}+{i}=", "response": str(2 * i)} for i in range(0, 40, 3)] + [
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]}]


def segments(batch):
    """Every (inputs, targets, mask) segment of a batch, with a check of its positions."""
    out = []
    for b in range(batch["inputs"].shape[0]):
        seg = batch["segment_ids"][b]
        for s in np.unique(seg[seg > 0]):
            at = np.flatnonzero(seg == s)
            assert np.array_equal(at, np.arange(at[0], at[-1] + 1))  # contiguous
            np.testing.assert_array_equal(batch["positions"][b, at], np.arange(len(at)))
            assert batch["inputs"][b, at[0]] == BOS_ID
            out.append(tuple(tuple(batch[k][b, at].tolist()) for k in ("inputs", "targets", "mask")))
        pad = seg == 0
        assert (batch["inputs"][b, pad] == PAD_ID).all() and (batch["mask"][b, pad] == 0).all()
    return out


def as_tuple(e):
    return tuple(tuple(e[k].tolist()) for k in ("inputs", "targets", "loss_mask"))


def test_sft_dataset_packs_every_example_once_whole():
    ds = chat.sft_dataset(SFT_RECORDS, seq_len=28, batch_size=3, shuffle=True, seed=1, repeat=False)
    batches = list(ds)
    for b in batches:
        assert set(b) == set(BATCH_KEYS)
        assert all(v.shape == (3, 28) for v in b.values())
    got = sorted(s for b in batches for s in segments(b))
    expected = sorted(as_tuple(chat.encode_record(r)) for r in SFT_RECORDS)
    assert got == expected
    assert max(int(b["segment_ids"].max()) for b in batches) > 1  # rows do hold several
    # Deterministic: the same seed gives the same batches.
    again = list(chat.sft_dataset(SFT_RECORDS, seq_len=28, batch_size=3, shuffle=True, seed=1,
                                  repeat=False))
    for a, b in zip(batches, again, strict=True):
        for k in BATCH_KEYS:
            np.testing.assert_array_equal(a[k], b[k])
    # One example per row when asked.
    one = list(chat.sft_dataset(SFT_RECORDS, seq_len=28, batch_size=4, examples_per_row=1,
                                shuffle=False, repeat=False))
    assert all(b["segment_ids"].max() <= 1 for b in one)
    assert sum(int((b["segment_ids"][:, 0] == 1).sum()) for b in one) == len(SFT_RECORDS)


def test_sft_dataset_state_round_trip_and_errors():
    ds = chat.sft_dataset(SFT_RECORDS, seq_len=28, batch_size=2, seed=3)
    it = iter(ds)
    next(it)
    state = it.get_state()
    want = next(it)
    it2 = iter(ds)
    it2.set_state(state)
    got = next(it2)
    for k in BATCH_KEYS:
        np.testing.assert_array_equal(got[k], want[k])
    with pytest.raises(DataError, match="does not fit 4"):
        next(iter(chat.sft_dataset(SFT_RECORDS, seq_len=4, batch_size=2, repeat=False)))
    with pytest.raises(DataError, match="overflow"):
        chat.sft_dataset(SFT_RECORDS, seq_len=8, batch_size=2, overflow="cut")
    with pytest.raises(DataError, match="shard_index"):
        chat.sft_dataset(SFT_RECORDS, seq_len=8, batch_size=2, shard_index=2, shard_count=2)
    with pytest.raises(DataError, match="empty"):
        chat.sft_dataset([], seq_len=8, batch_size=2)


TINY = transformer.Config(vocab_size=259, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2,
                          head_dim=8, mlp_dim=32)


@jax.jit
def _nll_sums(params, rows):
    logits = transformer.apply(params, rows["inputs"], TINY, positions_BT=rows["positions"],
                               segment_ids_BT=rows["segment_ids"])
    s = cross_entropy_sums(logits, rows["targets"], rows["mask"])
    return s["nll"], s["count"]


def test_packed_and_unpacked_sft_losses_are_equal_under_a_model():
    shapes = jax.eval_shape(transformer.init, TINY, jax.random.key(0))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), s.dtype), shapes)
    packed = list(chat.sft_dataset(SFT_RECORDS, seq_len=28, batch_size=4, shuffle=False,
                                   repeat=False))
    assert max(int(b["segment_ids"].max()) for b in packed) >= 3
    nll_p = sum(float(_nll_sums(params, b)[0]) for b in packed)
    count_p = sum(float(_nll_sums(params, b)[1]) for b in packed)
    rows = chat.pad_rows([chat.encode_record(r) for r in SFT_RECORDS], 28)
    nll_u, count_u = (float(x) for x in _nll_sums(params, rows))
    assert count_p == count_u == sum(len(r.get("response", "hey")) + 1 for r in SFT_RECORDS)
    np.testing.assert_allclose(nll_p, nll_u, rtol=1e-5)


# ---------------------------------------------------------------- preference batches

PAIRS = [{"prompt": "1+2=", "chosen": "3", "rejected": "4"},
         {"prompt": "10+5=", "chosen": "15", "rejected": "105"},
         {"prompt": [{"role": "user", "content": "hello"}], "chosen": "hi!", "rejected": "no"}]


def test_stacked_preference_batch_rows():
    b = chat.preference_batch(PAIRS, seq_len=32)
    for half in ("chosen", "rejected"):
        assert set(b[half]) == set(BATCH_KEYS) and b[half]["inputs"].shape == (3, 32)
    for i, rec in enumerate(PAIRS):
        c, r = chat.encode_pair(rec)
        for e, half in ((c, "chosen"), (r, "rejected")):
            n = len(e["inputs"])
            np.testing.assert_array_equal(b[half]["inputs"][i, :n], e["inputs"])
            np.testing.assert_array_equal(b[half]["mask"][i, :n], e["loss_mask"])
            assert (b[half]["mask"][i, n:] == 0).all() and (b[half]["segment_ids"][i, n:] == 0).all()
            assert (b[half]["inputs"][i, n:] == PAD_ID).all()
    # The padded last batch of a finite pass has all-padding rows (no response tokens).
    batches = list(chat.preference_dataset(PAIRS, seq_len=32, batch_size=2, shuffle=False,
                                           repeat=False))
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[0]["chosen"]["inputs"], b["chosen"]["inputs"][:2])
    assert batches[1]["chosen"]["mask"][1].sum() == 0 and batches[1]["rejected"]["mask"][1].sum() == 0


def test_packed_preference_rows_hold_whole_pairs_as_segment_couples():
    batches = list(chat.preference_dataset(PAIRS * 2, seq_len=56, batch_size=2, pairs_per_row=2,
                                           shuffle=False, repeat=False))
    got = []
    for b in batches:
        segs = segments(b)  # contiguous, positions from 0, BOS first, padding clean
        got += segs
        for row in b["segment_ids"]:
            ids = [int(s) for s in np.unique(row[row > 0])]
            assert ids == list(range(1, len(ids) + 1)) and len(ids) % 2 == 0 and len(ids) <= 4
    expected = sorted(as_tuple(e) for rec in PAIRS * 2 for e in chat.encode_pair(rec))
    assert sorted(got) == expected
    # Segment 2k + 1 is a chosen example and 2k + 2 the rejected one of the same pair.
    first = batches[0]
    seg = first["segment_ids"][0]
    c_targets = first["targets"][0, seg == 1]
    r_targets = first["targets"][0, seg == 2]
    rec = next(p for p in PAIRS * 2 if as_tuple(chat.encode_pair(p)[0])[1] == tuple(c_targets))
    assert tuple(r_targets) == as_tuple(chat.encode_pair(rec)[1])[1]


def test_packed_pairs_must_fit_a_row_or_are_truncated_per_half():
    long = [{"prompt": "0123456789", "chosen": "abcdef", "rejected": "uvw"}]
    with pytest.raises(DataError, match="pair of 17 .chosen. . 14 .rejected. tokens does not fit"):
        next(iter(chat.preference_dataset(long, seq_len=30, batch_size=1, pairs_per_row=1,
                                          repeat=False)))
    b = next(iter(chat.preference_dataset(long, seq_len=30, batch_size=1, pairs_per_row=1,
                                          overflow="truncate", repeat=False)))
    seg = b["segment_ids"][0]
    assert (seg == 1).sum() == 15 and (seg == 2).sum() == 14  # chosen cut to 30 // 2
    assert b["mask"][0, seg == 1].sum() == 5  # "abcde" kept, "f" and EOS cut
    with pytest.raises(DataError, match="pairs_per_row"):
        chat.preference_dataset(long, seq_len=30, batch_size=1, pairs_per_row=0)
