import json

import pytest
import tensorflow_datasets as tfds

from jaxlab import tasks
from jaxlab.tasks import tfds_tasks
from jaxlab.tasks.base import Example, TaskError

SIZES = dict(n_train=12, n_test=4, n_ood=3)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tasks_tfds")
    return data_dir, tasks.prepare("hanoi", data_dir, seed=7, train_difficulty=(2, 3), **SIZES)


def test_prepared_splits_read_back_as_the_generator_examples(prepared):
    data_dir, sources = prepared
    task = tasks.get("hanoi", train_difficulty=(2, 3))
    expected = task.splits(seed=7, **SIZES)
    name = tfds_tasks.config_name(task, seed=7, **SIZES)
    folder = data_dir / "jaxlab_tasks" / name / "1.0.0"
    assert list(folder.glob("jaxlab_tasks-train.array_record-*"))
    read = tfds.data_source(f"jaxlab_tasks/{name}", data_dir=str(data_dir))
    for split in ("train", "test", "ood"):
        for source in (sources[split], read[split]):
            examples = [Example.from_record(source[i]) for i in range(len(source))]
            assert examples == expected[split]
            assert all(tasks.verify(source[i]["meta"], e.answer) == 1.0 for i, e in enumerate(examples))
    assert json.loads(read["ood"][0]["meta"])["difficulty"] >= 6


def test_prepare_reuses_files_and_settings_change_the_config(prepared):
    data_dir, sources = prepared
    task = tasks.get("hanoi", train_difficulty=(2, 3))
    folder = data_dir / "jaxlab_tasks" / tfds_tasks.config_name(task, seed=7, **SIZES) / "1.0.0"
    before = {f: f.stat().st_mtime_ns for f in folder.iterdir()}
    again = tasks.prepare("hanoi", data_dir, seed=7, train_difficulty=(2, 3), **SIZES)
    assert {f: f.stat().st_mtime_ns for f in folder.iterdir()} == before
    assert again["test"][1] == sources["test"][1]
    names = {tfds_tasks.config_name(t, seed=s, **SIZES) for t, s in [
        (task, 7), (task, 8), (tasks.get("hanoi"), 7), (tasks.get("hanoi", train_difficulty=(2, 3)), 7)]}
    assert len(names) == 3 and all(n.startswith("hanoi-") for n in names)


def test_empty_split_and_errors(tmp_path):
    sources = tasks.prepare("count", tmp_path, n_train=3, n_test=2, n_ood=0)
    assert (len(sources["train"]), len(sources["test"]), len(sources["ood"])) == (3, 2, 0)
    with pytest.raises(TaskError, match="n_train=-1"):
        tasks.prepare("count", tmp_path, n_train=-1)
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        tasks.prepare("nope", tmp_path)
