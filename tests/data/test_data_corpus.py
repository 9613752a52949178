import os
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxlab.data.corpus import (
    DataError,
    chunk_document,
    default_documents,
    is_validation,
    list_files,
    read_documents,
    split_chunks,
)


def nbytes(s: str) -> int:
    return len(s.encode("utf-8"))


# ------------------------------------------------------------------ default corpus


def test_default_documents_is_pydoc_topics():
    docs = default_documents()
    names = [n for n, _ in docs]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert len(docs) >= 50  # 79 on Python 3.11
    total = sum(nbytes(t) for _, t in docs)
    assert 300_000 < total < 1_000_000  # about 465 KB on Python 3.11
    assert all(isinstance(t, str) and t.strip() for _, t in docs)


# ------------------------------------------------------------------ reading a user corpus


def test_read_single_file(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("héllo\n\nworld\n", encoding="utf-8")
    assert read_documents(f) == [("notes.txt", "héllo\n\nworld\n")]
    assert read_documents(str(f)) == [("notes.txt", "héllo\n\nworld\n")]


def test_read_folder_recursive_sorted_hidden_skipped(small_corpus, tmp_path):
    docs = read_documents(small_corpus)
    assert [n for n, _ in docs] == ["a.txt", "c.txt", "sub/b.md"]
    assert docs[2][1] == (small_corpus / "sub" / "b.md").read_text(encoding="utf-8")

    (tmp_path / "z.txt").write_text("zed")
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "d.txt").write_text("deep")
    (tmp_path / ".hidden.txt").write_text("no")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("no")
    assert read_documents(tmp_path) == [("b/c/d.txt", "deep"), ("z.txt", "zed")]
    assert [p.name for p in list_files(tmp_path)] == ["d.txt", "z.txt"]


def test_binary_files_are_skipped_with_a_warning(tmp_path):
    (tmp_path / "ok.txt").write_text("text")
    (tmp_path / "blob.bin").write_bytes(bytes([0xFF, 0xFE, 0x00, 0x81]))
    (tmp_path / "nul.dat").write_bytes(b"abc\x00def")  # valid UTF-8, but NUL: binary
    with pytest.warns(UserWarning, match=r"skipped 2 file.*blob\.bin"):
        docs = read_documents(tmp_path)
    assert docs == [("ok.txt", "text")]


def test_missing_path_is_an_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as e:
        read_documents(missing)
    assert str(missing) in str(e.value)


@pytest.mark.parametrize("content", ["", "  \n\n\t "])
def test_empty_file_is_an_error(tmp_path, content):
    f = tmp_path / "empty.txt"
    f.write_text(content)
    with pytest.raises(DataError, match="empty") as e:
        read_documents(f)
    assert str(f) in str(e.value)


def test_folder_of_binary_files_is_an_error(tmp_path):
    rng = random.Random(0)
    for i in range(3):
        (tmp_path / f"{i}.bin").write_bytes(bytes([0x80]) + rng.randbytes(100))
    with pytest.raises(DataError, match="no UTF-8 text file") as e:
        read_documents(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_binary_single_file_and_empty_folder_are_errors(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match="not UTF-8") as e:
        read_documents(f)
    assert str(f) in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .*files") as e:
        read_documents(empty)
    assert str(empty) in str(e.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_an_error(tmp_path):
    f = tmp_path / "secret.txt"
    f.write_text("x")
    f.chmod(0)
    with pytest.raises(DataError, match="cannot be read") as e:
        read_documents(f)
    assert str(f) in str(e.value)


def test_unreadable_file_error_names_it(tmp_path, monkeypatch):
    f = tmp_path / "locked.txt"
    f.write_text("x")

    def deny(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(f), "read_bytes", deny)
    with pytest.raises(DataError, match="cannot be read") as e:
        read_documents(tmp_path)
    assert str(f) in str(e.value)


# ------------------------------------------------------------------ chunking


def test_chunks_end_at_paragraph_boundaries():
    text = "".join(f"para {i} " + "x" * (i * 7 % 50) + "\n\n" for i in range(60))
    chunks = chunk_document(text, 200)
    assert "".join(chunks) == text
    assert all(nbytes(c) <= 200 for c in chunks)
    assert all(c.endswith("\n\n") for c in chunks)
    # Greedy: no chunk could have taken the next chunk's first paragraph.
    for a, b in zip(chunks, chunks[1:]):
        assert nbytes(a) + nbytes(b.split("\n\n")[0] + "\n\n") > 200


def test_long_paragraph_splits_at_lines_then_characters():
    lines = "".join(f"line {i:02d} is here\n" for i in range(20))  # 16 bytes each, 320 in all
    chunks = chunk_document(lines, 50)
    assert "".join(chunks) == lines
    assert all(c.endswith("\n") and nbytes(c) <= 50 for c in chunks)
    long_line = "é🙂x" * 100  # 7 bytes per repeat, multi-byte characters
    chunks = chunk_document(long_line, 10)
    assert "".join(chunks) == long_line
    assert all(1 <= nbytes(c) <= 10 for c in chunks)
    assert len(chunks) >= 70


PIECES = ["a", "bc", " ", "\n", "\n\n", "é", "🙂", "你好", "x" * 30]


@given(st.lists(st.sampled_from(PIECES), max_size=200), st.integers(4, 64))
def test_chunking_is_lossless_and_bounded(pieces, chunk_bytes):
    text = "".join(pieces)
    chunks = chunk_document(text, chunk_bytes)
    assert "".join(chunks) == text
    assert all(0 < nbytes(c) <= chunk_bytes for c in chunks)


# ------------------------------------------------------------------ train / validation split


def test_split_is_deterministic_disjoint_and_covers_every_byte():
    docs = default_documents()
    train, val = split_chunks(docs, chunk_bytes=2048, val_percent=5.0)
    assert (train, val) == split_chunks(docs, chunk_bytes=2048, val_percent=5.0)
    all_chunks = [c for _, t in docs for c in chunk_document(t, 2048)]
    assert Counter(train) + Counter(val) == Counter(all_chunks)
    assert sum(map(nbytes, train)) + sum(map(nbytes, val)) == sum(nbytes(t) for _, t in docs)
    assert not set(train) & set(val)
    assert all(nbytes(c) <= 2048 for c in train + val)
    assert 0.01 < len(val) / len(all_chunks) < 0.12
    # each document is exactly the in-order merge of its chunks from the two splits
    it_train, it_val = iter(train), iter(val)
    for name, text in docs:
        rebuilt = ""
        for i, _ in enumerate(chunk_document(text, 2048)):
            rebuilt += next(it_val) if is_validation(name, i, 5.0) else next(it_train)
        assert rebuilt == text


def test_split_rule_is_the_crc32_rule():
    import zlib

    docs = [("d", "".join(f"p{i}\n\n" for i in range(300)))]
    train, val = split_chunks(docs, chunk_bytes=8, val_percent=30.0)
    chunks = chunk_document(docs[0][1], 8)
    expected_val = [c for i, c in enumerate(chunks) if zlib.crc32(f"d:{i}".encode()) % 10000 < 3000]
    assert val == expected_val and len(train) + len(val) == len(chunks)


def test_adding_a_document_keeps_other_assignments():
    docs = [("a", "one\n\ntwo\n\nthree\n\n" * 20), ("b", "four\n\nfive\n\n" * 20)]
    _, val = split_chunks(docs, chunk_bytes=16, val_percent=30.0)
    _, val_more = split_chunks(docs + [("c", "six\n\n" * 50)], chunk_bytes=16, val_percent=30.0)
    assert Counter(val) <= Counter(val_more)


def test_empty_split_is_an_error():
    with pytest.raises(DataError, match="validation split is empty.*chunk_bytes"):
        split_chunks([("tiny", "hello")], chunk_bytes=2048, val_percent=0.01)
    with pytest.raises(DataError, match="train split is empty"):
        split_chunks([("tiny", "hello")], chunk_bytes=2048, val_percent=99.99)


@pytest.mark.parametrize("kwargs", [dict(chunk_bytes=3), dict(chunk_bytes=2.5), dict(val_percent=0),
                                    dict(val_percent=100), dict(val_percent=-1)])
def test_bad_split_arguments(kwargs):
    with pytest.raises(DataError):
        split_chunks([("d", "text " * 100)], **kwargs)


def test_sample_token_rows_are_seeded_windows_of_the_embedded_text():
    import numpy as np

    from jaxlab.data import ByteTokenizer
    from jaxlab.data.corpus import sample_token_rows

    tok = ByteTokenizer()
    a = sample_token_rows(tok, 3, 16, seed=1)
    assert a.shape == (3, 16) and a.dtype == np.int32
    np.testing.assert_array_equal(a, sample_token_rows(tok, 3, 16, seed=1))
    assert not np.array_equal(a, sample_token_rows(tok, 3, 16, seed=2))
    text = "\n\n".join(t for _, t in default_documents()).encode()
    assert all(tok.decode(row.tolist()).encode() in text for row in a)
    with pytest.raises(DataError, match="cannot draw"):
        sample_token_rows(tok, 10**7, 16, seed=0)
