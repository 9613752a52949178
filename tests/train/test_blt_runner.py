"""A Byte Latent Transformer through the runner (``model.family=blt`` on the quickstart
experiment): the training loss falls, validation bits per byte fall, and the report, results
and sample come out of the same path as the other families."""

import json
from pathlib import Path

import jax
import pydoc_data.topics
import pytest

from jaxlab import cli, models
from jaxlab.models import blt

QUICKSTART = str(Path(__file__).resolve().parents[2] / "experiments" / "quickstart.py")


@pytest.mark.slow
def test_runner_trains_a_blt_and_reports_it(tmp_path):
    text = "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)[:12])[:40_000]
    (tmp_path / "corpus.txt").write_text(text)
    workdir = tmp_path / "run"
    args = ["run", QUICKSTART, "--workdir", str(workdir), "--no-progress", "--set",
            f"data.path={tmp_path / 'corpus.txt'}", f"data.data_dir={tmp_path / 'tfds'}",
            "model.family=blt", "model.d_model=32", "model.n_layers=1", "model.head_dim=16", "model.mlp_dim=64",
            "model.d_local=32", "model.local_mlp_dim=64", "model.ngram_table_size=256",
            "train.batch_size=8", "train.seq_len=32", "train.eval_batches=2", "optim.warmup_steps=2",
            "sample.max_new_tokens=4", "train.loop.steps=16", "train.loop.eval_every=8",
            "train.loop.checkpoint_every=16", "train.loop.log_every=4"]
    assert cli.main(args) == 0
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r["train/loss"] for r in records if "train/loss" in r]
    val = [r["val/bpb"] for r in records if "val/bpb" in r]
    assert train[-1] < train[0] - 0.5 and len(val) == 2 and val[-1] < val[0]
    results = json.loads((workdir / "results.json").read_text())
    cfg = json.loads((workdir / "config.json").read_text())["model"]
    assert cfg["family"] == "blt" and cfg["patching"] == "space"
    model_cfg = blt.Config(**{**cfg, "ngram_sizes": tuple(cfg["ngram_sizes"])})
    assert results["params"] == blt.count_params(jax.eval_shape(lambda k: blt.init(model_cfg, k), jax.random.key(0)))
    assert "Byte Latent Transformer (space patching)" in (workdir / "report.md").read_text()
    assert results["sample"].startswith("The ") and models.module(model_cfg) is blt
