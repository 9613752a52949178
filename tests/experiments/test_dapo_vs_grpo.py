"""experiments/dapo_vs_grpo.py: a tiny run through the runner (per-problem results, the verdict
from them) and the verdict rules on hand-made runs."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "dapo_vs_grpo.py")
TINY = ["task.n_train=64", "task.n_test=8", "sft.batch_size=8", "sft.loop.steps=4"] + [
    f"{arm}.{kv}" for arm in ("grpo", "dapo") for kv in (
        "prompts_per_step=2", "group_size=4", "max_new_tokens=6", "pass_k=2", "loop.steps=4",
        "loop.checkpoint_every=4")] + ["dapo.overlong_buffer=2", "dapo.max_sample_rounds=2"]


@pytest.mark.slow
def test_tiny_run_gives_per_problem_results_and_their_verdict(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", *TINY]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["runs"]["dapo_vs_grpo"][0]
    for arm in ("warm", "grpo", "dapo"):
        c = run[f"{arm}_correct"]
        assert len(c) == 8 and set(c) <= {0, 1}
        assert run[f"{arm}_accuracy"] == pytest.approx(np.mean(c))
    for arm in ("grpo", "dapo"):
        lo, hi = stats.wilson_interval(int(sum(run[f"{arm}_correct"])), 8)
        assert (run[f"{arm}_accuracy_low"], run[f"{arm}_accuracy_high"]) == pytest.approx((lo, hi))
        assert 0.0 <= run[f"{arm}_batch_zero_std"] <= 1.0
    assert run["grpo_groups_filtered"] == 0.0  # GRPO keeps every group
    assert run["grpo_groups_sampled_per_step"] == 2.0  # one round of 2 prompts per rollout
    assert 2.0 <= run["dapo_groups_sampled_per_step"] <= 2.0 * 2  # up to max_sample_rounds rounds
    v = results["verdict"]
    assert v["effect"] == pytest.approx(np.mean(np.subtract(run["dapo_correct"], run["grpo_correct"])))
    assert v["low"] <= v["effect"] <= v["high"] and "McNemar" in v["test"]
    room = 0.05 <= run["warm_accuracy"] <= 0.95
    assert [p["passed"] for p in v["preconditions"]] == [room]
    if not room:
        assert v["outcome"] == "inconclusive" and "leaves room" in v["reason"]
    assert (tmp_path / "dapo_vs_grpo" / "seed0" / "rewards.png").exists()
    assert f"**Verdict: {v['outcome']}.**" in (tmp_path / "report.md").read_text()


def _run(warm, grpo_P, dapo_P):
    return {"warm_accuracy": warm, "grpo_correct": list(grpo_P), "dapo_correct": list(dapo_P)}


def test_verdict_rules_on_hand_made_runs():
    exp = cli.load_experiment(EXPERIMENT)
    rng = np.random.default_rng(0)
    grpo = [(rng.random(300) < 0.4).astype(int) for _ in range(3)]
    better = [np.maximum(g, (rng.random(300) < 0.3).astype(int)) for g in grpo]  # DAPO solves a superset
    v = exp.claim_verdict({"x": [_run(0.4, g, d) for g, d in zip(grpo, better)]})
    assert v.outcome == "held" and v.low > 0
    assert v.effect == pytest.approx(np.mean(np.subtract(better, grpo)))
    c = int(np.sum(np.subtract(better, grpo)))  # DAPO right where GRPO is wrong; never the reverse
    assert f"({c} vs 0 discordant)" in v.test
    v = exp.claim_verdict({"x": [_run(0.4, d, g) for g, d in zip(grpo, better)]})
    assert v.outcome == "not held" and v.high <= 0
    v = exp.claim_verdict({"x": [_run(0.4, g, g) for g in grpo]})  # identical arms: effect 0 exactly
    assert v.outcome == "not held" and v.effect == v.low == v.high == 0.0
    v = exp.claim_verdict({"x": [_run(w, g, d) for w, g, d in zip((0.4, 0.97, 0.4), grpo, better)]})
    assert v.outcome == "inconclusive" and "leaves room" in v.reason


def test_the_arms_share_everything_but_the_recipe():
    exp = cli.load_experiment(EXPERIMENT)
    cfg = exp.get_config()
    exp.check_pairing(cfg)
    assert cfg.dapo.dynamic_sampling and not cfg.grpo.dynamic_sampling
    assert (cfg.grpo.eps_high, cfg.dapo.eps_high) == (0.2, 0.28)
    with pytest.raises(ValueError, match="loop"):
        exp.check_pairing(dataclasses.replace(cfg, dapo=dataclasses.replace(
            cfg.dapo, loop=dataclasses.replace(cfg.dapo.loop, steps=7))))
