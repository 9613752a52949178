import dataclasses
import json
import typing
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxlab.data.corpus import DataError, read_documents, split_chunks
from jaxlab.data.pipeline import (
    BATCH_KEYS,
    DataConfig,
    batches_per_epoch,
    lm_dataset,
    packed_lm_dataset,
    resolve_data_dir,
)
from jaxlab.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


def make_records(n: int, seed: int = 0) -> list[dict]:
    """n distinct records of 0..40 bytes (some non-ASCII)."""
    rng = np.random.default_rng(seed)
    return [{"text": (f"{i}:" + "ab é"[i % 4] * int(rng.integers(0, 38))).encode()} for i in range(n)]


def take(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


def reference_batches(records, seq_len, batch_size):
    """Plain-Python concat-then-split: a record split across rows continues in the next row as
    segment 1 with positions restarting at 0; the last row and batch are padded."""
    rows, row, col, seg = [], None, seq_len, 0
    for r in records:
        data = list(r["text"])
        inputs, targets, start = [BOS_ID] + data, data + [EOS_ID], 0
        while start < len(inputs):
            if col == seq_len:
                row = {"inputs": [PAD_ID] * seq_len, "targets": [PAD_ID] * seq_len,
                       "segment_ids": [0] * seq_len, "positions": [0] * seq_len}
                rows.append(row)
                col, seg = 0, 0
            n = min(seq_len - col, len(inputs) - start)
            seg += 1
            row["inputs"][col:col + n] = inputs[start:start + n]
            row["targets"][col:col + n] = targets[start:start + n]
            row["segment_ids"][col:col + n] = [seg] * n
            row["positions"][col:col + n] = list(range(n))
            col, start = col + n, start + n
    empty = {"inputs": [PAD_ID] * seq_len, "targets": [PAD_ID] * seq_len,
             "segment_ids": [0] * seq_len, "positions": [0] * seq_len}
    rows += [empty] * (-len(rows) % batch_size)
    return [{k: np.array([r[k] for r in rows[i:i + batch_size]]) for k in empty}
            for i in range(0, len(rows), batch_size)]


def target_stream(batches) -> list[int]:
    """All predicted targets in batch/row order."""
    return [int(t) for b in batches for t in b["targets"][b["mask"] > 0]]


def records_of(batches, complete: bool = True) -> list[bytes]:
    """The records, in order, rebuilt from the target stream (each ends with EOS); with
    ``complete=False`` a trailing partial record (cut by the end of an infinite stream) is dropped."""
    stream = target_stream(batches)
    assert stream and (stream[-1] == EOS_ID or not complete)
    out, current = [], []
    for t in stream:
        if t == EOS_ID:
            out.append(bytes(current))
            current = []
        else:
            assert 0 <= t < 256
            current.append(t)
    return out


def check_batch_invariants(b, batch_size, seq_len):
    assert set(b) == set(BATCH_KEYS)
    for k in BATCH_KEYS:
        assert b[k].shape == (batch_size, seq_len), k
    assert b["mask"].dtype == np.float32
    assert all(b[k].dtype == np.int32 for k in ("inputs", "targets", "segment_ids", "positions"))
    seg, pos, inp, tgt = b["segment_ids"], b["positions"], b["inputs"], b["targets"]
    np.testing.assert_array_equal(b["mask"], (seg > 0).astype(np.float32))
    assert np.all(inp[seg == 0] == PAD_ID) and np.all(tgt[seg == 0] == PAD_ID)
    assert np.all(inp[seg > 0] != PAD_ID) and np.all(tgt[seg > 0] < PAD_ID + 3)
    for r in range(batch_size):
        s = seg[r]
        real = s[s > 0]
        # segments are 1, 2, ... in order, padding only at the end of a row
        assert np.all(np.diff(real) >= 0) and np.all(np.diff(real) <= 1)
        assert (len(real) == 0 or real[0] == 1) and np.all(s[len(real):] == 0)
        for t in range(len(real)):
            starts = t == 0 or s[t] != s[t - 1]
            assert pos[r, t] == (0 if starts else pos[r, t - 1] + 1)
            if starts and t > 0:  # a segment after column 0 always begins a record
                assert inp[r, t] == BOS_ID
            if not starts:
                assert inp[r, t] != BOS_ID
            if t + 1 < len(real) and s[t + 1] == s[t]:  # next-token shift inside a segment
                assert tgt[r, t] == inp[r, t + 1]
            if tgt[r, t] == EOS_ID:  # a record ends its segment
                assert t + 1 == len(real) or s[t + 1] != s[t]


# ------------------------------------------------------------------ config


def test_data_config_defaults_and_field_types():
    cfg = DataConfig()
    assert (cfg.path, cfg.data_dir, cfg.chunk_bytes, cfg.val_percent, cfg.shuffle, cfg.seed) == (
        None, None, 2048, 5.0, True, 0)
    hash(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
    allowed = {int, float, bool, str, str | None}
    assert all(tp in allowed for tp in typing.get_type_hints(DataConfig).values())


@pytest.mark.parametrize("kwargs, match", [
    (dict(chunk_bytes=2), "chunk_bytes"), (dict(val_percent=0.0), "val_percent"),
    (dict(val_percent=100.0), "val_percent"), (dict(seed=-1), "seed"), (dict(seed=2**32), "seed"),
    (dict(path=""), "path"), (dict(data_dir="  "), "data_dir"), (dict(shuffle=1), "shuffle"),
])
def test_data_config_validation(kwargs, match):
    with pytest.raises(DataError, match=f"data.{match}"):
        DataConfig(**kwargs)


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXLAB_DATA_DIR", raising=False)
    assert str(resolve_data_dir(None)).endswith(".cache/jaxlab/tensorflow_datasets")
    assert "~" not in str(resolve_data_dir(None))
    monkeypatch.setenv("JAXLAB_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(str(tmp_path / "x")) == tmp_path / "x"


@pytest.mark.parametrize("kwargs, match", [
    (dict(seq_len=0), "seq_len"), (dict(batch_size=0), "batch_size"), (dict(shard_count=0), "shard_count"),
    (dict(shard_index=2, shard_count=2), "shard_index"), (dict(shard_index=-1), "shard_index"),
])
def test_bad_arguments(kwargs, match):
    args = dict(seq_len=8, batch_size=2) | kwargs
    with pytest.raises(DataError, match=match):
        packed_lm_dataset(make_records(5), **args)


def test_empty_source_and_empty_shard_are_errors():
    with pytest.raises(DataError, match="empty"):
        packed_lm_dataset([], seq_len=8, batch_size=2)
    with pytest.raises(DataError, match="shard 3 of 4.*empty"):
        packed_lm_dataset(make_records(3), seq_len=8, batch_size=2, shard_index=3, shard_count=4)


def test_bad_split_name(tmp_path):
    with pytest.raises(DataError, match="split"):
        lm_dataset(DataConfig(data_dir=str(tmp_path)), "test", seq_len=8, batch_size=2)


# ------------------------------------------------------------------ packing


@pytest.mark.parametrize("seq_len, batch_size", [(16, 3), (7, 2), (64, 1), (1, 4)])
def test_one_epoch_equals_reference_packing(seq_len, batch_size):
    records = make_records(23)
    got = list(packed_lm_dataset(records, seq_len=seq_len, batch_size=batch_size, shuffle=False,
                                 repeat=False))
    want = reference_batches(records, seq_len, batch_size)
    assert len(got) == len(want) == batches_per_epoch(records, seq_len=seq_len, batch_size=batch_size)
    for g, w in zip(got, want):
        check_batch_invariants(g, batch_size, seq_len)
        for k in w:
            np.testing.assert_array_equal(g[k], w[k], err_msg=k)


@given(st.lists(st.binary(max_size=30), min_size=1, max_size=12), st.integers(1, 20), st.integers(1, 3))
def test_packing_matches_reference_for_any_lengths(texts, seq_len, batch_size):
    records = [{"text": t} for t in texts]
    got = list(packed_lm_dataset(records, seq_len=seq_len, batch_size=batch_size, shuffle=False,
                                 repeat=False))
    want = reference_batches(records, seq_len, batch_size)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for k in w:
            np.testing.assert_array_equal(g[k], w[k], err_msg=k)


def test_split_records_continue_in_the_next_row_with_positions_from_zero():
    # grain's ConcatThenSplit semantics: a continuation is segment 1 of the next row, positions
    # restart at 0 and it has no BOS.
    records = [{"text": b"abcdefghij"}]  # 11 tokens over rows of 4
    (b,) = list(packed_lm_dataset(records, seq_len=4, batch_size=3, shuffle=False, repeat=False))
    assert b["inputs"].tolist() == [[BOS_ID, 97, 98, 99], [100, 101, 102, 103], [104, 105, 106, PAD_ID]]
    assert b["targets"].tolist() == [[97, 98, 99, 100], [101, 102, 103, 104], [105, 106, EOS_ID, PAD_ID]]
    assert b["positions"].tolist() == [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 0]]
    assert b["segment_ids"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]


def test_validation_epoch_is_finite_deterministic_and_complete():
    records = make_records(40)
    ds = packed_lm_dataset(records, seq_len=24, batch_size=4, shuffle=True, seed=3, repeat=False)
    first, second = list(ds), list(ds)
    assert len(first) == len(second) == batches_per_epoch(records, seq_len=24, batch_size=4)
    for a, b in zip(first, second):
        check_batch_invariants(a, 4, 24)
        for k in BATCH_KEYS:
            np.testing.assert_array_equal(a[k], b[k])
    got = records_of(first)
    assert Counter(got) == Counter(r["text"] for r in records)
    assert got != [r["text"] for r in records]  # shuffled
    n_bos = sum(int(np.sum(b["inputs"] == BOS_ID)) for b in first)
    assert n_bos == len(records)


def test_each_epoch_is_a_new_permutation_and_seeds_differ():
    records = make_records(30)
    n_tokens = sum(len(r["text"]) + 1 for r in records)
    n_batches = 3 * n_tokens // (16 * 2) + 2  # a bit more than three epochs

    def epochs(seed):
        got = records_of(take(packed_lm_dataset(records, seq_len=16, batch_size=2, seed=seed), n_batches),
                         complete=False)
        assert len(got) >= 3 * len(records)
        return [got[i * len(records):(i + 1) * len(records)] for i in range(3)]

    everything = Counter(r["text"] for r in records)
    e0 = epochs(0)
    assert all(Counter(e) == everything for e in e0)  # every epoch is one full pass
    assert e0[0] != e0[1] != e0[2] and e0[0] != e0[2]
    assert epochs(0) == e0
    assert epochs(1)[0] != e0[0]
    in_order = packed_lm_dataset(records, seq_len=16, batch_size=2, shuffle=False)
    unshuffled = records_of(take(in_order, n_batches), complete=False)
    assert unshuffled[:2 * len(records)] == [r["text"] for r in records] * 2


def test_shards_are_disjoint_and_cover_the_data():
    records = make_records(31)
    shards = [records_of(list(packed_lm_dataset(records, seq_len=16, batch_size=2, seed=5, shard_index=i,
                                                shard_count=3, repeat=False))) for i in range(3)]
    seen = [set(s) for s in shards]
    assert all(len(s) == len(set(s)) for s in shards)
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert seen[0] | seen[1] | seen[2] == {r["text"] for r in records}
    assert sorted(map(len, shards)) == [10, 10, 11]


# ------------------------------------------------------------------ iterator state


@pytest.mark.parametrize("seq_len", [16, 10])  # 10: records of 9 bytes fill rows exactly
@pytest.mark.parametrize("k", [0, 1, 4, 9])
def test_iterator_state_round_trips_through_json(seq_len, k):
    exact = [{"text": f"rec{i:05d}".encode()[:9]} for i in range(25)]  # 10 tokens each
    records = make_records(25) if seq_len == 16 else exact

    def build():
        return packed_lm_dataset(records, seq_len=seq_len, batch_size=2, seed=7)

    it = iter(build())
    for _ in range(k):
        next(it)
    state = it.get_state()
    assert json.loads(json.dumps(state)) == state  # plain JSON data
    expected = [next(it) for _ in range(6)]
    fresh = iter(build())
    fresh.set_state(json.loads(json.dumps(state)))
    for want in expected:
        got = next(fresh)
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_iterator_state_round_trip_at_the_end_of_a_finite_epoch():
    records = make_records(12)

    def build():
        return packed_lm_dataset(records, seq_len=16, batch_size=3, shuffle=False, repeat=False)

    full = list(build())
    it = iter(build())
    for _ in range(len(full) - 1):
        next(it)
    fresh = iter(build())
    fresh.set_state(json.loads(json.dumps(it.get_state())))
    np.testing.assert_array_equal(next(fresh)["inputs"], full[-1]["inputs"])
    with pytest.raises(StopIteration):
        next(fresh)


# ------------------------------------------------------------------ end to end from tfds


def test_lm_dataset_from_a_prepared_corpus(small_corpus, prepared_small, split_args):
    data_dir, _ = prepared_small
    cfg = DataConfig(path=str(small_corpus), data_dir=str(data_dir), seed=1, **split_args)
    train, val = split_chunks(read_documents(small_corpus), **split_args)
    batches = list(lm_dataset(cfg, "validation", seq_len=32, batch_size=2, repeat=False))
    for b in batches:
        check_batch_invariants(b, 2, 32)
    assert Counter(records_of(batches)) == Counter(c.encode() for c in val)
    it = iter(lm_dataset(cfg, "train", seq_len=32, batch_size=2))
    for _ in range(3):
        check_batch_invariants(next(it), 2, 32)
    unshuffled = dataclasses.replace(cfg, shuffle=False)
    batches = list(lm_dataset(unshuffled, "train", seq_len=64, batch_size=4, repeat=False))
    assert records_of(batches) == [c.encode() for c in train]
