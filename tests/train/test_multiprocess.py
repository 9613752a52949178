"""Two CPU processes train together through ``jax.distributed`` and match one process that
feeds the same global batches; a multi-process run resumes collectively from a checkpoint."""

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pydoc_data.topics
import pytest

from jaxlab import config as config_lib
from jaxlab.cli import experiment_variants, load_experiment
from jaxlab.data import lm_dataset
from jaxlab.models import transformer
from jaxlab.train import sharding as shd
from jaxlab.train.fit import fit
from jaxlab.train.metrics import read_jsonl
from jaxlab.train.lm import lm_loss_sums

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "experiments" / "quickstart.py"
TINY = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1",
        "model.head_dim=16", "model.mlp_dim=64", "train.batch_size=8", "train.seq_len=32",
        "train.eval_batches=2", "optim.warmup_steps=2", "sample.max_new_tokens=4",
        "train.loop.steps=6", "train.loop.log_every=1", "train.loop.checkpoint_every=3", "train.loop.eval_every=3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_overrides(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("mp_corpus")
    topics = pydoc_data.topics.topics
    (root / "corpus.txt").write_text("\n\n".join(topics[k] for k in sorted(topics)[:40])[:120_000])
    return [f"data.path={root / 'corpus.txt'}", f"data.data_dir={root / 'tfds'}", "data.val_percent=20"]


def _launch(workdir: Path, overrides: list[str], n: int = 2) -> None:
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": os.environ["XLA_FLAGS"].replace("device_count=8", "device_count=2"),
           "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "jaxlab", "run", str(QUICKSTART), "--workdir", str(workdir),
         "--no-progress", "--coordinator", f"localhost:{port}", "--num-processes", str(n),
         "--process-id", str(i), "--set", *overrides],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(n)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    failed = [i for i, p in enumerate(procs) if p.returncode != 0]
    assert not failed, "\n".join(f"process {i}:\n{out[-3000:]}" for i, out in enumerate(outputs))


class _TwoShards:
    """One process reading both processes' shards: the global batch is process 0's rows then
    process 1's, as ``make_array_from_process_local_data`` lays them out."""

    def __init__(self, cfg, per_process):
        self.iters = [iter(lm_dataset(cfg.data, "train", seq_len=cfg.train.seq_len,
                                      batch_size=per_process, shard_index=i, shard_count=2))
                      for i in range(2)]

    def next(self, params, step):
        rows = [next(it) for it in self.iters]
        return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}, {}

    def get_state(self):
        return [it.get_state() for it in self.iters]

    def set_state(self, state):
        for it, s in zip(self.iters, state):
            it.set_state(s)


@pytest.mark.slow
def test_two_processes_train_like_one_and_resume_together(tmp_path, data_overrides):
    overrides = [*TINY, *data_overrides]
    workdir = tmp_path / "two"
    _launch(workdir, overrides)
    results = json.loads((workdir / "results.json").read_text())
    records = [r for r in read_jsonl(workdir / "metrics.jsonl") if "train/loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[-1]["train/loss"] < records[0]["train/loss"]
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [3, 6]

    # The same global batches in one process (4 devices, like the two processes' 2 + 2).
    cfg = experiment_variants(load_experiment(QUICKSTART), overrides)["quickstart"]
    mesh = shd.make_mesh(config_lib.apply_overrides(cfg.mesh, {"data": 4}), jax.devices()[:4])
    fitted = fit(tmp_path / "one", name="one", loop=cfg.train.loop, optim=cfg.optim, mesh=mesh,
                 init_params=lambda key: transformer.init(cfg.model, key),
                 param_axes=transformer.param_axes,
                 loss_sums_fn=functools.partial(lm_loss_sums, model_cfg=cfg.model),
                 source=_TwoShards(cfg, cfg.train.batch_size // 2), progress=False)
    np.testing.assert_allclose([r["train/loss"] for r in records], [
        r["train/loss"] for r in fitted.records if "train/loss" in r], rtol=2e-6)

    # Drop the last checkpoint: a second launch resumes both processes from step 3 (each with
    # its own data-iterator state) and ends where the uninterrupted run ended.
    shutil.rmtree(workdir / "checkpoints" / "6")
    (workdir / "results.json").unlink()
    _launch(workdir, overrides)
    resumed = json.loads((workdir / "results.json").read_text())
    assert resumed["resumed_from"] == 3
    assert resumed["val_loss"] == results["val_loss"]
    assert resumed["train_loss"] == results["train_loss"]
