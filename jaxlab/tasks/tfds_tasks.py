"""A tensorflow-datasets builder that writes the splits of a task as ``array_record`` files.

One builder, ``jaxlab_tasks``, with one config per (task settings, seed, split sizes):
``{data_dir}/jaxlab_tasks/{task}-{hash}/1.0.0/jaxlab_tasks-{train,test,ood}.array_record-*``,
where the hash covers every field of the task (difficulty ranges included), the seed, the
split sizes and the builder version. Each record is ``{"prompt", "answer", "meta"}`` (UTF-8
bytes when read back; meta is JSON), in the order :meth:`jaxlab.tasks.base.Task.splits`
generates them (tfds' shuffling is disabled). :meth:`Example.from_record` turns a record back
into an :class:`~jaxlab.tasks.base.Example`, and ``jaxlab.tasks.verify`` accepts its meta.

Like :mod:`jaxlab.data.tfds_text`, preparation runs under a file lock so that concurrent
processes on one machine prepare once, and needs no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from jaxlab.data.tfds_text import file_lock, quiet_absl
from jaxlab.tasks import get
from jaxlab.tasks.base import SPLITS, Example, Task, TaskError

BUILDER_VERSION = "1.0.0"


@dataclasses.dataclass(eq=False)
class TaskSplitsConfig(tfds.core.BuilderConfig):
    """The task (with its settings), the seed and the size of each split."""

    task: Task | None = None
    seed: int = 0
    n_train: int = 0
    n_test: int = 0
    n_ood: int = 0


def config_name(task: Task, *, seed: int, n_train: int, n_test: int, n_ood: int) -> str:
    """``{task}-{12 hex digits}`` naming the task settings, seed, sizes and builder version."""
    payload = {"task": task.name, "fields": dataclasses.asdict(task), "seed": seed, "n_train": n_train,
               "n_test": n_test, "n_ood": n_ood, "version": BUILDER_VERSION}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    return f"{task.name}-{digest}"


def make_config(task: Task, *, seed: int = 0, n_train: int = 10_000, n_test: int = 500,
                n_ood: int = 500) -> TaskSplitsConfig:
    for key, value in (("seed", seed), ("n_train", n_train), ("n_test", n_test), ("n_ood", n_ood)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TaskError(f"{key}={value!r} must be an int >= 0")
    sizes = dict(seed=seed, n_train=n_train, n_test=n_test, n_ood=n_ood)
    return TaskSplitsConfig(name=config_name(task, **sizes), version=BUILDER_VERSION,
                            description=f"{task!r} seed={seed} sizes={n_train}/{n_test}/{n_ood}",
                            task=task, **sizes)


class JaxlabTasks(tfds.core.GeneratorBasedBuilder):
    """The train / test / ood splits of a verifiable task, one example per prompt."""

    VERSION = tfds.core.Version(BUILDER_VERSION)
    RELEASE_NOTES = {"1.0.0": "prompt, reference answer and verifier meta (JSON) per example."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Synthetic tasks with exact verifiers (jaxlab.tasks).",
            features=tfds.features.FeaturesDict({"prompt": tfds.features.Text(),
                                                 "answer": tfds.features.Text(),
                                                 "meta": tfds.features.Text()}),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        cfg: TaskSplitsConfig = self.builder_config
        splits = cfg.task.splits(cfg.seed, cfg.n_train, cfg.n_test, cfg.n_ood)
        # tfds cannot write a split without examples: an empty split is left out.
        return {split: self._generate_examples(splits[split]) for split in SPLITS if splits[split]}

    def _generate_examples(self, examples: list[Example]) -> Iterator[tuple[int, dict[str, str]]]:
        for index, example in enumerate(examples):
            yield index, example.to_record()


def prepare(name: str, data_dir, *, seed: int = 0, n_train: int = 10_000, n_test: int = 500,
            n_ood: int = 500, **task_overrides) -> dict[str, Any]:
    """Prepares (once) the splits of task ``name`` (with ``task_overrides`` of its fields, see
    :func:`jaxlab.tasks.get`) under ``data_dir`` and returns ``{"train", "test", "ood"}`` data
    sources: random-access sequences of ``{"prompt", "answer", "meta"}`` bytes records, ready
    for ``grain.MapDataset.source``. An empty split is not written and maps to ``[]``."""
    task = get(name, **task_overrides)
    config = make_config(task, seed=seed, n_train=n_train, n_test=n_test, n_ood=n_ood)
    root = Path(data_dir).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TaskError(f"data_dir {str(root)!r} cannot be created: {e}") from e
    tfds.disable_progress_bar()
    with file_lock(root / JaxlabTasks.name / f"{config.name}.lock"), quiet_absl():
        builder = JaxlabTasks(config=config, data_dir=str(root))
        builder.download_and_prepare(file_format="array_record")
    sources = builder.as_data_source()
    return {split: sources[split] if split in sources else [] for split in SPLITS}
