"""``scripts/bench_mamba.py --quick``: the two models have about the same parameter count and
the ratios are those of the rows (benchmarks never assert a speed)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "bench_mamba.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_mamba", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_mamba", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_bench_writes_consistent_ratios(tmp_path):
    bench = _load()
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    t, m = result["rows"]
    assert (t["model"], m["model"]) == ("transformer", "mamba")
    assert abs(m["params"] - t["params"]) <= 0.25 * t["params"]
    assert result["train_ratio"] == pytest.approx(m["train_tokens_per_s"] / t["train_tokens_per_s"])
    assert result["decode_ratio"] == pytest.approx(m["decode_tokens_per_s"] / t["decode_tokens_per_s"])
    assert t["generated"] == m["generated"] == 2 * 8  # every row decodes all its new tokens
    for r in (t, m):
        assert r["train_tokens_per_s"] > 0 and 4.0 < r["train_loss"] < 7.0  # ~ln 264 at init


def test_the_mamba_matches_the_transformers_size():
    bench = _load()
    tcfg, mcfg = bench.model_pair(256)
    pt, pm = bench._count(tcfg), bench._count(mcfg)
    assert abs(pm - pt) <= 0.1 * pt and mcfg.d_model == tcfg.d_model == 256
