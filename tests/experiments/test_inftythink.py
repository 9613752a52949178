"""The InftyThink experiment at smoke size: its records respect the context, its rows give the
reported accuracies, and the verdict is recomputed from them."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "inftythink.py")


@pytest.mark.slow
def test_smoke_rows_give_the_verdict(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (run,) = results["runs"]["inftythink"]
    assert {r["n"] for r in run["rows"]} == {2, 24} and len(run["rows"]) == 8
    assert all(1 <= r["iterations"] <= 2 for r in run["rows"])
    long = [r for r in run["rows"] if r["n"] == 24]
    assert run["infty_long"] == pytest.approx(np.mean([r["infty"] for r in long]))
    assert all(r["one_pass_tokens"] <= 64 for r in run["rows"])
    v = results["verdict"]
    effect = np.mean([r["infty"] - r["one_pass"] for r in long])
    assert v["effect"] == pytest.approx(effect)
    assert (tmp_path / "inftythink" / "seed0" / "accuracy_vs_n.png").exists()


def test_training_records_fit_the_context():
    exp = cli.load_experiment(EXPERIMENT)
    cfg = exp.Config(n_train_records=200)
    records = exp.training_records(cfg, exp.infty.IterationTask())
    assert records["one_pass"] and records["infty"]
    assert all(exp.fits(r, cfg.max_context) for r in records["one_pass"] + records["infty"])
    # one pass keeps only the instances whose whole trace fits: none of n >= 24
    assert max(int(r["prompt"].split("n=")[1].rstrip(":")) for r in records["one_pass"]) < 24
    with pytest.raises(ValueError, match="long_n"):
        exp.Config(long_n=(99,))
