"""InftyThink: the programmatic teacher's segments rebuild the one-pass trace, summaries parse
back, and the iteration loop (with an oracle in place of the model) carries the state through
the summaries within the context and the iteration cap."""

import numpy as np
import pytest

from jaxlab.data.chat import encode_prompt
from jaxlab.data.tokenizer import BYTES
from jaxlab.ttc import infty

TASK = infty.IterationTask()


def test_segments_rebuild_the_one_pass_trace():
    x0, n = 17, 10
    xs = TASK.run(x0, n)
    assert xs[0] == (5 * 17 + 3) % 64 and TASK.answer(x0, n) == xs[-1]
    one = TASK.one_pass_record(x0, n)
    assert one["response"] == "".join(f" {x}" for x in xs) + f" ={xs[-1]}"
    segs = TASK.segment_records(x0, n, 4)
    assert len(segs) == 3  # 4 + 4 + 2 updates
    assert segs[0]["prompt"] == "x=17 n=10:" and segs[0]["response"].endswith(f"[x={xs[3]} n=6]")
    assert segs[1]["prompt"] == f"x=17 n=10: [x={xs[3]} n=6]" and segs[2]["response"].endswith(f"={xs[-1]}")
    values = [int(v) for s in segs for v in s["response"].split() if v.isdigit()]
    assert values == xs
    assert TASK.segment_records(5, 0, 4) == [{"prompt": "x=5 n=0:", "response": " =5"}]


def test_parse_end_reads_only_a_well_formed_ending():
    assert infty.parse_end(" 3 8 [x=8 n=12]") == ("summary", "[x=8 n=12]")
    assert infty.parse_end(" 3 8 =8") == ("answer", "8")
    assert infty.parse_end(" 3 8 [x=8 n=") == ("none", None)
    assert infty.parse_end("=" + "9" * 20) == ("none", None)  # bounded: at most 4 digits
    assert infty.parse_end("x" * 100_000 + " =7") == ("answer", "7")


def oracle(contexts, budgets):
    """What a perfect segmented model writes: the teacher's response for each context, cut to
    its budget."""
    out = []
    for context, budget in zip(contexts, budgets):
        head, _, summary = context.partition(": ")
        x0, n = (int(v.split("=")[1]) for v in head.rstrip(":").split())
        segs = TASK.segment_records(x0, n, 4)
        response = next(s["response"] for s in segs if s["prompt"] == context)
        ids = encode_prompt(response, BYTES)[1:][:max(budget, 0)]
        out.append((BYTES.decode(np.asarray(ids)), len(ids)))
    return out


def test_infty_think_carries_the_state_through_summaries(monkeypatch):
    seen = []

    def fake(params, cfg, tokenizer, prompts, budgets, *, batch_size):
        seen.append([(len(encode_prompt(p, tokenizer)), b) for p, b in zip(prompts, budgets)])
        return oracle(prompts, budgets)

    monkeypatch.setattr(infty, "_generate_texts", fake)
    prompts = [TASK.prompt(17, 10), TASK.prompt(3, 40), TASK.prompt(9, 2)]
    out = infty.infty_think(None, None, BYTES, prompts, segment_tokens=32, max_context=64, max_iterations=16)
    assert [o["answer"] for o in out] == [str(TASK.answer(17, 10)), str(TASK.answer(3, 40)), str(TASK.answer(9, 2))]
    assert [o["iterations"] for o in out] == [3, 10, 1]
    assert all(n + b <= 64 and b <= 32 for step in seen for n, b in step)  # every iteration within the context
    capped = infty.infty_think(None, None, BYTES, prompts[1:2], segment_tokens=32, max_context=64, max_iterations=4)
    assert capped[0]["answer"] is None and capped[0]["iterations"] == 4 and len(capped[0]["summaries"]) == 4
    with pytest.raises(ValueError):
        infty.infty_think(None, None, BYTES, prompts, segment_tokens=0, max_context=64, max_iterations=4)


def test_one_pass_gets_the_room_left_in_the_context(monkeypatch):
    monkeypatch.setattr(infty, "_generate_texts",
                        lambda params, cfg, tok, prompts, budgets, *, batch_size: [(" 1 2 =2", 4)] * len(prompts)
                        if all(b == 64 - len(encode_prompt(p, tok)) for p, b in zip(prompts, budgets)) else None)
    out = infty.one_pass(None, None, BYTES, [TASK.prompt(1, 2), TASK.prompt(4, 30)], max_context=64)
    assert [o["answer"] for o in out] == ["2", "2"]
