"""LoRA-RL vs full RL at smoke size: the LoRA arm trains the adapter alone, both arms start
from the same warm start, and the verdict is recomputed from the per-problem answers."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "tina_lora_rl.py")


@pytest.mark.slow
def test_smoke_run_trains_both_arms_and_recomputes_its_verdict(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["tina_lora_rl"]
    for run in runs:
        # rank-2 LoRA on every kernel of the 1-layer d=32 model: far fewer trainable than the model
        assert 0 < run["lora_trainable"] < run["full_trainable"] / 4
        assert len(run["full_correct"]) == len(run["lora_correct"]) == len(run["warm_correct"]) == 8
        assert run["lora_minus_full"] == pytest.approx(np.mean(run["lora_correct"]) - np.mean(run["full_correct"]))
        assert len(run["lora_reward_curve"]) == len(run["full_reward_curve"]) == 2
    lora = np.array([r["lora_correct"] for r in runs], float)
    full = np.array([r["full_correct"] for r in runs], float)
    v = results["verdict"]
    assert v["effect"] == pytest.approx(stats.paired_bootstrap_interval(lora, full)["effect"])
    assert v["threshold"] == -0.05
    # a random model has no answer format to start from: not a result
    assert v["outcome"] == "inconclusive" and "leaves room" in v["reason"]
    assert (tmp_path / "tina_lora_rl" / "seed0" / "rewards.png").exists()


def test_an_adapter_rl_cannot_train_is_refused(tmp_path, capsys):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--set", "lora.method=eva"]) != 0
    assert "lora.method must be an adapter trained by RL" in capsys.readouterr().err
