"""The Stuffed Mamba experiment at smoke size: the four runs score the same windows, the fixes
leave positions inside the training length alone, and the verdict is recomputed from the
per-window excess losses."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "stuffed_mamba.py")


@pytest.mark.slow
def test_smoke_run_scores_every_fix_and_recomputes_its_verdict(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = next(iter(results["runs"].values()))
    assert len(runs) == 2
    for run in runs:
        curves = run["loss_by_position"]
        assert set(curves) == {"none", "forget", "normalize", "window"}
        assert all(len(c) == 16 * 8 - 1 for c in curves.values())
        # below the window length the window state is the whole state; the cap is never reached there
        for name in ("window", "normalize"):
            np.testing.assert_allclose(curves[name][:15], curves["none"][:15], rtol=1e-4)
        assert not np.allclose(curves["forget"][:15], curves["none"][:15])
        for name in curves:
            per_window = np.asarray(run[f"excess_{name}_per_window"])
            assert per_window.shape == (4,) and run[f"excess_{name}"] == pytest.approx(per_window.mean())
        none = np.asarray(curves["none"])
        assert run["inside_loss"] == pytest.approx(none[:16].mean(), rel=1e-5)
        norms = run["max_state_norm_by_position"]
        assert max(norms["normalize"]) <= run["normalize_cap"] * (1 + 1e-5)
    v = results["verdict"]
    excess_SW = np.asarray([r["excess_none_per_window"] for r in runs])
    r = stats.paired_bootstrap_interval(excess_SW, np.zeros_like(excess_SW))
    assert v["effect"] == pytest.approx(r["effect"]) and v["low"] == pytest.approx(r["low"])
    assert v["threshold"] == 0.05
    learned = np.mean([x["inside_loss"] for x in runs]) < np.mean([x["unigram_entropy"] for x in runs])
    assert v["preconditions"][0]["passed"] == learned
    if not learned:
        assert v["outcome"] == "inconclusive"
    plots = list(tmp_path.rglob("collapse.png"))
    assert len(plots) == 2 and all(p.read_bytes()[:4] == b"\x89PNG" for p in plots)


def test_bad_sizes_are_refused():
    from jaxlab.cli import load_experiment

    exp = load_experiment(EXPERIMENT)
    with pytest.raises(ValueError, match="eval_mult"):
        exp.Config(eval_mult=4)
    with pytest.raises(ValueError, match="train_len"):
        exp.Config(train_len=15)
