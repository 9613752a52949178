"""The compression experiment at smoke size: per-passage sizes against the compressors measured
here, the lossless precondition from the decoded passages, and the verdict recomputed."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats
from jaxlab.analysis import compression

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "llm_compression.py")


@pytest.mark.slow
def test_smoke_run_is_lossless_and_its_verdict_recomputes(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "passages=2", "passage_bytes=128"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["llm_compression"]
    for run in runs:
        assert run["decoded"] == 1 and run["roundtrips"] == 1
        assert [d["bytes"] for d in run["decoded_samples"]] == [64]
        assert run["model_bits_per_byte"] == pytest.approx(np.mean([p["model_bits_per_byte"] for p in run["passages"]]))
    xz = np.array([[p["xz-9e_bits_per_byte"] for p in run["passages"]] for run in runs])
    model = np.array([[p["model_bits_per_byte"] for p in run["passages"]] for run in runs])
    v = results["verdict"]
    assert v["effect"] == pytest.approx(stats.paired_bootstrap_interval(xz, model)["effect"])
    # a random byte model codes at about 8 bits per byte or worse: never a result
    pre = {p["name"]: p["passed"] for p in v["preconditions"]}
    assert pre["the model compresses the passages"] == (model.mean() < 8.0)
    if not pre["the model compresses the passages"]:
        assert v["outcome"] == "inconclusive"
    assert (tmp_path / "llm_compression" / "seed0" / "compression.png").exists()


def test_baselines_are_the_compressors_on_the_passage_bytes():
    text = "abc " * 200
    sizes = compression.baseline_sizes(text)
    assert sizes["xz-9e"] < len(text) and sizes["gzip-9"] < len(text)
    with pytest.raises(ValueError, match="decode_passages"):
        cli.load_experiment(EXPERIMENT).Config(passages=2, decode_passages=3)
    with pytest.raises(ValueError, match="decode_bytes"):
        cli.load_experiment(EXPERIMENT).Config(decode_bytes=0)
