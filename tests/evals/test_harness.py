"""The task harness on a tiny random model: prompts, batched completions, result shapes,
intervals, per-difficulty counts and the files it writes."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxlab import tasks
from jaxlab.data import ByteTokenizer
from jaxlab.data import chat as chat_lib
from jaxlab.evals import complete, encode_task_prompt, evaluate_task, evaluation_problems, write_results
from jaxlab.evals.generation import _batch_arrays, prompts_as_chat
from jaxlab.evals.report import plot_by_difficulty, results_table
from jaxlab.samplers import SampleConfig

BYTES = ByteTokenizer()


@pytest.fixture(scope="module")
def byte_results(tiny_model):
    cfg, params = tiny_model
    return evaluate_task(cfg, params, BYTES, "countdown", n=7, samples=3, key=jax.random.PRNGKey(1),
                         max_new_tokens=6, batch_size=8, progress=False)


def test_evaluation_problems_splits():
    task = tasks.get("hanoi")
    problems = evaluation_problems(task, 9, seed=2)
    assert [s for s, _ in problems] == ["test"] * 5 + ["ood"] * 4
    low, high = task.ood_difficulty
    assert all(low <= ex.meta["difficulty"] <= high for s, ex in problems if s == "ood")
    assert len({ex.prompt for _, ex in problems}) == 9
    assert [ex.prompt for _, ex in evaluation_problems(task, 9, seed=2)] == [ex.prompt for _, ex in problems]
    with pytest.raises(ValueError, match="split"):
        evaluation_problems(task, 3, split="dev")


def test_result_shapes_and_intervals(byte_results):
    r = byte_results
    assert r["n"] == 7 and len(r["problems"]) == 7 and r["chat"] is False
    assert all(len(p["samples"]) == 3 and len(p["sample_correct"]) == 3 for p in r["problems"])
    overall = r["overall"]
    g = overall["greedy"]
    assert g["correct"] == sum(p["greedy_correct"] for p in r["problems"])
    assert g["low"] <= g["accuracy"] <= g["high"]
    for key in ("pass@1", "pass@2", "pass@3", "maj@3"):
        assert overall[key]["low"] <= overall[key]["value"] <= overall[key]["high"]
    levels = r["by_difficulty"]
    assert sum(s["n"] for s in levels.values()) == 7
    assert {k: s["n"] for k, s in r["by_split"].items()} == {"test": 4, "ood": 3}
    assert sum(s["greedy"]["correct"] for s in levels.values()) == g["correct"]
    assert sorted(int(d) for d in levels) == sorted({p["difficulty"] for p in r["problems"]})
    assert overall["truncated_rate"] == np.mean([p["greedy_truncated"] for p in r["problems"]])


def test_write_results_round_trip(byte_results, tmp_path):
    paths = write_results({"model": "tiny", "task_results": byte_results, "text": None}, tmp_path / "out")
    back = json.loads(paths["results"].read_text())
    assert back["task_results"]["overall"] == json.loads(json.dumps(byte_results["overall"]))
    assert "problems" not in back["task_results"]
    lines = paths["completions"].read_text().splitlines()
    assert [json.loads(line)["prompt"] for line in lines] == [p["prompt"] for p in byte_results["problems"]]
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = paths["report"].read_text()
    assert "| all | 7 |" in report and "| ood split | 3 |" in report
    assert "maj@3" in report and "eval.png" in report
    table = results_table([tmp_path / "out"]).splitlines()
    g = byte_results["overall"]["greedy"]
    assert len(table) == 3
    assert table[2].startswith("| [out](out/report.md) | countdown | plain | 7 | all | 3 | ")
    assert f"{g['accuracy']:.3f} [{g['low']:.3f}, {g['high']:.3f}]" in table[2]
    with pytest.raises(FileNotFoundError, match="not an evaluation folder"):
        results_table([tmp_path])


def test_plot_takes_intervals_that_miss_the_value(tmp_path):
    # a percentile bootstrap interval may lie beside the mean; Wilson's at 0 has low == 0
    level = {"n": 3, "greedy": {"accuracy": 0.0, "low": 0.0, "high": 0.5},
             "pass@1": {"value": 0.2, "low": 0.25, "high": 0.4}}
    task = {"task": "countdown", "knob": "numbers", "n": 3, "confidence": 0.95, "overall": level,
            "by_difficulty": {"3": level}}
    plot_by_difficulty(task, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


def test_prompt_encoding():
    from tokenizer_fixtures import bpe_tokenizer

    plain, chatml = bpe_tokenizer("plain"), bpe_tokenizer("chatml")
    assert not prompts_as_chat(BYTES) and not prompts_as_chat(plain) and prompts_as_chat(chatml)
    ids = encode_task_prompt(BYTES, "12+3=", chat=False)
    assert ids.tolist() == [BYTES.bos_id] + list(b"12+3=")
    want = [plain.bos_id] + plain.encode("12+3=").tolist()
    assert encode_task_prompt(plain, "12+3=", chat=False).tolist() == want
    ids = encode_task_prompt(chatml, "12+3=", chat=True)
    text = chatml.tokenizer.decode(ids.tolist(), skip_special_tokens=False)
    assert text.endswith("<|im_start|>user\n12+3=<|im_end|>\n<|im_start|>assistant\n")
    assert ids.tolist() == chat_lib.encode_prompt([{"role": "user", "content": "12+3="}], chatml).tolist()


def test_batching_does_not_change_completions(tiny_model):
    cfg, params = tiny_model
    # lengths 5, 15, 7: one prompt bucket of the sampler (16), so two compilations (B = 2, 1)
    prompts = [BYTES.encode(p, bos=True) for p in ("1+1=", "cd 3 5 7 t 22:", "12+34=")]
    tokens_BT, mask_BT = _batch_arrays(prompts, 4, BYTES.pad_id)
    assert tokens_BT.shape == (4, 15) and mask_BT.sum(axis=1).tolist() == [5, 15, 7, 5]
    assert (tokens_BT[3] == tokens_BT[0]).all()  # the filler row repeats the first
    sample_cfg = SampleConfig(max_new_tokens=5, temperature=0.0, stop_tokens=BYTES.eos_ids,
                              pad_id=BYTES.pad_id)
    key = jax.random.PRNGKey(0)
    # batches [p0, p1] and [p2, filler]; alone: one row each, other padding
    together, trunc = complete(cfg, params, BYTES, prompts, sample_cfg=sample_cfg, key=key, batch_size=2,
                               progress=False)
    alone = [complete(cfg, params, BYTES, [p], sample_cfg=sample_cfg, key=key, batch_size=4,
                      progress=False)[0][0] for p in prompts]
    assert together == alone
    assert trunc.shape == (3,) and trunc.dtype == np.bool_


def test_bad_arguments(tiny_model):
    cfg, params = tiny_model
    with pytest.raises(ValueError, match="samples"):
        evaluate_task(cfg, params, BYTES, "arithmetic", n=2, samples=-1, key=jax.random.PRNGKey(0))
    with pytest.raises(tasks.TaskError, match="unknown task"):
        evaluate_task(cfg, params, BYTES, "sudoku", n=2, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="n must be"):
        evaluate_task(cfg, params, BYTES, "arithmetic", n=0, key=jax.random.PRNGKey(0))
    small = dataclasses.replace(cfg, vocab_size=200)
    with pytest.raises(ValueError, match="259 ids but the model's vocabulary only 200"):
        evaluate_task(small, params, BYTES, "arithmetic", n=2, key=jax.random.PRNGKey(0))


def test_greedy_correct_verifies_each_greedy_completion(tiny_model):
    from jaxlab.evals.generation import greedy_correct

    cfg, params = tiny_model
    task = tasks.get("arithmetic")
    examples = task.splits(0, 0, 3, 0)["test"]
    correct = greedy_correct(cfg, params, BYTES, task, examples, max_new_tokens=4, batch_size=2)
    prompts = [encode_task_prompt(BYTES, e.prompt, chat=False) for e in examples]
    texts, _ = complete(cfg, params, BYTES, prompts, key=jax.random.key(0), batch_size=2, progress=False,
                        sample_cfg=SampleConfig(max_new_tokens=4, temperature=0.0, stop_tokens=BYTES.eos_ids,
                                                pad_id=BYTES.pad_id))
    assert correct.dtype == np.int8 and correct.shape == (3,)
    assert correct.tolist() == [int(task.verify(e, t)) for e, t in zip(examples, texts)]
    # an answer the verifier accepts scores 1: the check is not constant
    assert task.verify(examples[0], examples[0].answer) == 1.0
