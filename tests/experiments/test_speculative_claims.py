"""The speculative-decoding experiments: SVIP at smoke size through the runner (a tiny random
model stands in for SmolLM2), its verdict recomputed from the per-problem rows; BiLD's verdict
and precondition from given rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli

ROOT = Path(__file__).resolve().parents[2] / "experiments"


@pytest.mark.slow
def test_svip_smoke_verdict_from_its_rows(tmp_path):
    assert cli.main(["run", str(ROOT / "speculative_svip.py"), "--workdir", str(tmp_path), "--no-progress",
                     "--preset", "smoke", "--seeds", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (run,) = results["runs"]["speculative_svip"]
    rows = run["rows"]
    assert list(rows) == ["greedy", "fixed", "svip", "lookup"] and all(len(r) == 2 for r in rows.values())
    for name in ("fixed", "svip", "lookup"):
        for r, g in zip(rows[name], rows["greedy"]):
            assert r["tokens_per_call"] == pytest.approx(r["tokens"] / r["target_calls"])
            assert r["identical"] and r["tokens"] == g["tokens"]  # exact acceptance, greedy: the same output
    assert all(r["target_calls"] == r["tokens"] for r in rows["greedy"])
    v = results["verdict"]
    effect = np.mean([s["tokens_per_call"] - f["tokens_per_call"] for s, f in zip(rows["svip"], rows["fixed"])])
    assert v["effect"] == pytest.approx(effect) and v["low"] <= effect <= v["high"]
    assert (tmp_path / "speculative_svip" / "seed0" / "draft" / "draft_vocab.json").exists()

    # BiLD on the same settings reuses that draft instead of distilling its own
    bild_dir = tmp_path / "bild"
    assert cli.main(["run", str(ROOT / "speculative_bild.py"), "--workdir", str(bild_dir), "--no-progress",
                     "--preset", "smoke", "--seeds", "1", "--set", f"draft_from={tmp_path}"]) == 0
    assert not (bild_dir / "speculative_bild" / "seed0" / "distill").exists()
    bild = json.loads((bild_dir / "results.json").read_text())["runs"]["speculative_bild"][0]
    assert bild["draft_folder"] == str(tmp_path / "speculative_svip" / "seed0" / "draft")
    assert [r["tokens"] for r in bild["rows"]["greedy"]] == [r["tokens"] for r in rows["greedy"]]
    for r in bild["rows"]["bild"]:
        assert 0.0 <= r["agreement"] <= 1.0 and r["identical"] == (r["agreement"] == 1.0)


def test_bild_verdict_reads_agreement_and_calls():
    exp = cli.load_experiment(str(ROOT / "speculative_bild.py"))

    def seed(agreements, tokens, calls):
        return {"rows": {"bild": [{"agreement": a} for a in agreements]},
                "summary": {"bild": {"tokens": tokens, "target_calls": calls}}}

    held = exp.claim_verdict({"v": [seed([0.95, 0.97, 1.0], 30, 10), seed([0.96, 0.99, 0.98], 30, 12)]})
    assert held.outcome == "held" and held.effect == pytest.approx(np.mean([0.95, 0.97, 1.0, 0.96, 0.99, 0.98]))
    assert exp.claim_verdict({"v": [seed([0.5, 0.6, 0.7], 30, 10)]}).outcome == "not held"
    slow = exp.claim_verdict({"v": [seed([0.95, 0.97, 1.0], 30, 25)]})  # 1.2 tokens per call: no speed-up
    assert slow.outcome == "inconclusive" and "tokens per target call" in slow.reason
