"""The standard-library corpus: which files, the split by whole file, the train folder."""

import zlib

import pytest

from jaxlab.data.corpus import DataError
from jaxlab.data.stdlib_corpus import (prepare_train_folder, read_bytes, source_files, split_files,
                                       stdlib_root)


def _tree(root):
    for rel, text in {"b.py": "b = 1\n", "a/x.py": "x = 2\n", "a/notes.txt": "not python\n",
                      "site-packages/pkg.py": "installed\n", "a/__pycache__/x.py": "cache\n",
                      ".hidden/h.py": "hidden\n", "a/.h.py": "hidden\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "latin1.py").write_bytes(b"s = '\xe9'\n")  # not UTF-8
    return root


def test_source_files_are_the_sorted_py_files_outside_installed_packages(tmp_path):
    assert source_files(_tree(tmp_path)) == ["a/x.py", "b.py", "latin1.py"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("text\n")
    with pytest.raises(DataError, match="no .py files"):
        source_files(tmp_path / "docs")


def test_split_is_by_whole_file_with_the_crc32_rule():
    names = [f"pkg/m{i}.py" for i in range(400)]
    train, val = split_files(names, 10.0)
    expected_val = [n for n in names if zlib.crc32(f"{n}:0".encode()) % 10000 < 1000]
    assert val == expected_val and train == [n for n in names if n not in set(expected_val)]
    assert 20 <= len(val) <= 60  # about 10% of 400
    # a file's side does not depend on the other files
    assert split_files(names[:50], 10.0)[1] == [n for n in expected_val if n in names[:50]]
    with pytest.raises(DataError):
        split_files(names, 100.0)


def test_read_bytes_skips_non_utf8_and_train_folder_is_made_once(tmp_path):
    root = _tree(tmp_path / "lib")
    assert read_bytes(root, "b.py") == b"b = 1\n"
    assert read_bytes(root, "latin1.py") is None
    dest = prepare_train_folder(root, ["a/x.py", "b.py"], tmp_path / "out" / "train")
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == ["a/x.py", "b.py"]
    assert (dest / "a" / "x.py").read_text() == "x = 2\n"
    (root / "b.py").write_text("changed\n")
    assert prepare_train_folder(root, ["a/x.py", "b.py"], dest) == dest  # reused as it is
    assert (dest / "b.py").read_text() == "b = 1\n"
    assert [p.name for p in dest.parent.iterdir()] == ["train"]  # no temporary folder left


def test_this_pythons_standard_library_holds_at_least_10_mb_of_source():
    root = stdlib_root()
    names = source_files(root)
    assert "os.py" in names and not any("site-packages" in n for n in names)
    assert sum((root / n).stat().st_size for n in names) >= 10_000_000
