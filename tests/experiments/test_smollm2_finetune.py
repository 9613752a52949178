"""The SmolLM2 fine-tuning experiment at its smoke preset (SFT, two steps): it loads the real
model, trains through the chat template and reports accuracy before and after."""

import json
from pathlib import Path

import pytest

from jaxlab import cli

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "smollm2_finetune.py")


@pytest.mark.slow
def test_sft_smoke(tmp_path, smollm2_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke"]) == 0
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["method"] == "sft" and 0.0 <= r["before_accuracy"] <= 1.0 and 0.0 <= r["after_accuracy"] <= 1.0
    log = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in row for row in log)
    assert "before sft" in (tmp_path / "report.md").read_text()
