"""Table-task evaluation helpers: the same problem in every serialisation, the few-shot chat,
clear refusals of unknown names, and greedy answers returned in the order asked."""

import json

import pytest

from jaxlab.evals import tables as T
from jaxlab.tasks.documents.tables import FORMATS


@pytest.mark.parametrize("task", ["table_lookup", "table_partition", "table_row"])
def test_every_serialisation_holds_the_same_problem(task):
    problems = T.paired_problems(task, FORMATS, seed=3, n=4, difficulty=(1, 3))
    assert [p["html"].meta["difficulty"] for p in problems] == [1, 2, 3, 1]
    for p in problems:
        answers = {e.answer for e in p.values()}
        assert len(answers) == 1
        assert {e.meta["format"] for e in p.values()} == set(FORMATS)
        question = {e.prompt.rsplit("\n\n", 1)[1] for e in p.values()}
        assert len(question) == 1  # the question text is identical
        rows = json.loads(p["json"].prompt.split("\n")[1]) if task != "table_partition" else None
        if rows is not None:  # every cell of the JSON table appears in the markdown and csv tables
            for row in rows:
                for v in row.values():
                    assert v in p["markdown"].prompt and v in p["csv"].prompt
    # problems differ with the index, the seed and the stream
    assert len({p["html"].prompt for p in problems}) == 4
    other = T.paired_problems(task, ("html",), seed=4, n=4, difficulty=(1, 3))
    shots = T.paired_problems(task, ("html",), seed=3, n=4, difficulty=(1, 3), stream="shots")
    assert [p["html"].prompt for p in other] != [p["html"].prompt for p in problems]
    assert [p["html"].prompt for p in shots] != [p["html"].prompt for p in problems]


def test_unknown_names_are_refused_with_what_exists():
    with pytest.raises(ValueError, match="unknown table task.*table_lookup"):
        T.check_names(["table_lokup"], ["html"])
    with pytest.raises(ValueError, match="unknown serialisation.*markdown, html, csv, json"):
        T.check_names(["table_lookup"], ["xml"])
    with pytest.raises(ValueError, match="cannot be serialised as \\['csv'\\]"):
        T.paired_problems("table_merged", ("html", "csv"), seed=0, n=1, difficulty=(1, 1))
    with pytest.raises(ValueError, match="stream"):
        T.paired_problems("table_lookup", ("html",), seed=0, n=1, difficulty=(1, 1), stream="train")


def test_table_messages_differ_between_serialisations_only_in_the_tables():
    shots = T.paired_problems("table_size", FORMATS, seed=0, n=2, difficulty=(1, 1), stream="shots")
    problem = T.paired_problems("table_size", FORMATS, seed=0, n=1, difficulty=(2, 2))[0]
    md, html = T.table_messages(shots, problem, "markdown"), T.table_messages(shots, problem, "html")
    assert [m["role"] for m in md] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert md[0] == html[0] == {"role": "system", "content": T.SYSTEM}
    assert [m["content"] for m in md if m["role"] == "assistant"] == [s["html"].answer for s in shots]
    assert [m for m in md if m["role"] == "assistant"] == [m for m in html if m["role"] == "assistant"]
    assert md[-1]["content"] == problem["markdown"].prompt and html[-1]["content"] == problem["html"].prompt
    assert "<table>" in html[-1]["content"] and "<table>" not in md[-1]["content"]


def test_score_uses_the_tasks_verifier_and_format_check():
    p = T.paired_problems("table_size", ("csv",), seed=1, n=1, difficulty=(1, 1))[0]["csv"]
    correct, formed = T.score("table_size", [p] * 3, [p.answer, "9,9", "It has three rows."])
    assert correct.tolist() == [1, 0, 0] and formed.tolist() == [1, 1, 0]


@pytest.mark.slow
def test_greedy_texts_come_back_in_the_order_asked():
    cfg, params, tok = T.load(T.TINY_RANDOM, 0)
    convs = [[{"role": "user", "content": "x" * n}] for n in (40, 3, 17)]
    texts = T.greedy_texts(cfg, params, tok, convs, max_new_tokens=4, batch_size=4)
    again = T.greedy_texts(cfg, params, tok, convs[::-1], max_new_tokens=4, batch_size=4)
    assert texts == again[::-1] and len(set(texts)) > 1
