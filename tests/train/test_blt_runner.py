"""A Byte Latent Transformer through the runner (``model.family=blt`` on the quickstart
experiment): the training loss falls, validation bits per byte fall, and the report, results
and sample come out of the same path as the other families; with entropy patching the runner
pre-trains (or loads) the entropy model and keeps it frozen."""

import json
from pathlib import Path

import jax
import pydoc_data.topics
import pytest

from jaxlab import cli, generate_cli, models
from jaxlab.interop.models import load_model
from jaxlab.models import blt
from jaxlab.train import loop
from jaxlab.train.checkpoint import CheckpointError, load_params

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
    # the workdir loads like any model: jaxlab generate continues the prompt as the runner did
    loaded_cfg, params, tok = load_model(workdir)
    assert loaded_cfg == model_cfg
    run_cfg = json.loads((workdir / "config.json").read_text())
    sample, prompt = run_cfg["sample"], run_cfg["prompt"]
    text = generate_cli.complete(loaded_cfg, params, tok, prompt, max_new_tokens=sample["max_new_tokens"],
                                 temperature=sample["temperature"], top_p=sample["top_p"],
                                 seed=run_cfg["train"]["loop"]["seed"])
    assert prompt + text == results["sample"]


@pytest.mark.slow
def test_entropy_patching_pretrains_the_entropy_model_and_keeps_it_frozen(tmp_path):
    text = "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)[:12])[:40_000]
    (tmp_path / "corpus.txt").write_text(text)
    base = ["--no-progress", "--set", f"data.path={tmp_path / 'corpus.txt'}", f"data.data_dir={tmp_path / 'tfds'}",
            "model.family=blt", "model.patching=entropy", "model.entropy_threshold=1.5", "model.entropy_steps=6",
            "model.d_model=32", "model.n_layers=1", "model.head_dim=16", "model.mlp_dim=64", "model.d_local=32",
            "model.local_mlp_dim=64", "model.ngram_table_size=64", "train.batch_size=8", "train.seq_len=32",
            "train.eval_batches=1", "optim.warmup_steps=1", "sample.max_new_tokens=2", "train.loop.steps=4",
            "train.loop.eval_every=4", "train.loop.checkpoint_every=4"]
    first = tmp_path / "first"
    assert cli.main(["run", QUICKSTART, "--workdir", str(first), *base]) == 0
    ent_step, ent = load_params(first / "entropy_model")
    assert ent_step == 6
    _, params = load_params(first)
    for a, b in zip(jax.tree.leaves(ent), jax.tree.leaves(params["entropy"])):  # frozen: bit for bit
        assert (a == b).all()
    losses = [json.loads(line)["train/loss"] for line in (first / "entropy_model" / "metrics.jsonl").read_text()
              .splitlines() if "train/loss" in line]
    assert losses[-1] < losses[0]  # the entropy model was trained on the run's data

    # another run loads the same entropy model from the first run's folder (its init, without training)
    def init(*extra):
        cfg = next(iter(cli.experiment_variants(cli.load_experiment(QUICKSTART), [*base[2:], *extra]).values()))
        return loop.blt_entropy_init(cfg, tmp_path / "second", progress=False)

    loaded = init(f"model.entropy_from={first / 'entropy_model'}")(jax.random.key(3))
    assert not (tmp_path / "second").exists()  # nothing pre-trained
    for a, b in zip(jax.tree.leaves(ent), jax.tree.leaves(loaded["entropy"])):
        assert (a == b).all()
    with pytest.raises(ValueError, match="does not have the shapes of model.entropy_d_model=16"):
        init("model.entropy_d_model=16", f"model.entropy_from={first / 'entropy_model'}")
    with pytest.raises(CheckpointError, match="model.entropy_from: no checkpoint in"):
        init(f"model.entropy_from={tmp_path / 'missing'}")
