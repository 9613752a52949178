"""The local/global attention experiment at a reduced smoke size: the arms differ only in
layer types, the analytic attention count, and a verdict computed from the per-document rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "local_global_extraction.py")


def test_visible_pairs_count_the_window_exactly():
    exp = load_experiment(EXPERIMENT)
    for n, window in ((1, 4), (3, 2), (10, 4), (50, 16), (7, 30)):
        r = window // 2
        brute = sum(1 for t in range(n) for s in range(n) if abs(t - s) <= r)
        assert exp.visible_pairs(n, "local", window) == brute
        assert exp.visible_pairs(n, "global", window) == n * n
    cfg = exp.Config()
    alt, glob = cfg.encoder("alternating"), cfg.encoder("global")
    assert alt.types == ("global", "local", "local") and glob.types == ("global",) * 3
    assert exp.attention_flops(400, alt) < exp.attention_flops(400, glob) == 3 * 4 * 2 * 32 * 400 ** 2


@pytest.mark.slow
def test_smoke_run_gives_a_verdict_from_its_rows(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", "steps=2", "n_train=8"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["runs"]["local_global_extraction"][0]
    for arm in ("alternating", "global"):
        assert len(run["per_doc_f1"][arm]) == 4 and run[f"f1_{arm}"] == pytest.approx(np.mean(run["per_doc_f1"][arm]))
        assert all(set(e["predicted"]) == set(e["gold"]) for e in run[f"examples_{arm}"])
    assert run["attention_flops_ratio"] < 1
    v = results["verdict"]
    effect = np.mean(run["per_doc_f1"]["alternating"]) - np.mean(run["per_doc_f1"]["global"])
    assert v["effect"] == pytest.approx(effect) and v["low"] <= effect <= v["high"] and v["threshold"] == -0.03
    learns = [p for p in v["preconditions"] if p["name"] == "the all-global model learns the task"][0]
    assert learns["passed"] == (run["f1_global"] >= 0.5)
    if not learns["passed"]:
        assert v["outcome"] == "inconclusive"
    assert (tmp_path / "local_global_extraction" / "seed0" / "local_global.png").exists()
