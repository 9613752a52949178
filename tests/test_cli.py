"""End-to-end runs of ``jaxlab run`` on a tiny model: artifacts, resume, crashes, bad input."""

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pydoc_data.topics

from jaxlab import cli

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "experiments" / "quickstart.py")
FIXTURES = Path(__file__).parent / "fixtures"
TINY = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1",
        "model.head_dim=16", "model.mlp_dim=64", "train.batch_size=8", "train.seq_len=32",
        "train.eval_batches=2", "optim.warmup_steps=2", "sample.max_new_tokens=8"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    """A ~60 KB corpus of text that ships with Python, and a private tfds data dir."""
    root = tmp_path_factory.mktemp("cli_corpus")
    topics = pydoc_data.topics.topics
    text = "\n\n".join(topics[k] for k in sorted(topics)[:12])[:60_000]
    (root / "corpus.txt").write_text(text)
    return [f"data.path={root / 'corpus.txt'}", f"data.data_dir={root / 'tfds'}"]


def run_cli(workdir, *overrides) -> int:
    return cli.main(["run", QUICKSTART, "--workdir", str(workdir), "--no-progress", "--set",
                     *TINY, *overrides])


def read_events(path: Path) -> list:
    """Parses a TensorBoard event file (TFRecord framing of Event protos)."""
    from tensorboardX.proto.event_pb2 import Event
    data, events, offset = path.read_bytes(), [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        events.append(Event.FromString(data[offset + 12:offset + 12 + length]))
        offset += 12 + length + 4
    return events


@pytest.mark.slow
def test_run_writes_every_artifact_and_learns(tmp_path, corpus):
    workdir = tmp_path / "run"
    assert run_cli(workdir, *corpus, "train.loop.steps=30", "train.loop.eval_every=10",
                   "train.loop.checkpoint_every=15", "train.loop.log_every=5") == 0
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"]["d_model"] == 32 and config["train"]["loop"]["steps"] == 30
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    val = [r for r in records if "val/loss" in r]
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]
    assert [r["step"] for r in val] == [10, 20, 30]
    assert train[-1]["train/loss"] < train[0]["train/loss"] - 0.3  # it learns
    assert val[-1]["val/bpb"] < val[0]["val/bpb"]
    events = [e for f in (workdir / "tensorboard").iterdir() for e in read_events(f)]
    tags = {v.tag for e in events for v in e.summary.value}
    assert {"train/loss", "val/loss", "val/bpb", "train/lr"} <= tags
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["15", "30"]
    assert (workdir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((workdir / "results.json").read_text())
    assert results["val_bpb"] == pytest.approx(val[-1]["val/bpb"])
    report = (workdir / "report.md").read_text()
    assert f"{results['val_bpb']:.4f}" in report and "curves.png" in report
    assert results["sample"].startswith("The ")

    # Running again finds the run complete: it restores and reports without training.
    assert run_cli(workdir, *corpus, "train.loop.steps=30", "train.loop.eval_every=10",
                   "train.loop.checkpoint_every=15", "train.loop.log_every=5") == 0
    again = json.loads((workdir / "results.json").read_text())
    assert again["resumed_from"] == 30 and again["val_bpb"] == results["val_bpb"]

    # A resumed run must not silently change the experiment.
    assert run_cli(workdir, *corpus, "train.loop.steps=30", "model.mlp_dim=32") == 1


def _cli_process(workdir, overrides, **kwargs):
    cmd = [sys.executable, "-m", "jaxlab", "run", QUICKSTART, "--workdir", str(workdir),
           "--no-progress", "--set", *TINY, *overrides]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONHASHSEED": "0"}, **kwargs)


def _comparable(workdir: Path) -> list[dict]:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "train/tokens_per_s"} for r in records]


@pytest.mark.slow
def test_sigkill_and_restart_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path, corpus):
    settings = [*corpus, "train.loop.steps=120", "train.loop.checkpoint_every=20", "train.loop.eval_every=40",
                "train.loop.log_every=10"]
    reference = _cli_process(tmp_path / "reference", settings)
    out, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, out.decode()

    workdir = tmp_path / "killed"
    proc = _cli_process(workdir, settings)
    deadline = time.time() + 300
    while not (workdir / "checkpoints" / "40" / "jaxlab_manifest.json").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (workdir / "results.json").exists(), "the kill came after the run finished"
    killed_at = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert killed_at < 120

    restarted = _cli_process(workdir, settings)
    out, _ = restarted.communicate(timeout=600)
    assert restarted.returncode == 0, out.decode()
    ref = json.loads((tmp_path / "reference" / "results.json").read_text())
    res = json.loads((workdir / "results.json").read_text())
    assert res["resumed_from"] is not None and res["resumed_from"] >= 40
    assert res["train_loss"] == ref["train_loss"] and res["val_loss"] == ref["val_loss"]
    assert _comparable(workdir) == _comparable(tmp_path / "reference")


@pytest.mark.slow
def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_good_checkpoint(tmp_path, corpus, capsys):
    workdir = tmp_path / "nan"
    code = run_cli(workdir, *corpus, "train.loop.steps=20", "train.loop.checkpoint_every=1",
                   "optim.lr=1e12", "optim.warmup_steps=0", "optim.clip_norm=none",
                   "optim.schedule=constant")
    assert code == 1
    err = capsys.readouterr().err
    assert "error: quickstart: loss is nan at step" in err and "stopping" in err
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir())
    assert steps and f"(step {steps[-1]})" in err
    assert not (workdir / "results.json").exists()


def test_unknown_key_is_an_error_naming_the_nearest_key(tmp_path, capsys):
    assert run_cli(tmp_path, "model.n_layer=2") == 2
    assert "unknown config key 'model.n_layer'; did you mean 'model.n_layers'?" in capsys.readouterr().err
    assert run_cli(tmp_path, "train.loop.steps=ten") == 2
    assert "train.loop.steps: expected an int, got 'ten'" in capsys.readouterr().err
    assert not (tmp_path / "config.json").exists()


def test_empty_or_missing_corpus_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("  \n\n ")
    assert run_cli(tmp_path / "w1", f"data.path={tmp_path / 'empty.txt'}",
                   f"data.data_dir={tmp_path / 'tfds'}") == 1
    assert "empty.txt" in capsys.readouterr().err
    assert run_cli(tmp_path / "w2", f"data.path={tmp_path / 'nope'}",
                   f"data.data_dir={tmp_path / 'tfds'}") == 1
    assert "nope" in capsys.readouterr().err


def test_missing_experiment_and_config_command(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "missing.py")]) == 2
    assert "no experiment file" in capsys.readouterr().err
    assert cli.main(["config", QUICKSTART, "--set", "model.n_layers=3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["quickstart"]["model"]["n_layers"] == 3


@pytest.mark.slow
def test_variants_train_in_their_own_workdirs_and_the_claim_is_decided(tmp_path, corpus):
    experiment = Path(__file__).parent / "fixtures" / "two_variants.py"
    results = cli.run_experiment(experiment, tmp_path, [*corpus, "optim.warmup_steps=2"],
                                 progress=False)
    assert set(results) == {"short", "long"}
    assert results["long"]["val_loss"] < results["short"]["val_loss"]
    assert json.loads((tmp_path / "short" / "config.json").read_text())["train"]["loop"]["steps"] == 4
    assert json.loads((tmp_path / "long" / "config.json").read_text())["train"]["loop"]["steps"] == 24
    report = (tmp_path / "report.md").read_text()
    assert "[short](short/report.md)" in report and "[long](long/report.md)" in report
    assert "> More steps reach a lower validation loss." in report
    assert "**Verdict: held.**" in report
    assert json.loads((tmp_path / "results.json").read_text())["long"]["steps"] == 24


def test_experiment_with_its_own_run_function(tmp_path):
    """A run() experiment: overrides reach every variant, the runner writes results, per-variant
    reports and the summary with the verdict computed from the returned numbers."""
    out = tmp_path / "custom"
    rc = cli.main(["run", str(FIXTURES / "custom_run.py"), "--workdir", str(out), "--no-progress",
                   "--set", "steps=3"])
    assert rc == 0
    slow = json.loads((out / "slow" / "results.json").read_text())
    # x_3 = 4 * (1 - 2 * 0.05) ** 3
    assert slow["steps"] == 3 and abs(slow["final_distance"] - 4 * 0.9 ** 3) < 1e-12
    assert (out / "fast" / "trace.txt").exists()
    assert "ended at x = " in (out / "slow" / "report.md").read_text()
    summary = (out / "report.md").read_text()
    assert "| variant | final_distance | steps |" in summary
    assert "**Verdict: held.**" in summary and "Distances: slow 2.9160" in summary
    both = json.loads((out / "results.json").read_text())
    assert set(both) == {"slow", "fast"}


def test_run_function_experiment_rejects_unknown_keys(tmp_path, capsys):
    rc = cli.main(["run", str(FIXTURES / "custom_run.py"), "--workdir", str(tmp_path / "x"),
                   "--set", "step=3"])
    assert rc == 2
    assert "'steps'" in capsys.readouterr().err


def test_run_function_experiment_refuses_to_resume_with_other_settings(tmp_path, capsys):
    out = tmp_path / "custom"
    base = ["run", str(FIXTURES / "custom_run.py"), "--workdir", str(out), "--no-progress"]
    assert cli.main(base + ["--set", "steps=3"]) == 0
    assert json.loads((out / "slow" / "config.json").read_text())["steps"] == 3
    assert cli.main(base + ["--set", "steps=3"]) == 0  # same settings: resumes
    assert cli.main(base + ["--set", "steps=4"]) == 1
    assert "different settings (steps)" in capsys.readouterr().err
