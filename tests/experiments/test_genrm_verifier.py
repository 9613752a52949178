"""experiments/genrm_verifier.py: the GenRM objective is exact per step; the verdict follows
the paired interval and the room-to-rerank precondition; the smoke preset (2 seeds) stores
per-problem selections that agree with the candidates' scores and labels, bounded by pass@16,
and a verdict recomputable from them."""

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import cli, ttc
from jaxlab.data.chat import verification_record
from jaxlab.losses.verifier import genrm_objective, genrm_sums
from jaxlab.models import transformer

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "genrm_verifier.py"


@pytest.fixture(scope="module")
def experiment():
    return cli.load_experiment(EXPERIMENT)


def test_weighted_rows_give_the_genrm_objective(experiment):
    verify = [verification_record(f"{a}+{a}=", str(a + a + (a % 2)), a % 2 == 0) for a in range(8)]
    correct = [{"prompt": f"{a}+{a}=", "response": str(2 * a)} for a in range(0, 8, 2)]
    lam = 0.7
    source = experiment.GenRMSource(verify, correct, lam=lam, batch_size=4, seq_len=48, seed=0)
    batch, _ = source.next(None, 1)
    assert batch["inputs"].shape == (8, 48) and (batch["correct_scale"][:4] == 0).all()
    cfg = experiment.TINY
    params = transformer.init(cfg, jax.random.key(0))
    sums = experiment.genrm_loss_sums(params, batch, jax.random.key(0), model_cfg=cfg)
    logits = transformer.apply(params, batch["inputs"], cfg, positions_BT=batch["positions"],
                               segment_ids_BT=batch["segment_ids"])
    is_c = (batch["correct_scale"] > 0)[:, None]
    ref = genrm_sums(logits, batch["targets"], jnp.where(is_c, 0.0, batch["mask"]),
                     jnp.where(is_c, batch["mask"], 0.0))
    expected, _ = genrm_objective(ref, lam=lam)
    np.testing.assert_allclose(sums["loss"] / sums["count"], expected, rtol=1e-5)


def test_room_majority_and_auc_known_values(experiment):
    passed, mean, se = experiment.room_to_rerank([[1, 1, 1, 1]], [[0, 1, 0, 1]])
    # d = 1, 0, 1, 0: mean 0.5, sd 0.5774, se 0.2887, 2 se = 0.577 > 0.5
    assert not passed and mean == 0.5 and se == pytest.approx(math.sqrt(1 / 3) / 2)
    assert experiment.room_to_rerank([[1] * 9 + [0]], [[0] * 10])[0]
    keys = [["3", "3", "4", None], [None, None, None, None], ["5", "6", "5", "6"]]
    correct = np.array([[0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0]], float)
    np.testing.assert_allclose(experiment.majority_per_problem(keys, correct), [0.0, 0.0, 0.5])
    np.testing.assert_allclose(experiment.majority_per_problem(keys, correct, k=1), [0.0, 0.0, 1.0])
    assert experiment.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert experiment.auc([0.5, 0.5], [0, 1]) == 0.5 and experiment.auc([0.1, 0.2], [1, 1]) is None


def _runs(genrm, classifier, majority, oracle, seeds=3):
    def arr(v):
        return np.broadcast_to(np.asarray(v, float), (len(oracle),)).tolist()
    return {"genrm_verifier": [{"n_best_of": 16, "per_problem": {
        "genrm": arr(genrm), "classifier": arr(classifier), "majority": arr(majority), "oracle": arr(oracle)}}
        for _ in range(seeds)]}


def test_verdict_is_three_way_against_the_stronger_competitor(experiment):
    rng = np.random.default_rng(0)
    P = 60
    oracle = np.ones(P)
    half = (rng.random(P) < 0.5).astype(float)
    weak = half * (rng.random(P) < 0.5)
    held = experiment.claim_verdict(_runs(oracle, weak, half, oracle))
    assert held.outcome == "held" and held.low > 0 and "minus majority" in held.test
    assert held.effect == pytest.approx(1 - half.mean())
    # GenRM below the classifier (the stronger competitor here): not held
    worse = experiment.claim_verdict(_runs(weak, oracle, half, oracle))
    assert worse.outcome == "not held" and worse.high <= 0 and "minus classifier" in worse.test
    # pass@16 = maj@16 everywhere: no room to rerank, so no verdict whatever the interval says
    none = experiment.claim_verdict(_runs(half, weak, half, half))
    assert none.outcome == "inconclusive" and "room to rerank" in none.reason
    assert none.effect == pytest.approx(0.0)


@pytest.mark.slow
def test_smoke_preset(experiment, tmp_path):
    assert cli.main(["run", str(EXPERIMENT), "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "2"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["genrm_verifier"]
    assert len(runs) == 2
    problems = []
    for k, r in enumerate(runs):
        correct = np.asarray(r["candidate_correct"], float)
        g, c = np.asarray(r["genrm_scores"]), np.asarray(r["classifier_scores"])
        assert correct.shape == g.shape == c.shape == (8, 16) and r["verify_train_examples"] == 8 * 16
        assert np.all((g > 0) & (g < 1)) and np.all(np.isfinite(c))
        pp = {m: np.asarray(v) for m, v in r["per_problem"].items()}
        np.testing.assert_array_equal(pp["genrm"], ttc.best_of_n(g, correct))
        np.testing.assert_array_equal(pp["classifier"], ttc.best_of_n(c, correct))
        np.testing.assert_array_equal(pp["oracle"], correct.max(1))
        for m in ("genrm", "classifier", "majority"):
            assert np.all(pp[m] <= pp["oracle"]) and np.all(pp[m] >= 0), m
        assert r["pass_at_1"] == pytest.approx(correct.mean())
        assert r["best_of_k"]["oracle"]["16"] == pytest.approx(r["pass_at_n"])
        assert r["best_of_k"]["genrm"]["16"] == pytest.approx(r["genrm_best_of_n_accuracy"])
        for name in ("genrm_losses", "classifier_losses"):  # both verifiers learn on the labelled samples
            assert len(r[name]) == 10 and r[name][-1] < r[name][0], (k, name)
        assert r["classifier_losses"][0] == pytest.approx(math.log(2.0), abs=1e-5)  # zero head: sigma = 1/2
        problems.append([e["prompt"] for e in r["test_examples"]])
        assert (tmp_path / "genrm_verifier" / f"seed{k}" / "best_of_k.png").exists()
    assert problems[0] != problems[1]  # the seed draws the test problems
    v = results["verdict"]
    again = experiment.claim_verdict({"genrm_verifier": runs})
    assert again.to_dict() == v
    assert v["outcome"] in ("held", "not held", "inconclusive")
    room = v["preconditions"][0]
    if not room["passed"]:
        assert v["outcome"] == "inconclusive" and "room to rerank" in v["reason"]
    report = (tmp_path / "report.md").read_text()
    assert f"**Verdict: {v['outcome']}.**" in report and (tmp_path / "best_of_k.png").exists()


def test_paper_preset_is_the_fair_setting_and_listed_for_the_gpu(experiment):
    from jaxlab.cli import experiment_variants

    (cfg,) = experiment_variants(experiment, [], "paper").values()
    assert cfg.model == "smollm2-135m-instruct" and cfg.n_test >= 500 and cfg.n_best_of == 16
    assert cfg.n_verify_problems * cfg.n_train_samples >= 16_000
    script = (EXPERIMENT.parents[1] / "scripts" / "gpu_claims.sh").read_text()
    line = next(x for x in script.splitlines() if "experiments/genrm_verifier.py" in x)
    assert "--preset paper" in line and "--seeds 3" in line and "--publish" in line
