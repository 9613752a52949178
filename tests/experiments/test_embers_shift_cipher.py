"""experiments/embers_shift_cipher.py: the smoke preset end to end (tiny models), the pairing
of high / low test plaintexts, numbers and verdict recomputed from the rows, and the
verdict's three ways on synthetic rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "embers_shift_cipher.py"


@pytest.fixture(scope="module")
def experiment():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_run_and_its_numbers_follow_from_its_rows(tmp_path, experiment):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", "n_pairs=2", "shifts=1,13", "shift_weights=0.5,0.5",
                     "pretrain_steps=0", "sft_steps=2", "n_probe=1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["embers_shift_cipher"]
    for run in runs:
        rows = run["rows"]
        assert len(rows) == 2 * 2 * 2 and len(run["probe_rows"]) == 2
        for kind in ("high", "low"):
            assert run[f"accuracy_{kind}"] == pytest.approx(np.mean([r["correct"] for r in rows if r["kind"] == kind]))
        twins = {(r["shift"], r["pair"], r["kind"]): r["plaintext"] for r in rows}
        for (shift, pair, kind), text in twins.items():  # a low twin is its high twin with letters shuffled
            other = twins[(shift, pair, "high")]
            assert [sorted(w) for w in text.split()] == [sorted(w) for w in other.split()]
        assert all(np.isfinite(r["bits_per_char"]) and r["bits_per_char"] > 0 for r in rows)
    high, low = experiment.paired_correct(runs)
    v = results["verdict"]
    assert v["effect"] == pytest.approx(high.mean() - low.mean())
    assert v["outcome"] == "inconclusive" and not v["preconditions"][0]["passed"]  # decodes nothing
    assert experiment.claim_verdict({"x": runs}).to_dict() == v
    assert (tmp_path / "accuracy.png").exists() and "rot-13 minus the other shifts" in (tmp_path / "report.md").read_text()


def _seed(high, low, shifts=(1, 13)):
    rows = []
    for p, (h, l_) in enumerate(zip(high, low)):
        for kind, c in (("high", h), ("low", l_)):
            rows.append({"shift": shifts[p % len(shifts)], "pair": p, "kind": kind, "correct": int(c)})
    return {"rows": rows}


def test_verdict_three_ways(experiment):
    n = 60
    half, third = [1, 0] * (n // 2), [1, 0, 0] * (n // 3)
    held = experiment.claim_verdict({"x": [_seed(half, [0] * n)] * 2})
    assert held.outcome == "held" and held.effect == pytest.approx(0.5)
    lost = experiment.claim_verdict({"x": [_seed(third, half)] * 2})
    assert lost.outcome == "not held" and lost.effect == pytest.approx(1 / 3 - 1 / 2)
    ceiling = experiment.claim_verdict({"x": [_seed([1] * n, [1] * n)]})
    assert ceiling.outcome == "inconclusive" and "ceiling" in ceiling.reason
    # rot-13 (odd pairs) always right, rot-1 never: the report's second quantity
    r13 = experiment.rot13_vs_other([_seed([0, 1] * 10, [0, 1] * 10)])
    assert r13["effect"] == pytest.approx(1.0)


def test_unpaired_rows_and_bad_settings_are_refused(experiment):
    run = _seed([1, 0], [0, 0])
    run["rows"].pop()
    with pytest.raises(ValueError, match="misses its high or low twin"):
        experiment.paired_correct([run])
    with pytest.raises(ValueError, match="hold 13"):
        experiment.Config(shifts=(1, 3), shift_weights=(0.5, 0.5))
    with pytest.raises(ValueError, match="one positive weight per shift"):
        experiment.Config(shift_weights=(1.0,))
