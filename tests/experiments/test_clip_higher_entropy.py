"""experiments/clip_higher_entropy.py: a tiny run through the runner (the two arms share their
first update exactly; the verdict follows from the per-probe numbers) and the verdict rules on
hand-made runs."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "clip_higher_entropy.py")
TINY = ["task.n_train=64", "task.n_test=8", "n_probe=4", "probe_samples=2", "sft.batch_size=8",
        "sft.loop.steps=4", "rl.prompts_per_step=2", "rl.group_size=4", "rl.max_new_tokens=6", "rl.pass_k=2",
        "rl.loop.steps=4", "rl.loop.eval_every=4", "rl.loop.checkpoint_every=4"]


@pytest.mark.slow
def test_tiny_run_pairs_the_arms_and_decides_from_the_probes(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", *TINY]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["runs"]["clip_higher_entropy"][0]
    assert run["symmetric_eps_high"] == 0.2 and run["clip_higher_eps_high"] == 0.28
    # one warm start, one first rollout, an on-policy first update: identical in both arms
    assert run["symmetric_step1_reward"] == run["clip_higher_step1_reward"]
    assert run["symmetric_step1_loss"] == pytest.approx(run["clip_higher_step1_loss"], abs=1e-6)
    for arm in ("symmetric", "clip_higher"):
        assert run[f"{arm}_clip_low_per_step"][0] == run[f"{arm}_clip_high_per_step"][0] == 0.0
        assert len(run[f"{arm}_entropy_end_per_probe"]) == 4
        assert all(0 < h < math.log(264) for h in run[f"{arm}_entropy_end_per_probe"])
        assert run[f"{arm}_curve_step"] == [0, 4]
        assert run[f"{arm}_curve_entropy"][0] == run["entropy_start"]
        assert run[f"{arm}_curve_entropy"][-1] == pytest.approx(run[f"{arm}_entropy_end"])
    diff = np.subtract(run["clip_higher_entropy_end_per_probe"], run["symmetric_entropy_end_per_probe"])
    v = results["verdict"]
    assert v["effect"] == pytest.approx(diff.mean(), abs=1e-12)
    assert v["low"] <= v["effect"] <= v["high"]
    fell = run["symmetric_entropy_end"] <= 0.8 * run["entropy_start"]
    clipped = run["symmetric_clip_low"] + run["symmetric_clip_high"] > 0
    assert [p["passed"] for p in v["preconditions"]] == [fell, clipped]
    if not (fell and clipped):
        assert v["outcome"] == "inconclusive" and "precondition" in v["reason"]
    assert (tmp_path / "clip_higher_entropy" / "seed0" / "entropy.png").exists()
    assert (tmp_path / "entropy_curves.png").exists()
    assert f"**Verdict: {v['outcome']}.**" in (tmp_path / "report.md").read_text()


def _run(start, sym_P, higher_P, clip=0.01):
    return {"entropy_start": start, "symmetric_entropy_end": float(np.mean(sym_P)),
            "symmetric_entropy_end_per_probe": list(sym_P), "clip_higher_entropy_end_per_probe": list(higher_P),
            "symmetric_clip_low": clip, "symmetric_clip_high": 0.0}


def test_verdict_rules_on_hand_made_runs():
    from jaxlab.cli import load_experiment

    exp = load_experiment(EXPERIMENT)
    rng = np.random.default_rng(0)
    sym = [0.30 + 0.01 * rng.standard_normal(50) for _ in range(3)]
    higher = [s + 0.05 + 0.005 * rng.standard_normal(50) for s in sym]
    v = exp.claim_verdict({"x": [_run(0.6, s, h) for s, h in zip(sym, higher)]})
    assert v.outcome == "held" and v.low > 0 and v.effect == pytest.approx(np.mean(np.subtract(higher, sym)))
    v = exp.claim_verdict({"x": [_run(0.6, h, s) for s, h in zip(sym, higher)]})  # arms swapped
    assert v.outcome == "not held" and v.high <= 0
    v = exp.claim_verdict({"x": [_run(0.6, s, s + 0.01 * rng.standard_normal(50)) for s in sym]})
    assert v.outcome == "inconclusive" and "interval contains" in v.reason
    # held numbers, but no entropy fall in seed 1 (end 0.30 > 0.8 x start 0.35): inconclusive, saying why
    runs = [_run(0.6, s, h) for s, h in zip(sym, higher)]
    runs[1]["entropy_start"] = 0.35
    v = exp.claim_verdict({"x": runs})
    assert v.outcome == "inconclusive" and "entropy falls" in v.reason
    v = exp.claim_verdict({"x": [_run(0.6, s, h, clip=0.0) for s, h in zip(sym, higher)]})
    assert v.outcome == "inconclusive" and "clip binds" in v.reason


def test_the_arms_differ_only_in_eps_high():
    from jaxlab.cli import load_experiment

    exp = load_experiment(EXPERIMENT)
    cfg = exp.get_config()
    arms = {k: dataclasses.asdict(v) for k, v in exp.arm_configs(cfg).items()}
    changed = {k for k in arms["symmetric"] if arms["symmetric"][k] != arms["clip_higher"][k]}
    assert changed == {"eps_high"} and arms["clip_higher"]["eps_high"] == 0.28
    assert cfg.rl.ppo_epochs > 1 and not cfg.rl.dynamic_sampling and cfg.rl.entropy_coef == 0
    with pytest.raises(ValueError, match="symmetrically"):
        exp.arm_configs(dataclasses.replace(cfg, rl=dataclasses.replace(cfg.rl, eps_high=0.3)))
