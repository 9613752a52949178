"""``scripts/bench_sample.py`` on a tiny random model: both sides generate the same greedy
tokens and the table / JSON it writes are consistent (benchmarks never assert a speed)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the sampler benchmark compares against torch/transformers")
pytest.importorskip("transformers", reason="the sampler benchmark compares against transformers")

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "bench_sample.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_sample", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_sample", module)
    spec.loader.exec_module(module)
    return module


def test_bench_sample_tiny_model_writes_consistent_results(tmp_path):
    bench = _load()
    out = tmp_path / "bench.md"
    assert bench.main(["--tiny", "--batch-sizes", "1,3", "--prompt-len", "5", "--new-tokens", "4",
                       "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert [r["batch_size"] for r in result["rows"]] == [1, 3]
    for r in result["rows"]:
        # float32 on both sides, the same weights: every greedy token is the same
        assert r["agree"] == 1.0
        assert r["ratio"] == pytest.approx(r["jaxlab_tokens_per_s"] / r["transformers_tokens_per_s"])
    table = out.read_text()
    assert "compile time excluded" in table
    assert table.count("\n| ") == 3  # header + one row per batch size


def test_bench_sample_rejects_bad_batch_sizes():
    with pytest.raises(SystemExit, match="--batch-sizes"):
        _load().main(["--tiny", "--batch-sizes", "0"])


def test_bench_sample_speculative_mode_gives_identical_outputs(tmp_path):
    """Plain and speculative greedy decoding of a tiny random model (draft: pruned to 1 layer):
    every row's output is the same, and the ratio is the two measured speeds'."""
    out = tmp_path / "spec.md"
    assert _load().main(["--tiny", "--speculative", "pruned:1", "--gamma", "3", "--batch-sizes", "2",
                         "--prompt-len", "5", "--new-tokens", "6", "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert [r["batch_size"] for r in result["rows"]] == [2] and result["draft_layers"] == 1
    for r in result["rows"]:
        assert r["identical"] == 1.0
        assert r["ratio"] == pytest.approx(r["speculative_tokens_per_s"] / r["plain_tokens_per_s"])
        assert 1.0 <= r["tokens_per_target_call"] <= 4.0
