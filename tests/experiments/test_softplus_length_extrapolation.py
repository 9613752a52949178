"""softplus_length_extrapolation: the three-way verdict on made-up runs (each precondition and
outcome), the evaluation that scores the same tokens at every context length, and one
end-to-end run of the smoke preset cut down to seconds."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxlab import cli
from jaxlab.data.stdlib_corpus import split_files, source_files, stdlib_root
from jaxlab.data.tokenizer import BOS_ID, EOS_ID
from jaxlab.models import transformer

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "softplus_length_extrapolation.py")
exp = cli.load_experiment(EXPERIMENT)


def _run(at_l, at_16l, at_16l_p2=None):
    """One seed's results with per-document losses (only what claim_verdict reads)."""
    at_l = np.asarray(at_l, float)
    doc_nll = {"p1": {"1": list(at_l), "16": list(np.asarray(at_16l, float))}}
    if at_16l_p2 is not None:
        doc_nll["p2"] = {"1": list(at_l), "16": list(np.asarray(at_16l_p2, float))}
    return {"doc_nll": doc_nll, "loss_x1": float(at_l.mean())}


def _runs(sm_inc, lr_inc, base=1.5, seeds=3, docs=40, noise=0.05):
    rng = np.random.default_rng(0)
    out = {"softmax": [], "softplus": []}
    for _ in range(seeds):
        at_l = base + rng.normal(0, 0.2, docs)
        out["softmax"].append(_run(at_l, at_l + sm_inc + rng.normal(0, noise, docs)))
        out["softplus"].append(_run(at_l, at_l + 9.0, at_l + lr_inc + rng.normal(0, noise, docs)))
    return out


def test_verdict_held_when_lssar_degrades_less_and_effect_is_the_mean_difference():
    runs = _runs(sm_inc=1.0, lr_inc=0.1)
    v = exp.claim_verdict(runs)
    inc_sm = exp.increases_SP(runs["softmax"], 1.0)
    inc_lr = exp.increases_SP(runs["softplus"], 2.0)  # p=2 decides, not the p=1 increase of 9 nats
    assert inc_sm.shape == (3, 40)
    assert v.outcome == "held" and v.effect == pytest.approx(float(np.mean(inc_sm - inc_lr)))
    assert 0 < v.low < v.effect < v.high and [p[1] for p in v.preconditions] == [True, True]


def test_verdict_not_held_when_lssar_degrades_more():
    v = exp.claim_verdict(_runs(sm_inc=0.5, lr_inc=1.0))
    assert v.outcome == "not held" and v.high <= 0


def test_verdict_inconclusive_when_the_interval_contains_zero():
    at_l = np.full(8, 1.5)
    up_down = np.array([0.5, -0.5] * 4)  # softmax and LSSAR each 1 nat worse on average, mirrored
    runs = {"softmax": [_run(at_l, at_l + 1.0 + up_down)] * 2,
            "softplus": [_run(at_l, at_l + 9.0, at_l + 1.0 - up_down)] * 2}
    v = exp.claim_verdict(runs)
    assert v.outcome == "inconclusive" and v.low < 0 < v.high and "contains the threshold" in v.reason


def test_verdict_inconclusive_when_softmax_does_not_degrade_visibly():
    v = exp.claim_verdict(_runs(sm_inc=0.08, lr_inc=-0.5))  # softmax gets worse, but by < 0.10 nats
    assert v.outcome == "inconclusive" and "softmax degrades beyond L" in v.reason
    assert v.low > 0  # the effect itself is clearly on the claim's side: only the precondition stops it


def test_verdict_inconclusive_when_a_model_did_not_learn_the_text():
    v = exp.claim_verdict(_runs(sm_inc=1.0, lr_inc=0.1, base=3.0))
    assert v.outcome == "inconclusive" and "learned the text" in v.reason


def test_doc_losses_score_each_documents_last_targets_with_the_given_context():
    cfg = transformer.Config(vocab_size=264, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2, head_dim=8,
                             mlp_dim=32, attention_kind="softplus")
    params = transformer.init(cfg, jax.random.key(0))
    rng = np.random.default_rng(0)
    docs = [("a", rng.integers(0, 256, 40).astype(np.int32)),   # two windows of 16 (ends 15, 31)
            ("b", rng.integers(0, 256, 20).astype(np.int32))]   # one window (end 15)
    L = 4
    apply = jax.jit(transformer.apply, static_argnums=2)

    def by_hand(tokens, end, context):
        x = tokens[end - context + 1:end + 1][None]
        logp = np.asarray(jax.nn.log_softmax(apply(params, x, cfg), -1))[0]
        targets = tokens[end - context + 2:end + 2]
        return -np.mean([logp[t, targets[t]] for t in range(context - L, context)])

    for context in (8,):  # half the window: the context is cut, the scored targets stay
        got = exp.doc_losses(params, cfg, docs, context=context, max_context=16, n_scored=L,
                             windows_per_doc=2, batch_tokens=2 * context)  # 2 rows a batch: padding used
        want = [np.mean([by_hand(docs[0][1], 15, context), by_hand(docs[0][1], 31, context)]),
                by_hand(docs[1][1], 15, context)]
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_eval_documents_are_whole_validation_files_chosen_independently_of_the_model():
    root = stdlib_root()
    train, val = split_files(source_files(root), 10.0)
    docs = exp.eval_documents(root, val, min_tokens=2049, n_docs=6)
    assert len(docs) == 6 and {n for n, _ in docs} <= set(val) and not {n for n, _ in docs} & set(train)
    for name, tokens in docs:
        assert len(tokens) >= 2049 and tokens[0] == BOS_ID and tokens[-1] == EOS_ID
        assert bytes(tokens[1:-1].astype(np.uint8)) == (root / name).read_bytes()
    assert [n for n, _ in exp.eval_documents(root, val, min_tokens=2049, n_docs=3)] == [n for n, _ in docs[:3]]


@pytest.mark.slow
def test_smoke_run_scores_the_same_documents_at_every_length_and_decides_from_them(tmp_path):
    tiny = ["lm.train.loop.steps=3", "lm.train.loop.eval_every=3", "lm.train.loop.checkpoint_every=3",
            "lm.train.seq_len=8", "lm.train.batch_size=8", "lm.train.eval_batches=1", "lm.optim.warmup_steps=1",
            "lm.model.n_layers=1", "lm.model.scan_unroll=1", "lm.sample.max_new_tokens=2",
            "eval_multipliers=1,16", "eval_powers=1,2", "eval_docs=3"]
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", *tiny]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    sm, sp = results["runs"]["softmax"][0], results["runs"]["softplus"][0]
    assert sm["attention"] == "softmax" and sp["attention"] == "softplus"
    assert sm["eval_docs"] == sp["eval_docs"] and len(sm["eval_docs"]) == 3
    assert sm["scored_tokens_per_length"] == 3 * 1 * 8 and sm["train_seq_len"] == 8
    assert sm["corpus_train_bytes"] >= 10_000_000
    assert sm["powers"] == [1.0] and sp["powers"] == [1.0, 2.0]
    for r in (sm, sp):
        for p in r["powers"]:
            per_len = r["doc_nll"][f"p{p:g}"]
            assert sorted(per_len) == ["1", "16"] and all(len(v) == 3 for v in per_len.values())
            assert np.all(np.isfinite(per_len["16"]))
            suffix = "" if p == 1.0 else f"_p{p:g}"
            assert r[f"loss_x16{suffix}"] == pytest.approx(np.mean(per_len["16"]))
            assert r[f"increase{suffix}"] == pytest.approx(r[f"loss_x16{suffix}"] - r["loss_x1"])
    assert sm["claim_increase"] == sm["increase"] and sp["claim_increase"] == sp["increase_p2"]
    v = results["verdict"]
    inc_sm = np.array(sm["doc_nll"]["p1"]["16"]) - np.array(sm["doc_nll"]["p1"]["1"])
    inc_lr = np.array(sp["doc_nll"]["p2"]["16"]) - np.array(sp["doc_nll"]["p1"]["1"])
    assert v["effect"] == pytest.approx(float(np.mean(inc_sm - inc_lr)))
    assert v["outcome"] in ("held", "not held", "inconclusive")
    # three steps teach nothing: the run cannot judge the claim, and says why
    learned = {p["name"]: p["passed"] for p in v["preconditions"]}["both models learned the text"]
    assert v["outcome"] == "inconclusive" and learned is False
    assert (tmp_path / "length_extrapolation.png").exists()
    assert f"**Verdict: {v['outcome']}.**" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("preset", ["smoke", "paper"])
def test_presets_train_two_models_identical_but_for_the_attention(preset):
    import dataclasses

    v = cli.experiment_variants(exp, [], preset)
    sm, sp = v["softmax"], v["softplus"]
    assert sm.lm.model.attention_kind == "softmax" and sp.lm.model.attention_kind == "softplus"
    assert dataclasses.replace(sp.lm.model, attention_kind="softmax") == sm.lm.model
    assert (sp.lm.train, sp.lm.optim, sp.lm.data) == (sm.lm.train, sm.lm.optim, sm.lm.data)
    assert sp.eval_multipliers == sm.eval_multipliers and exp.LONGEST in sm.eval_multipliers
    assert (sp.eval_docs, sp.windows_per_doc) == (sm.eval_docs, sm.windows_per_doc)
    assert exp.CLAIM_POWER in sp.eval_powers and 1.0 in sp.eval_powers


def test_paper_preset_is_the_fair_setting_and_listed_for_the_gpu():
    cfg = cli.experiment_variants(exp, [], "paper")["softmax"]
    L = cfg.lm.train.seq_len
    assert L >= 128 and cfg.eval_docs >= 100 and cfg.lm.train.loop.steps >= 4000
    root, _, val = exp._corpus(cfg)
    assert len(exp.eval_documents(root, val, min_tokens=exp.LONGEST * L + 1, n_docs=cfg.eval_docs)) == cfg.eval_docs
    script = (Path(EXPERIMENT).parents[1] / "scripts" / "gpu_claims.sh").read_text()
    assert ('jaxlab run experiments/softplus_length_extrapolation.py --workdir "$OUT/softplus_length_extrapolation" '
            '--preset paper --seeds 3 --publish') in script
