"""The L-Mul attention experiment at smoke size: relative errors on known pairs, the arms'
losses and the verdict recomputed from the per-row losses."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "lmul_attention.py")


def test_error_summary_of_known_pairs():
    exp = cli.load_experiment(EXPERIMENT)
    s = exp.error_summary([1.5, 0.0, 1000.0], [1.25, 3.0, 1.0])
    # 1.5 * 1.25 = 1.875 exactly in 3-bit L-Mul; 1000 rounds to 1024 at 3 bits, L-Mul(1024, 1) =
    # (1 + 2^-3) 1024 = 1152 (error 0.152); the zero product is dropped; e4m3 has no 1000 (NaN)
    assert s["lmul_m3"]["mean"] == pytest.approx(0.152 / 2) and s["lmul_m3"]["not_finite"] == 0.0
    assert s["fp8_e4m3"]["not_finite"] == 0.5 and s["fp8_e4m3"]["mean"] == 0.0
    with pytest.raises(ValueError, match="divide n_rows"):
        exp.Config(n_rows=6, batch_size=4)


@pytest.mark.slow
def test_smoke_run_recomputes_its_verdict(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "n_pairs=500"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["lmul_attention"]
    for run in runs:
        assert set(run["row_losses"]) == {"exact", "lmul3", "lmul4", "fp8_e4m3", "fp8_e5m2"}
        assert run["lmul3_loss"] == pytest.approx(np.mean(run["row_losses"]["lmul3"]))
        assert run["lmul3_loss"] != run["exact_loss"]  # the products option reaches attention
        e = run["errors"]
        assert e["random"]["lmul_m3"]["mean"] < e["random"]["fp8_e5m2"]["mean"]  # the paper's ordering
        assert set(e) == {"random", "qk", "pv"}
    lm = np.array([r["row_losses"]["lmul3"] for r in runs])
    f8 = np.array([r["row_losses"]["fp8_e4m3"] for r in runs])
    v = results["verdict"]
    r = stats.paired_bootstrap_interval(lm, f8)
    assert (v["effect"], v["low"], v["high"]) == pytest.approx((r["effect"], r["low"], r["high"]))
    assert v["threshold"] == 0.01 and v["direction"] == "less"
    assert v["outcome"] == "inconclusive" and "predicts text" in v["reason"]  # a random model
    assert (tmp_path / "lmul_attention" / "seed0" / "lmul_attention.png").exists()
