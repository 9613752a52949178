"""The encoder vs few-shot decoder experiment: the encoder reads the very document the decoder
is prompted with, the few-shot turns carry gold records, and a smoke run's verdict follows
from its per-document rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.cli import load_experiment
from jaxlab.tasks.documents import DocumentExtraction, parse_record

EXPERIMENT = str(Path(__file__).resolve().parents[2] / "experiments" / "encoder_vs_fewshot.py")


def test_documents_shots_and_messages_match_the_prompts():
    exp = load_experiment(EXPERIMENT)
    task = DocumentExtraction(layouts=("kv", "json"))
    train, _ = exp.draw_examples(task, np.random.default_rng(0), 12, (3, 6), 512)
    test, _ = exp.draw_examples(task, np.random.default_rng(1), 2, (3, 6), 512)
    for e in train + test:
        doc = exp.document_of(e)
        assert len(doc["text"].encode()) <= 512 and doc["text"] in e.prompt
        assert parse_record(e.answer) == doc["record"]
        for field, (s, t) in doc["spans"].items():  # spans index the extracted text
            assert e.meta["spans"][field] == [s, t] and doc["text"][s:t] in e.prompt
    shots = exp.pick_shots(np.random.default_rng(2), train, test[0], 3)
    assert len({id(s) for s in shots}) == 3
    same_kind = sum(e.meta["kind"] == test[0].meta["kind"] for e in train)
    if same_kind >= 3:
        assert all(s.meta["kind"] == test[0].meta["kind"] for s in shots)
    messages = exp.fewshot_messages(test[0], shots)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    assert [m["content"] for m in messages[1:6:2]] == [s.answer for s in shots]
    assert messages[-1]["content"] == test[0].prompt


@pytest.mark.slow
def test_smoke_run_gives_a_verdict_from_its_rows(tmp_path):
    assert cli.main(["run", EXPERIMENT, "--workdir", str(tmp_path), "--no-progress", "--preset", "smoke",
                     "--seeds", "1", "--set", "steps=2", "max_new_tokens=4"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["runs"]["encoder_vs_fewshot"][0]
    f1 = run["per_doc_f1"]
    assert len(f1["encoder"]) == len(f1["decoder"]) == len(run["well_formed"]) == 4
    assert run["f1_difference"] == pytest.approx(np.mean(f1["encoder"]) - np.mean(f1["decoder"]))
    assert all(f == 0.0 for f, w in zip(f1["decoder"], run["well_formed"]) if not w)  # malformed scores 0
    v = results["verdict"]
    assert v["effect"] == pytest.approx(run["f1_difference"]) and v["low"] <= v["effect"] <= v["high"]
    fmt = v["preconditions"][0]
    assert fmt["passed"] == (np.mean(run["well_formed"]) >= 0.5)
    if not fmt["passed"]:
        assert v["outcome"] == "inconclusive"
    assert (tmp_path / "encoder_vs_fewshot" / "seed0" / "encoder_vs_fewshot.png").exists()
