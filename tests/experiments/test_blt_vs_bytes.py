"""The BLT-against-bytes experiment: its character noise, the repeated-text probe, and a cut-down
smoke run whose verdict is recomputed from the per-seed rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment
from jaxlab.train import byte_lm

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "blt_vs_bytes.py")
exp = load_experiment(EXPERIMENT)


def _letter(b):
    return (65 <= b <= 90) or (97 <= b <= 122)


def test_char_noise_swaps_neighbouring_letters_or_flips_case_and_nothing_else():
    text = b"The quick brown fox, 42 jumps over the lazy dog.\n" * 4
    x = np.frombuffer(text, np.uint8).astype(np.int32).reshape(4, -1)
    y = exp.char_noise(x, 0.3, np.random.default_rng(0))
    assert y.shape == x.shape and (y != x).any()
    for a, b in zip(x, y):
        changed = np.flatnonzero(a != b)
        assert all(_letter(a[t]) and _letter(b[t]) for t in changed)  # digits, spaces, punctuation kept
        # the case-folded multiset of letters is kept: swaps move letters, flips change case
        assert sorted(v | 0x20 for v in a) == sorted(v | 0x20 for v in b)
        for t in changed:
            swapped = (t + 1 < len(a) and a[t] == b[t + 1] and a[t + 1] == b[t]) or \
                      (t > 0 and a[t] == b[t - 1] and a[t - 1] == b[t])
            assert swapped or b[t] == a[t] ^ 0x20
    assert (exp.char_noise(x, 1e-9, np.random.default_rng(0)) == x).all()
    # every letter hit: "ab" swaps, a lone letter before a space flips
    assert exp.char_noise(np.array([[97, 98, 32, 99]]), 0.999999, np.random.default_rng(1)).tolist() == [[98, 97, 32, 67]]


def test_repeated_patch_lengths_split_patches_by_the_copy_they_start_in():
    static = byte_lm.starts_fn("static", k=3)
    windows = np.arange(2 * 17).reshape(2, 17) % 250
    lens = exp.repeated_patch_lengths(static, windows, 8)
    # 16 bytes (+1 target) per row, patches every 3: starts 0, 3, 6 | 9, 12, 15
    assert lens["first"] == [3, 3, 3] * 2 and lens["second"] == [3, 3, 1] * 2


@pytest.mark.slow
def test_smoke_run_verdict_is_recomputed_from_its_rows(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "steps=4", "entropy_steps=4", "eval_windows=8",
                     "threshold_windows=4", "seq_len=16", "model.ngram_table_size=64", "model.max_patches=8"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["blt_vs_bytes"]
    assert len(runs) == 2 and runs[0]["theta"] != runs[1]["theta"]
    for run in runs:
        for key in ("window_bpb", "window_degradation"):
            assert set(run[key]) == {"blt", "bytes"} and all(len(v) == 8 for v in run[key].values())
        assert run["bpb_blt"] == pytest.approx(np.mean(run["window_bpb"]["blt"]))
        assert run["flops_ratio"] == pytest.approx(run["flops"]["blt"] / run["flops"]["bytes"])
        assert run["flops"]["blt"] > run["flops"]["entropy_model_training"] > 0
        hist = np.asarray(run["patch_len_hist"])
        assert hist.sum() * run["mean_patch_len"] == pytest.approx(8 * 16)  # every byte in one patch
        assert 0.0 < run["noised_fraction"] < 0.3
    v = results["verdict"]
    a = [np.mean(np.subtract(r["window_bpb"]["blt"], r["window_bpb"]["bytes"])) for r in runs]
    b = [np.mean(np.subtract(r["window_degradation"]["bytes"], r["window_degradation"]["blt"])) for r in runs]
    assert v["effect"] == pytest.approx(np.mean(a)) and v["low"] <= v["effect"] <= v["high"]
    assert v["threshold"] == exp.MARGIN and v["direction"] == "less"
    assert f"{np.mean(b):+.4g}" in v["reason"]  # part (b)'s effect is reported
    matched = [p for p in v["preconditions"] if p["name"] == "matched training FLOPs"][0]
    assert matched["passed"] == all(abs(r["flops_ratio"] - 1) <= 0.1 for r in runs)
    if not all(p["passed"] for p in v["preconditions"]):
        assert v["outcome"] == "inconclusive"
    assert (tmp_path / "blt_vs_bytes" / "seed1" / "blt_vs_bytes.png").exists()
