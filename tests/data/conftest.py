"""Shared fixtures: a small multi-document corpus on disk and its prepared tfds splits."""

from pathlib import Path

import pytest

CHUNK_BYTES = 120
VAL_PERCENT = 25.0


def write_small_corpus(root: Path) -> Path:
    """Three documents: short ASCII paragraphs, non-ASCII prose, a long paragraph and line."""
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text(
        "".join(f"Paragraph {i} of document a, {'word ' * (i % 9)}end.\n\n" for i in range(40)),
        encoding="utf-8")
    (root / "sub" / "b.md").write_text(
        "".join(f"héllo wörld {i} — 你好, 世界 🙂 naïve café {'ü' * (i % 13)}\n\n" for i in range(30)),
        encoding="utf-8")
    long_lines = "".join(f"line {i} of one long paragraph without blank lines\n" for i in range(12))
    (root / "c.txt").write_text(long_lines + "\n\n" + "é🙂x" * 200 + "\n\nlast words\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def split_args() -> dict:
    """The chunking of the small corpus: ``dict(chunk_bytes=..., val_percent=...)``."""
    return dict(chunk_bytes=CHUNK_BYTES, val_percent=VAL_PERCENT)


@pytest.fixture(scope="session")
def corpus_writer():
    """``write(root) -> root``: writes a fresh copy of the small corpus under ``root``."""
    return write_small_corpus


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    return write_small_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def prepared_small(small_corpus, tmp_path_factory):
    """(data_dir, {"train": source, "validation": source}) of the small corpus."""
    from jaxlab.data.tfds_text import prepare

    data_dir = tmp_path_factory.mktemp("tfds")
    sources = prepare(str(small_corpus), data_dir, chunk_bytes=CHUNK_BYTES, val_percent=VAL_PERCENT)
    return data_dir, sources
