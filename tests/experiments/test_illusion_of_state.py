"""The permutation-composition (illusion of state) experiment: a cut-down smoke run through the
runner whose verdict is recomputed from its rows, and the verdict's three outcomes on
constructed rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "illusion_of_state.py")


@pytest.fixture(scope="module")
def exp():
    return cli.load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_run_reports_accuracy_by_length_and_a_verdict_from_its_rows(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2", "--set", "steps=4", "length=4", "eval_sequences=16", "batch=8",
                     "d_model=8"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["illusion_of_state"]
    assert len(runs) == 2
    for run in runs:
        assert {(r["group"], r["model"]) for r in run["rows"]} == {
            (g, m) for g in ("A5", "A4") for m in ("transformer", "mamba", "rnn")}
        acc = {(r["group"], r["model"]): r for r in run["rows"]}
        for r in run["rows"]:
            assert len(r["accuracy_by_length"]) == 4
            assert r["acc_final"] == r["accuracy_by_length"][-1] and r["acc_at_2"] == r["accuracy_by_length"][1]
            assert all(k / 16 == a for a in r["accuracy_by_length"] for k in [round(a * 16)])  # 16 sequences
        best = max(acc[("A5", "transformer")]["acc_final"], acc[("A5", "mamba")]["acc_final"])
        assert run["best_fixed_hard"] == best
        assert run["gap_hard"] == pytest.approx(acc[("A5", "rnn")]["acc_final"] - best)
    v = results["verdict"]
    diff = [run["gap_hard"] - run["gap_easy"] for run in runs]
    low, high = stats.bootstrap_mean_interval(diff)
    assert v["effect"] == pytest.approx(np.mean(diff))
    assert v["low"] == pytest.approx(min(low, np.mean(diff))) and v["high"] == pytest.approx(max(high, np.mean(diff)))
    rnn_ok = np.mean([run["rnn_hard"] for run in runs]) >= 0.9
    assert v["preconditions"][0]["passed"] == rnn_ok
    if not all(p["passed"] for p in v["preconditions"]):
        assert v["outcome"] == "inconclusive"
    assert (tmp_path / "illusion_of_state" / "seed1" / "illusion_of_state.png").exists()
    assert (tmp_path / "accuracy_by_length.png").exists()


def _run(acc: dict, length: int = 8) -> dict:
    """A seed's results from {(group, model): final accuracy}, position 2 learned."""
    rows = [{"group": g, "model": m, "acc_final": a, "acc_at_2": 1.0, "accuracy_by_length": [1.0] * length}
            for (g, m), a in acc.items()]
    return {"rows": rows, "length": length, "hard_group": "A5", "easy_group": "A4",
            **cli.load_experiment(EXPERIMENT).seed_summary(rows, "A5", "A4")}


@pytest.mark.parametrize("hard_fixed, easy_fixed, rnn_hard, outcome", [
    (0.05, 0.95, 0.99, "held"),         # fixed-depth models fail on A5 only
    (0.95, 0.95, 0.99, "not held"),     # they succeed on A5: part 1 not held
    (0.05, 0.05, 0.99, "not held"),     # they fail on A4 as much: part 2 not held
    (0.05, 0.95, 0.50, "inconclusive"),  # the RNN does not succeed on A5
])
def test_verdict_outcomes_on_constructed_rows(exp, hard_fixed, easy_fixed, rnn_hard, outcome):
    runs = []
    for s in range(3):
        jitter = 0.01 * s
        runs.append(_run({("A5", "transformer"): hard_fixed + jitter, ("A5", "mamba"): hard_fixed,
                          ("A5", "rnn"): rnn_hard, ("A4", "transformer"): easy_fixed - jitter,
                          ("A4", "mamba"): easy_fixed, ("A4", "rnn"): 0.99}))
    v = exp.claim_verdict({"illusion_of_state": runs})
    assert v.outcome == outcome
    gap_diff = [r["gap_hard"] - r["gap_easy"] for r in runs]
    assert v.effect == pytest.approx(np.mean(gap_diff))


def test_curriculum_and_success_length(exp):
    lengths = [exp.curriculum_length(k, 100, 32) for k in range(100)]
    assert lengths[0] == 2 and lengths[50] == 32 and lengths[-1] == 32
    assert all(a <= b for a, b in zip(lengths, lengths[1:]))
    assert exp.success_length([1.0, 0.95, 0.91, 0.4, 0.95]) == 3
    assert exp.success_length([0.95] * 4) == 4 and exp.success_length([0.2, 1.0]) == 0
    with pytest.raises(ValueError, match="non-empty subset"):
        exp.Config(models=("lstm",))
    with pytest.raises(ValueError, match="S<n> or A<n>"):
        exp.Config(hard_group="Z5")
