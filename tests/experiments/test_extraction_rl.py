"""experiments/extraction_rl.py: the smoke preset end to end (per-document F1 before and after
RL, the verdict recomputed from them, zero-advantage shares recomputed from the logged counts),
the scoring helpers on crafted answers, the three-way verdict on hand-made runs, refused config
keys and the paper preset's GPU line."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli, stats
from jaxlab import tasks as tasks_lib
from jaxlab.cli import load_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "extraction_rl.py"


@pytest.fixture(scope="module")
def exp():
    return load_experiment(EXPERIMENT)


@pytest.mark.slow
def test_smoke_run_recomputes_verdict_and_zero_advantage_shares(tmp_path):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", "n_train=16", "n_test=4", "warm_steps=2"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (r,) = results["runs"]["extraction_rl"]
    for arm in ("warm", "rl"):
        for k in ("f1", "exact", "well_formed"):
            v = np.array(r[f"{arm}_{k}_per_doc"])
            assert v.shape == (4,) and np.all((0 <= v) & (v <= 1)) and r[f"{arm}_{k}"] == pytest.approx(v.mean())
        assert np.all(np.array(r[f"{arm}_exact_per_doc"]) <= np.array(r[f"{arm}_f1_per_doc"]))
    assert r["f1_gain"] == pytest.approx(r["rl_f1"] - r["warm_f1"])
    v = results["verdict"]
    assert v["effect"] == pytest.approx(np.mean(np.subtract(r["rl_f1_per_doc"], r["warm_f1_per_doc"])))
    assert v["low"] <= v["effect"] <= v["high"] and "1 seeds x 4 held-out documents" in v["test"]
    # the shares: recomputed from the per-rollout counts, each in [0, 1]
    n, z = np.array(r["rollout_groups_sampled"]), np.array(r["rollout_groups_zero_std"])
    assert len(n) == len(z) == len(r["rollout_batch_zero_std"]) == r["rollouts"] == 2
    assert np.all((2 <= n) & (n <= 2 * 2))  # 2 prompts a round, at most 2 rounds
    assert r["zero_adv_sampled"] == pytest.approx(z.sum() / n.sum())
    assert r["zero_adv_batch"] == pytest.approx(np.mean(r["rollout_batch_zero_std"]))
    assert 0 <= r["zero_adv_sampled"] <= 1 and 0 <= r["zero_adv_batch"] <= 1
    formed = r["warm_well_formed"] >= 0.5
    assert [p["name"] for p in v["preconditions"]] == ["the warm start writes well-formed records", "room to rise",
                                                       "RL had a learning signal"]
    assert v["preconditions"][0]["passed"] == formed
    if not formed:  # a random model writes no JSON
        assert v["outcome"] == "inconclusive" and "well-formed" in v["reason"]
    assert (tmp_path / "extraction_rl" / "seed0" / "training.png").stat().st_size > 0
    assert f"**Verdict: {v['outcome']}.**" in (tmp_path / "report.md").read_text()


def test_extraction_scores_and_shares_on_crafted_answers(exp):
    task = tasks_lib.get("doc_extract")
    ex = task.generate(np.random.default_rng(1), 2)
    gold = ex.meta["record"]
    first = next(iter(gold))
    texts = [ex.answer, json.dumps(dict(gold, **{first: "not-it"})), "{broken", "[1, 2]"]
    s = exp.extraction_scores(task, [ex] * 4, texts)
    n = sum(v is not None for v in gold.values())
    np.testing.assert_allclose(s["f1"], [1.0, 2 * (n - 1) / (2 * (n - 1) + 2), 0.0, 0.0])
    np.testing.assert_array_equal(s["exact"], [1, 0, 0, 0])
    np.testing.assert_array_equal(s["well_formed"], [1, 1, 0, 0])
    with pytest.raises(ValueError, match="responses"):
        exp.extraction_scores(task, [ex], texts)
    shares = exp.zero_advantage_shares([16, 32, 48], [8, 16, 0], [0.0, 0.25, 0.5])
    assert shares == {"sampled": pytest.approx(24 / 96), "batch": pytest.approx(0.25)}
    with pytest.raises(ValueError, match="between 0"):
        exp.zero_advantage_shares([4], [5], [0.0])


def _run(warm, rl, *, formed=0.9, zero=0.5):
    return {"warm_f1_per_doc": list(warm), "rl_f1_per_doc": list(rl), "warm_f1": float(np.mean(warm)),
            "warm_well_formed": formed, "zero_adv_sampled": zero}


def test_verdict_three_ways(exp):
    rng = np.random.default_rng(0)
    warm = [rng.uniform(0.2, 0.7, 200) for _ in range(3)]
    better = [np.minimum(w + rng.uniform(0.0, 0.3, 200), 1.0) for w in warm]

    def verdict(a, b, **kw):
        return exp.claim_verdict({"extraction_rl": [_run(w, r, **kw) for w, r in zip(a, b)]})

    held = verdict(warm, better)
    assert held.outcome == "held" and held.low > 0
    assert held.effect == pytest.approx(float(np.mean(np.subtract(better, warm))))
    b = stats.paired_bootstrap_interval(np.array(better), np.array(warm))
    assert (held.low, held.high) == pytest.approx((b["low"], b["high"]))
    assert verdict(better, warm).outcome == "not held"
    same = verdict(warm, [rng.permutation(w) for w in warm])
    assert same.outcome == "inconclusive" and same.low < 0 < same.high
    no_format = verdict(warm, better, formed=0.3)
    assert no_format.outcome == "inconclusive" and "well-formed" in no_format.reason
    no_room = verdict([np.full(200, 0.97)] * 3, [np.ones(200)] * 3)
    assert no_room.outcome == "inconclusive" and "room to rise" in no_room.reason
    no_signal = verdict(warm, better, zero=1.0)
    assert no_signal.outcome == "inconclusive" and "learning signal" in no_signal.reason


def test_unknown_config_keys_are_refused(capsys):
    assert cli.main(["config", str(EXPERIMENT), "--preset", "smoke", "--set", "rl.rewards=partial"]) == 2
    assert "rl.rewards" in capsys.readouterr().err
    assert cli.main(["config", str(EXPERIMENT), "--preset", "smoke", "--set", "n_docs=4"]) == 2


def test_paper_preset_is_smollm2_dapo_on_field_f1_and_listed_for_the_gpu(exp):
    from jaxlab import claims
    from jaxlab.config import apply_overrides

    cfg = apply_overrides(exp.get_config(), claims.preset_overrides(exp, "paper"))
    assert cfg.model == "smollm2-135m-instruct" and cfg.n_test >= 300
    assert cfg.rl.reward == "partial" and cfg.rl.dynamic_sampling and cfg.rl.eps_high > cfg.rl.eps_low
    assert cfg.rl.max_new_tokens >= 100 and cfg.max_new_tokens == cfg.rl.max_new_tokens  # a whole record fits
    assert cfg.rl.rows % cfg.rl.loop.grad_accum == 0
    script = (EXPERIMENT.parents[1] / "scripts" / "gpu_claims.sh").read_text()
    assert ('jaxlab run experiments/extraction_rl.py --workdir "$OUT/extraction_rl" --preset paper --seeds 3 '
            '--publish') in script
