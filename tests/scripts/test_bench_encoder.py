"""``scripts/bench_encoder.py`` at toy size: both arms of (a) hold the same real tokens and the
padded one more padding, the attention pair counts of (b) match a hand count, and every ratio is
the one of the measured numbers (benchmarks never assert a speed)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "bench_encoder.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_encoder", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_encoder", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_encoder_toy_run_counts_tokens_and_pairs_and_derives_its_ratios(tmp_path):
    bench = _load()
    out = tmp_path / "bench"
    assert bench.main(["--tiny", "--docs", "8", "--batch", "2", "--max-difficulty", "1", "--seq", "160",
                       "--window", "16", "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())

    a = result["packing"]
    texts = bench.documents(8, 0, 1)
    lengths = [len(t.encode("utf-8")) + 1 for t in texts]  # [BOS] + bytes
    padded, packed = a["arms"]["padded"], a["arms"]["packed"]
    assert a["seq_len"] == max(lengths) and padded["rows"] == 8
    assert padded["real_tokens"] == packed["real_tokens"] == sum(lengths)
    assert padded["pad_tokens"] == 8 * max(lengths) - sum(lengths) > packed["pad_tokens"]
    assert packed["rows"] < padded["rows"]
    for arm in (padded, packed):
        assert arm["real_tokens"] + arm["pad_tokens"] == arm["rows"] * a["seq_len"]
        assert arm["real_tokens_per_s"] == pytest.approx(arm["real_tokens"] / arm["seconds"])
    assert a["ratio_packed_over_padded"] == pytest.approx(packed["real_tokens_per_s"] / padded["real_tokens_per_s"])

    b = result["window"]
    mixed, full = b["arms"]["local/global"], b["arms"]["all-global"]
    T = 160
    assert mixed["layer_types"] == ["global", "local", "local"] and full["layer_types"] == ["global"] * 3
    assert full["attention_pairs_computed"] == full["attention_pairs_visible"] == 3 * T * T
    # window 16: |t - s| <= 8. Query block [0, 128) reaches keys [0, 136), block [128, 160) keys [120, 160).
    local_computed, local_visible = 128 * 136 + 32 * 40, T * 17 - 2 * sum(range(1, 9))
    assert mixed["attention_pairs_computed"] == T * T + 2 * local_computed
    assert mixed["attention_pairs_visible"] == T * T + 2 * local_visible
    assert b["time_ratio_mixed_over_global"] == pytest.approx(mixed["seconds"] / full["seconds"])
    assert b["attention_flops_ratio_computed"] == pytest.approx(
        mixed["attention_pairs_computed"] / full["attention_pairs_computed"])
    assert mixed["dense_gflops_fwd_bwd"] == full["dense_gflops_fwd_bwd"] > 0

    table = out.with_suffix(".md").read_text()
    assert "shared" in table and f"{a['ratio_packed_over_padded']:.2f}x" in table
    assert table.count("| padded |") == 1 and table.count("| all-global |") == 1
    total = ((mixed["attention_gflops_fwd_bwd_computed"] + mixed["dense_gflops_fwd_bwd"])
             / (full["attention_gflops_fwd_bwd_computed"] + full["dense_gflops_fwd_bwd"]))
    assert f"{total:.2f}x for all the step's matmul FLOPs" in table
    out.with_suffix(".md").unlink()
    assert bench.main(["--render", str(out.with_suffix(".json"))]) == 0
    assert out.with_suffix(".md").read_text() == table


def test_bench_encoder_rejects_a_ragged_padded_arm():
    with pytest.raises(SystemExit, match="multiple of --batch"):
        _load().main(["--tiny", "--docs", "3", "--batch", "2"])
