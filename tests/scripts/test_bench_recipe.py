"""scripts/bench_recipe.py: the same batches and validation windows for every variant, both
trainers stop at their deadline and score those windows, and bad input is refused (no
timing or quality is asserted)."""

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxlab.train import budget

pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[torch]')")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import bench_recipe as bench  # noqa: E402

TINY = bench.Recipe(d_model=16, n_layers=1, n_heads=2, head_dim=8, mlp_dim=32, seq_len=16, batch_size=8,
                    warmup_steps=2)


@pytest.fixture
def text(tmp_path):
    rng = np.random.default_rng(0)
    words = ["form", "table", "cell", "total", "date", "name", "field", "value"]
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(rng.choice(words, 6000)))
    return path


def test_batches_and_windows_are_fixed_by_seed_and_step(text):
    train, val = bench.load_bytes(text)
    assert train.size == int(0.9 * (train.size + val.size))
    a, b = bench.train_batch(train, TINY, 0, 5), bench.train_batch(train, TINY, 0, 5)
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
    assert not np.array_equal(a["inputs"], bench.train_batch(train, TINY, 0, 6)["inputs"])
    np.testing.assert_array_equal(a["inputs"][:, 1:], a["targets"][:, :-1])
    windows = bench.eval_windows(val, TINY, 10)
    assert windows.shape == (10, 17)
    np.testing.assert_array_equal(windows.reshape(-1), val[:170])


@pytest.mark.slow
def test_both_trainers_spend_the_budget_alike_and_score_the_same_windows(text, tmp_path, monkeypatch):
    """On a fake clock (every reading 1 s later) and a 30 s budget both sides stop at the same
    step, which only the budget rule decides."""
    train, val = bench.load_bytes(text)
    windows = bench.eval_windows(val, TINY, 8)
    monkeypatch.setattr(bench, "seconds_left", lambda deadline: 30.0)
    rows = {}
    for name, run in [("jaxlab", lambda: bench.run_jaxlab(TINY, train, windows, 0.0, 0, tmp_path / "run")),
                      ("torch", lambda: bench.run_torch(TINY, train, windows, 0.0, 0, compiled=False))]:
        ticks = itertools.count()
        monkeypatch.setattr(budget, "_now", lambda: float(next(ticks)))
        rows[name] = run()
        assert 5 <= rows[name]["steps"] < 30  # stopped by the budget, not the cap
        assert math.isfinite(rows[name]["bpb"]) and 0 < rows[name]["bpb"] < 9
    assert rows["jaxlab"]["steps"] == rows["torch"]["steps"]
    assert rows["jaxlab"]["eval_bytes"] == rows["torch"]["eval_bytes"] == 8 * 16


def test_bad_input_is_refused(text, tmp_path, capsys):
    assert bench.main(["--data", str(tmp_path / "absent.txt")]) == 2
    assert "no data file" in capsys.readouterr().err
    assert bench.main(["--data", str(text), "--variants", "jaxlab,tensorflow"]) == 2
    assert "unknown variants ['tensorflow']" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown recipe setting 'layers=2'"):
        bench.with_settings(bench.RECIPE, ["layers=2"])
    with pytest.raises(SystemExit, match="lr: expected a float"):
        bench.with_settings(bench.RECIPE, ["lr=fast"])
    assert bench.with_settings(bench.RECIPE, ["lr=0.01", "n_layers=2"]).n_layers == 2
    assert bench.main(["--data", str(text), "--grid", "d_model=96,128"]) == 2
    assert "--grid needs --sweep" in capsys.readouterr().err


def test_grid_names_the_swept_fields_and_their_values():
    assert bench.parse_grid(["d_model=96,128", "lr=0.003"]) == {"d_model": ("96", "128"), "lr": ("0.003",)}
    for bad in ("width=96", "d_model=", "d_model"):
        with pytest.raises(SystemExit, match="is not KEY=V1,V2"):
            bench.parse_grid([bad])
