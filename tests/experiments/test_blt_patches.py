"""The BLT patching experiment at a cut-down smoke size: the entropy threshold gives patches of
about the static size on the training text, both arms are scored on the same windows, and the
verdict's effect and preconditions are recomputed from the per-seed rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "blt_patches.py")


@pytest.mark.slow
def test_smoke_run_scores_both_patchings_on_the_same_windows_and_a_verdict_from_its_rows(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "steps=4", "entropy_steps=4", "eval_windows=8",
                     "threshold_windows=4", "seq_len=16", "model.ngram_table_size=64"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["blt_patches"]
    assert len(runs) == 2
    for run in runs:
        assert set(run["window_bpb"]) == {"static", "entropy", "bytes"}
        assert all(len(v) == 8 for v in run["window_bpb"].values())
        assert run["bpb_entropy"] == pytest.approx(np.mean(run["window_bpb"]["entropy"]))
        hist = np.asarray(run["patch_len_hist"])  # counts of lengths 1, 2, ...: the mean recomputed
        assert (np.arange(1, len(hist) + 1) * hist).sum() / hist.sum() == pytest.approx(run["mean_patch_len"])
        assert hist.sum() * run["mean_patch_len"] == pytest.approx(8 * 16)  # every byte in one patch
        longer = run["mean_patch_len"] > 4  # longer patches: fewer latent steps per byte
        assert (run["flops_per_byte"]["blt_entropy"] < run["flops_per_byte"]["blt_static"]) == longer
    assert runs[0]["theta"] != runs[1]["theta"]  # seeds differ
    v = results["verdict"]
    d = [np.mean(np.subtract(r["window_bpb"]["static"], r["window_bpb"]["entropy"])) for r in runs]
    assert v["effect"] == pytest.approx(np.mean(d)) and v["low"] <= v["effect"] <= v["high"]
    matched = [p for p in v["preconditions"] if p["name"] == "matched patch sizes"][0]
    assert matched["passed"] == all(abs(r["mean_patch_len"] - 4) / 4 <= 0.15 for r in runs)
    if not matched["passed"]:
        assert v["outcome"] == "inconclusive"
    assert (tmp_path / "blt_patches" / "seed1" / "blt_patches.png").exists()
