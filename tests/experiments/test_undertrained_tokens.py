"""The under-trained-token experiment at smoke size: the byte model's ground truth is the set of
bytes absent from the corpus, the verdict recomputes from the per-token repeat probabilities,
and a failed prompt precondition makes it inconclusive."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats
from jaxlab.data.corpus import default_documents

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "undertrained_tokens.py")


@pytest.mark.slow
def test_smoke_run_recomputes_its_verdict_and_knows_the_absent_bytes(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", "n_verify=4"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["undertrained_tokens"]
    present = set()
    for _, text in default_documents():
        present |= set(text.encode())
    for run in runs:
        assert run["byte_model_absent_bytes"] == 256 - len(present)
        assert 0.0 <= run["byte_model_r_precision"] <= 1.0
        n = len(run["log10_p_candidates"])
        assert n == len(run["log10_p_random"]) == min(4, run["candidates"]) and n >= 1
        assert run["references"] == 128  # the byte tokenizer's lone high bytes
        assert run["log10_gap"] == pytest.approx(np.mean(run["log10_p_random"]) - np.mean(run["log10_p_candidates"]))
    v = results["verdict"]
    expected = stats.two_sample_nested_bootstrap([r["log10_p_random"] for r in runs],
                                                 [r["log10_p_candidates"] for r in runs])
    assert v["effect"] == pytest.approx(expected["effect"]) and v["threshold"] == 1.0
    pre = v["preconditions"][0]
    assert pre["passed"] == (min(r["median_p_random"] for r in runs) >= 0.01)
    if not pre["passed"]:
        assert v["outcome"] == "inconclusive"
    assert (tmp_path / "undertrained_tokens" / "seed0" / "byte_model" / "checkpoints").is_dir()


def test_unknown_byte_model_is_refused():
    with pytest.raises(ValueError, match="byte_model"):
        cli.load_experiment(EXPERIMENT).Config(byte_model="huge")
