"""The test-time compute harness: every method's accuracy and token count on hand-made traces
(computed by hand below), and ``jaxlab ttc`` end to end on a tiny random model, its results
recomputed from the samples it wrote; bad input exits nonzero with a message."""

import json

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.ttc import harness
from jaxlab.ttc.deepconf import trace_confidence


def _trace(key, correct, conf, window=2):
    return {"key": key, "correct": correct, "length": len(conf), "confidence": conf,
            "trace_confidence": trace_confidence(np.array(conf, float), window=window)}


# Problem A: greedy right (3 tokens). Samples (window 2): group confidences and lowest
#   t0 "1" right [3, 3]          groups [3, 3]          lowest 3
#   t1 "2" wrong [1, 1, 1]       groups [1, 1, 1]       lowest 1
#   t2 "2" wrong [3, 0, 0, 3]    groups [3, 1.5, 0, 1.5] lowest 0
#   t3 "1" right [2, 2, 2, 2, 2] groups [2, ...]        lowest 2
# Problem B: greedy wrong (4 tokens); samples of one token, confidence 1: None, "7" right, "8", "7" right.
PROBLEMS = [
    {"greedy": {"correct": True, "length": 3},
     "samples": [_trace("1", True, [3, 3]), _trace("2", False, [1, 1, 1]), _trace("2", False, [3, 0, 0, 3]),
                 _trace("1", True, [2, 2, 2, 2, 2])]},
    {"greedy": {"correct": False, "length": 4},
     "samples": [_trace(None, False, [1]), _trace("7", True, [1]), _trace("8", False, [1]), _trace("7", True, [1])]},
]


def test_methods_on_hand_made_traces():
    methods = tuple(m for m in harness.METHODS if m not in ("inter", "bon-rm"))
    out = harness.score_methods(PROBLEMS, methods, budget=4, window=2, keep=0.5, warmup=2, stop_keep=0.5,
                                wall_s={"greedy": 2.0, "samples": 18.0}, n_boot=200)["methods"]
    acc = {m: [p["accuracy"] for p in out[m]["points"]] for m in out}
    tokens = {m: [p["tokens"] for p in out[m]["points"]] for m in out}
    assert [p["k"] for p in out["vote"]["points"]] == [1, 2, 4]
    assert acc["greedy"] == [0.5] and tokens["greedy"] == [3.5]
    # k=1: t0 ("1", right) / no vote; k=2: a tie "1"/"2" scores 1/2 / "7"; k=4: tie 2-2 / "7" beats "8"
    assert acc["vote"] == [0.5, 0.75, 0.75]
    assert tokens["vote"] == [1.5, 3.5, 9.0] == tokens["bon"] == tokens["wvote"] == tokens["deepconf"]
    assert acc["bon"] == [0.5, 1.0, 1.0]
    # weights = lowest group confidence: "1" 3 + 2 beats "2" 1 + 0
    assert acc["wvote"] == [0.5, 1.0, 1.0]
    # keep half: k=2 keeps t0 / the first of B's ties (no vote); k=4 keeps t0, t3 / None, "7"
    assert acc["deepconf"] == [0.5, 0.5, 1.0]
    # online, warm-up 2: threshold = median(3, 1) = 2; t1, t2 stop at step 1 (t2 after 2 of its
    # 4 tokens: A costs 2 + 3 + 2 + 5 = 12); voters t0, t3 -> "1". B: one-token traces never stop.
    assert [p["k"] for p in out["deepconf-online"]["points"]] == [4]
    assert acc["deepconf-online"] == [1.0] and tokens["deepconf-online"] == [8.0]
    assert out["deepconf-online"]["tokens"] == [12, 4]
    assert out["vote"]["points"][-1]["wall_s"] == pytest.approx(18.0)
    assert out["deepconf-online"]["points"][0]["wall_s"] == pytest.approx(18.0 * 16 / 18)
    for m in out.values():
        for p in m["points"]:
            assert p["low"] <= p["accuracy"] <= p["high"]


def test_best_of_k_by_a_scorer_takes_the_top_scored_samples():
    scores = [[0.9, 0.2, 0.9, 0.1], [0.5, 0.5, 0.7, 0.1]]
    problems = [{**p, "samples": [{**t, "score": r} for t, r in zip(p["samples"], rs)]}
                for p, rs in zip(PROBLEMS, scores)]
    out = harness.score_methods(problems, ("bon-rm", "bon"), budget=4, window=2, keep=0.5, warmup=2, stop_keep=0.5,
                                n_boot=200)["methods"]
    # A: k=1 t0 right; k=2 t0 (0.9) over t1; k=4 t0 and t2 tie at 0.9, one right: 1/2.
    # B: k=1 t0 wrong; k=2 t0 and t1 tie at 0.5: 1/2; k=4 t2 (0.7, "8") wrong.
    assert [p["accuracy"] for p in out["bon-rm"]["points"]] == [0.5, 0.75, 0.25]
    assert [p["tokens"] for p in out["bon-rm"]["points"]] == [p["tokens"] for p in out["bon"]["points"]]


def test_genrm_scorer_reads_p_yes_of_the_verification_rows():
    import jax

    from jaxlab.data.chat import verdict_ids
    from jaxlab.data.tokenizer import BYTES
    from jaxlab.models import transformer
    from jaxlab.ttc.scorers import genrm_scorer, genrm_scores, scoring_rows

    cfg = transformer.Config(vocab_size=264, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, mlp_dim=32)
    params = transformer.init(cfg, jax.random.key(0))
    problems, solutions = ["2+2=", "3+1=", "1+1="], ["4", "5", "2"]
    score = genrm_scorer(params, cfg, BYTES, seq_len=48, chunk=2)  # two chunks, the last one padded
    got = score(problems, solutions)
    want = np.asarray(genrm_scores(params, scoring_rows(problems, solutions, 48, BYTES), cfg, *verdict_ids(BYTES)))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.shape == (3,) and np.all((got > 0) & (got < 1))
    with pytest.raises(ValueError, match="solutions"):
        score(problems, solutions[:2])
    with pytest.raises(ValueError, match="scorer"):
        harness.run_methods(cfg, params, BYTES, [], None, methods=("bon-rm",), key=jax.random.key(0))


def test_reward_model_scores_sigma_of_its_head_and_learns_to_separate(tmp_path):
    """p(correct) = sigma(w . h + b) at the verdict position (checked by hand), and 30 steps of
    fit on its BCE loss put every right solution above every wrong one on the training pairs."""
    import functools

    import jax

    from jaxlab.analysis.displacement import unembedding_inputs
    from jaxlab.data.tokenizer import BYTES
    from jaxlab.models import transformer
    from jaxlab.train.fit import LoopConfig, fit
    from jaxlab.train.optim import OptimConfig
    from jaxlab.train.sharding import MeshConfig, make_mesh
    from jaxlab.ttc.scorers import (reward_init, reward_loss_sums, reward_param_axes, reward_scorer,
                                    verification_rows)

    cfg = transformer.Config(vocab_size=264, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, mlp_dim=32)
    params = reward_init(transformer.init(cfg, jax.random.key(0)), cfg.d_model)
    params["head"] = {"kernel": jax.random.normal(jax.random.key(1), (16,)), "bias": np.float32(0.3)}
    problems = ["2+2=", "3+1=", "1+1=", "2+3="] * 2
    solutions = ["4", "4", "2", "5", "5", "7", "3", "6"]
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32)
    rows = verification_rows(problems, solutions, 48, BYTES)
    hidden = np.asarray(unembedding_inputs(params["model"], cfg, rows["inputs"], positions_BT=rows["positions"],
                                           segment_ids_BT=rows["segment_ids"]))
    at = rows["mask"].argmax(axis=1)  # the first target: where the verdict is read
    z = hidden[np.arange(8), at] @ np.asarray(params["head"]["kernel"]) + 0.3
    got = reward_scorer(params, cfg, BYTES, seq_len=48, chunk=3)(problems, solutions)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-z)), rtol=1e-5)

    class OneBatch:
        uses_params = False

        def next(self, params, step):
            return {**rows, "label": labels}, {}

        def get_state(self):
            return {}

        def set_state(self, state):
            pass

    trained = fit(tmp_path, name="rm", loop=LoopConfig(steps=30, log_every=30, eval_every=100, checkpoint_every=100),
                  optim=OptimConfig(lr=1e-2, warmup_steps=0, schedule="constant"),
                  mesh=make_mesh(MeshConfig(data=1), jax.devices()[:1]),
                  init_params=reward_init(transformer.init(cfg, jax.random.key(0)), cfg.d_model),
                  param_axes=reward_param_axes, loss_sums_fn=functools.partial(reward_loss_sums, model_cfg=cfg),
                  source=OneBatch(), progress=False)
    after = reward_scorer(jax.device_get(trained.params), cfg, BYTES, seq_len=48)(problems, solutions)
    assert after[labels == 1].min() > after[labels == 0].max()


def test_intermediate_answers_vote_with_the_last_answer():
    """inter: the first sample's answer "5" (wrong) and three continuations from its cuts, "3"
    (right) twice and one malformed: "3" wins; tokens 4 + 2 + 3 + 1."""
    record = {"greedy": {"key": "5", "correct": False, "length": 4},
              "samples": [{"key": "5", "correct": False, "length": 4}],
              "inter": [{"key": "3", "correct": True, "length": 2}, {"key": "3", "correct": True, "length": 3},
                        {"key": None, "correct": False, "length": 1}]}
    out = harness.score_methods([record], ["greedy", "inter"], budget=1, window=2, keep=0.5, warmup=1, stop_keep=0.5,
                                n_boot=50)["methods"]
    assert out["inter"]["points"] == [{"k": 1, "accuracy": 1.0, "low": 1.0, "high": 1.0, "tokens": 10.0,
                                       "wall_s": 0.0}]
    assert out["greedy"]["points"][0]["accuracy"] == 0.0
    assert harness.cut_points(8, 4) == [2, 4, 6] and harness.cut_points(2, 4) == [1] and harness.cut_points(1, 4) == []


def test_online_deepconf_stops_and_bad_settings():
    traces = PROBLEMS[0]["samples"]
    online = harness.online_deepconf(traces, warmup=2, window=2, stop_keep=0.5)
    assert online["threshold"] == 2.0 and online["stops"] == [None, 1, 1, None] and online["voters"] == [0, 3]
    with pytest.raises(ValueError, match="warmup"):
        harness.online_deepconf(traces, warmup=4, window=2, stop_keep=0.5)
    with pytest.raises(ValueError, match="unknown method"):
        harness.check_methods(["vote", "magic"])


@pytest.mark.slow
def test_cli_on_a_tiny_model_matches_its_samples(tmp_path):
    out = tmp_path / "ttc"
    assert cli.main(["ttc", "tiny-random", "--task", "instructed_arithmetic", "--difficulty", "1,1", "--n", "2",
                     "--budget", "4", "--max-new-tokens", "6", "--window", "2", "--batch-size", "8",
                     "--methods", ",".join(harness.METHODS), "--verifier", "tiny-random", "--verifier-seq-len", "160",
                     "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    problems = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(problems) == 2 and all(len(p["samples"]) == 4 for p in problems)
    for p in problems:
        assert all(0 < t["score"] < 1 for t in p["samples"])  # the verifier's p("Yes")
        for t in [p["greedy"], *p["samples"]]:
            assert 1 <= t["length"] <= 6 and len(t["confidence"]) == t["length"]
            assert t["trace_confidence"] == pytest.approx(trace_confidence(np.array(t["confidence"]), window=2))
    vote = results["methods"]["vote"]
    assert vote["points"][-1]["tokens"] == pytest.approx(np.mean([sum(t["length"] for t in p["samples"])
                                                                  for p in problems]))
    s = results["settings"]
    again = harness.score_methods(problems, harness.METHODS, budget=4, window=s["window"], keep=s["keep"],
                                  warmup=s["warmup"], stop_keep=s["stop_keep"], wall_s=results["wall_s"])
    for m in harness.METHODS:
        for a, b in zip(again["methods"][m]["points"], results["methods"][m]["points"], strict=True):
            assert a == pytest.approx(b)
    assert results["methods"]["deepconf-online"]["points"][0]["tokens"] <= vote["points"][-1]["tokens"]
    for p in problems:  # inter: one continuation per cut of the first sample
        first = p["samples"][0]
        assert [t["cut"] for t in p["inter"]] == harness.cut_points(len(first["ids"]) - first["stopped"], 4)
    assert (out / "accuracy_vs_tokens.png").stat().st_size > 0 and "| vote | 4 |" in (out / "table.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--methods", "greedy,magic"], "unknown method"),
    (["--methods", "bon-rm"], "--verifier"),
    (["--task", "no_such_task"], "unknown task"),
    (["--budget", "0"], "--budget"),
    (["--difficulty", "one"], "--difficulty"),
    (["--methods", "deepconf-online", "--budget", "4", "--warmup", "4"], "--warmup"),
])
def test_cli_bad_input_exits_nonzero_with_a_message(args, message, capsys):
    base = ["ttc", "tiny-random", "--task", "instructed_arithmetic"]
    assert cli.main(base + args) == 2
    assert message in capsys.readouterr().err
