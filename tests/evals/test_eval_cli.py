"""``jaxlab eval``: argument errors, and the files it writes for a tiny model saved as a jaxlab
checkpoint folder (loaded by jaxlab.interop.models.load_model, with the byte tokenizer)."""

import json

import pytest

from jaxlab import cli


@pytest.fixture
def tiny_folder(tiny_model, tmp_path):
    from jaxlab.interop.convert import save_jaxlab

    cfg, params = tiny_model
    return save_jaxlab(tmp_path / "tiny-model", cfg, params)


def test_eval_writes_results(tiny_folder, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.\n")
    out = tmp_path / "out"
    # the shapes of test_harness's evaluation, so a process running both compiles once
    rc = cli.main(["eval", str(tiny_folder), "--task", "countdown", "--n", "7", "--samples", "3",
                   "--max-new-tokens", "6", "--batch-size", "8", "--text", str(text), "--window", "32",
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["command"].startswith(f"jaxlab eval {tiny_folder} --task countdown")
    task = results["task_results"]
    assert task["task"] == "countdown" and task["n"] == 7 and task["samples"] == 3
    assert task["max_new_tokens"] == 6 and set(task["overall"]) >= {"greedy", "pass@1", "pass@3", "maj@3"}
    assert results["text"]["n_bytes"] == len(text.read_text().encode("utf-8"))
    assert results["text"]["bits_per_byte"] > 0
    assert len((out / "completions.jsonl").read_text().splitlines()) == 7
    assert (out / "eval.png").stat().st_size > 0
    assert "bits_per_byte" in (out / "report.md").read_text()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["m"], "--task NAME and/or --text FILE"),
    (["m", "--task", "sudoku"], "unknown task 'sudoku'"),
    (["m", "--task", "countdown", "--n", "0"], "--n must be >= 1"),
    (["m", "--task", "hanoi", "--n", "2000", "--split", "test"], "levels hold only"),
    (["m", "--text", "/nonexistent/file.txt"], "is not a file"),
])
def test_eval_argument_errors(args, message, capsys):
    assert cli.main(["eval", *args]) == 2
    assert message in capsys.readouterr().err


def test_eval_unknown_model(capsys):
    assert cli.main(["eval", "no-such-model", "--task", "countdown"]) == 1
    assert "cannot load model 'no-such-model'" in capsys.readouterr().err
