"""Metric writers: ``metrics.jsonl`` (one JSON object per line) and TensorBoard event files.

On resume the records after the restored step are dropped from both, so a run killed and
restarted leaves one record per step.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path


def read_jsonl(path: str | Path) -> list[dict]:
    """All complete records of a metrics file (a torn last line from a crash is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def truncate_jsonl(path: str | Path, last_step: int) -> None:
    """Keeps only records with step <= ``last_step`` (atomically)."""
    path = Path(path)
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(path)


def _summary_writer_class():
    """tensorboardX's ``SummaryWriter``, imported without PyTorch: when PyTorch is installed
    (the test extra) and not yet imported, tensorboardX's import would load it only to accept
    torch tensors, which jaxlab never passes, for about 4 seconds of every run's start-up."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


def _clean(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


class MetricWriter:
    """Writes scalars to ``metrics.jsonl`` and TensorBoard under ``workdir``."""

    def __init__(self, workdir: str | Path, *, start_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(workdir) / "metrics.jsonl"
        if not enabled:
            return
        truncate_jsonl(self.path, start_step)
        self._file = open(self.path, "a")
        self._tb = _summary_writer_class()(str(Path(workdir) / "tensorboard"),
                                           purge_step=start_step + 1, flush_secs=10)

    def write(self, step: int, scalars: dict, *, prefix: str = "") -> None:
        if not self.enabled:
            return
        record = {"step": int(step)}
        for k, v in scalars.items():
            record[prefix + k] = _clean(v)
            if isinstance(record[prefix + k], float):
                self._tb.add_scalar(prefix + k, record[prefix + k], int(step))
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def write_text(self, step: int, tag: str, text: str) -> None:
        if self.enabled:
            self._tb.add_text(tag, text, int(step))

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._tb.close()
