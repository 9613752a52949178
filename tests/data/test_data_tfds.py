import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from jaxlab.data.corpus import DataError, default_documents, read_documents, split_chunks
from jaxlab.data.tfds_text import JaxlabText, file_lock, config_name, make_config, prepare


def dataset_dir(data_dir, source, **kw) -> Path:
    return Path(data_dir) / "jaxlab_text" / make_config(source, **kw).name / "1.0.0"


def test_prepare_writes_array_records_equal_to_the_chunks(small_corpus, prepared_small, split_args):
    data_dir, sources = prepared_small
    train, val = split_chunks(read_documents(small_corpus), **split_args)
    assert set(sources) == {"train", "validation"}
    for split, chunks in (("train", train), ("validation", val)):
        source = sources[split]
        assert len(source) == len(chunks) > 0
        records = [source[i] for i in range(len(source))]
        assert all(set(r) == {"text"} and isinstance(r["text"], bytes) for r in records)
        assert [r["text"].decode("utf-8") for r in records] == chunks  # corpus order kept
    folder = dataset_dir(data_dir, small_corpus, **split_args)
    for split in ("train", "validation"):
        assert list(folder.glob(f"jaxlab_text-{split}.array_record-*")), sorted(folder.iterdir())
    assert not list(folder.parent.glob("*incomplete*"))


def test_prepare_reuses_existing_files(small_corpus, prepared_small, split_args):
    data_dir, _ = prepared_small
    folder = dataset_dir(data_dir, small_corpus, **split_args)
    before = {f: f.stat().st_mtime_ns for f in folder.iterdir()}
    again = prepare(small_corpus, data_dir, **split_args)
    assert {f: f.stat().st_mtime_ns for f in folder.iterdir()} == before
    assert len(again["train"]) == len(prepared_small[1]["train"])
    assert again["validation"][0] == prepared_small[1]["validation"][0]


def test_config_names(tmp_path):
    assert config_name(None, chunk_bytes=2048, val_percent=5.0) == "pydoc"
    assert config_name(None, chunk_bytes=2048, val_percent=5) == "pydoc"
    other = config_name(None, chunk_bytes=1024, val_percent=5.0)
    assert other.startswith("pydoc-") and other != config_name(None, chunk_bytes=2048, val_percent=6.0)
    corpus = tmp_path / "My Corpus!"
    corpus.mkdir()
    (corpus / "a.txt").write_text("hello\n\nworld")
    name = config_name(str(corpus), chunk_bytes=64, val_percent=5.0)
    assert name.startswith("My_Corpus-")
    assert name == config_name(str(corpus), chunk_bytes=64, val_percent=5.0)
    assert name != config_name(str(corpus), chunk_bytes=65, val_percent=5.0)
    (corpus / "a.txt").write_text("hello\n\nworld, changed")
    assert name != config_name(str(corpus), chunk_bytes=64, val_percent=5.0)
    changed = config_name(str(corpus), chunk_bytes=64, val_percent=5.0)
    (corpus / "b.txt").write_text("new file")
    assert changed != config_name(str(corpus), chunk_bytes=64, val_percent=5.0)
    # a relative path names the same corpus as its absolute form
    assert make_config(corpus).source == str(corpus.resolve())


def test_changed_corpus_is_prepared_again(tmp_path, corpus_writer, split_args):
    corpus = corpus_writer(tmp_path / "c")
    first = prepare(corpus, tmp_path / "d", **split_args)
    n_train = len(first["train"])
    more = "".join(f"more {i}\n\n" for i in range(100))
    (corpus / "a.txt").write_text((corpus / "a.txt").read_text() + more)
    second = prepare(corpus, tmp_path / "d", **split_args)
    assert len(second["train"]) + len(second["validation"]) > n_train + len(first["validation"])
    assert len(list((tmp_path / "d" / "jaxlab_text").glob("c-*/1.0.0"))) == 2


def test_prepare_default_corpus(tmp_path):
    sources = prepare(None, tmp_path, chunk_bytes=2048, val_percent=5.0)
    train, val = split_chunks(default_documents(), chunk_bytes=2048, val_percent=5.0)
    assert (len(sources["train"]), len(sources["validation"])) == (len(train), len(val))
    assert sources["validation"][len(val) - 1]["text"].decode() == val[-1]
    assert (tmp_path / "jaxlab_text" / "pydoc" / "1.0.0").is_dir()


def test_prepare_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        prepare(tmp_path / "missing", tmp_path / "d")
    assert str(tmp_path / "missing") in str(e.value)
    (tmp_path / "tiny.txt").write_text("hello")
    with pytest.raises(DataError, match="validation split is empty"):
        prepare(tmp_path / "tiny.txt", tmp_path / "d", chunk_bytes=2048, val_percent=0.01)
    # a failed preparation leaves no dataset folder that would be reused
    assert not list((tmp_path / "d" / "jaxlab_text").glob("tiny-*/1.0.0"))
    with pytest.raises(DataError, match="chunk_bytes"):
        prepare(None, tmp_path / "d", chunk_bytes=0)


def test_prepare_waits_for_the_lock(tmp_path, corpus_writer, split_args):
    corpus = corpus_writer(tmp_path / "c")
    data_dir = tmp_path / "d"
    config = make_config(corpus, **split_args)
    result = {}
    with file_lock(data_dir / JaxlabText.name / f"{config.name}.lock"):
        worker = threading.Thread(target=lambda: result.update(
            prepare(corpus, data_dir, **split_args)))
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive() and not result  # blocked on the lock we hold
        assert not (data_dir / "jaxlab_text" / config.name).exists()
    worker.join(timeout=60)
    assert len(result["train"]) > 0


@pytest.mark.slow
def test_concurrent_processes_prepare_once(tmp_path, corpus_writer, split_args):
    corpus = corpus_writer(tmp_path / "c")
    data_dir = tmp_path / "d"
    code = (
        "import sys; from jaxlab.data.tfds_text import prepare; "
        f"s = prepare({str(corpus)!r}, {str(data_dir)!r}, **{split_args!r}); "
        "print(len(s['train']), len(s['validation']), s['train'][3]['text'].hex())"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    lines = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert len(lines) == 1
    prepared = sum("downloaded and prepared" in out for out, _ in outputs)
    assert prepared == 1, [out for out, _ in outputs]
