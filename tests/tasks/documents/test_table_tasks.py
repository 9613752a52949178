"""Table-structure tasks: serialisations parse back to the table, answers verify, hostile
answers score 0."""

import csv
import html
import io
import json
import re

import numpy as np
import pytest

from jaxlab import tasks
from jaxlab.tasks.documents import Table, draw_table, serialize
from jaxlab.tasks.documents.tables import FORMATS, draw_merges

TABLE_TASKS = ["table_lookup", "table_reverse_lookup", "table_row", "table_column", "table_size", "table_partition",
               "table_merged"]


def parse_table(text, fmt):
    """(header, rows) of a serialised table without merged cells."""
    if fmt == "markdown":
        lines = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()]
        return lines[0], lines[2:]
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        return rows[0], rows[1:]
    if fmt == "json":
        records = json.loads(text)
        return list(records[0]), [list(r.values()) for r in records]
    return parse_html(text)


def parse_html(text):
    """(header, rows) of an HTML table, expanding rowspan / colspan into the covered cells."""
    header = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", text)]
    body = [re.findall(r'<td(?: rowspan="(\d+)")?(?: colspan="(\d+)")?>(.*?)</td>', line)
            for line in text.splitlines() if line.startswith("<tr><td")]
    grid = [[None] * len(header) for _ in body]
    for i, cells in enumerate(body):
        j = 0
        for rs, cs, value in cells:
            while grid[i][j] is not None:
                j += 1
            for a in range(int(rs or 1)):
                for b in range(int(cs or 1)):
                    grid[i + a][j + b] = html.unescape(value)
    return header, grid


@pytest.mark.parametrize("fmt", FORMATS)
def test_serialisations_parse_back(fmt):
    rng = np.random.default_rng(FORMATS.index(fmt))
    for difficulty in (1, 5, 10):
        table = draw_table(rng, difficulty)
        assert parse_table(serialize(table, fmt), fmt) == (table.header, table.rows)
        assert difficulty + 1 <= len(table.rows) <= 2 * difficulty + 2
        assert 2 <= len(table.header) <= min(difficulty + 2, 8) and len(set(table.header)) == len(table.header)


def test_merged_cells_parse_back_and_are_html_only():
    rng = np.random.default_rng(0)
    for difficulty in (1, 4, 9):
        table = draw_merges(rng, draw_table(rng, difficulty), 1 + difficulty // 3)
        assert table.merges and all(rs * cs > 1 for _, _, rs, cs in table.merges)
        assert parse_html(serialize(table, "html")) == (table.header, table.rows)
        with pytest.raises(ValueError, match="merged cells can only be serialised as html"):
            serialize(table, "csv")


@pytest.mark.parametrize("name", TABLE_TASKS)
def test_answers_verify_in_every_format_and_generation_is_deterministic(name):
    task = tasks.get(name)
    a = [task.generate(np.random.default_rng(s), 3) for s in range(12)]
    assert a == [task.generate(np.random.default_rng(s), 3) for s in range(12)]
    assert {e.meta["format"] for e in a} == set(task.formats)
    assert all(task.verify(e, e.answer) == 1.0 for e in a)


def test_known_answers_on_a_fixed_table():
    table = Table(["Name", "City"], [["Lena Weber", "Oslo"], ["Omar Costa", "Porto"], ["Uma Ueda", "Graz"]])
    meta = lambda task, **kw: {"task": task, "difficulty": 2, "format": "csv", **kw}  # noqa: E731
    lookup, reverse = tasks.get("table_lookup"), tasks.get("table_reverse_lookup")
    assert lookup.verify(meta("table_lookup", value=table.rows[1][1]), "  porto ") == 1.0
    assert lookup.verify(meta("table_lookup", value="Porto"), "Porto, Portugal") == 0.0
    m = meta("table_reverse_lookup", row=2, column=2)
    assert reverse.verify(m, "2,2") == reverse.verify(m, "2, 2") == 1.0
    for bad in ("2,1", "٢,٢", "２,２", "+2,2", "2,2,2", "(2,2)", "2;2", "99999,2"):
        assert reverse.verify(m, bad) == 0.0, bad
    row = tasks.get("table_row")
    m = meta("table_row", cells=table.rows[0])
    assert row.verify(m, "lena  weber | OSLO") == 1.0
    assert row.verify(m, "Oslo | Lena Weber") == 0.0 and row.verify(m, "Lena Weber | Oslo |") == 0.0
    col = tasks.get("table_column")
    assert col.verify(meta("table_column", cells=["Oslo", "Porto", "Graz"]), "Oslo | Porto | Graz") == 1.0
    assert col.verify(meta("table_column", cells=["Oslo", "Porto", "Graz"]), "Oslo | Porto") == 0.0
    size = tasks.get("table_size")
    assert size.verify(meta("table_size", rows=3, columns=2), "3,2") == 1.0
    assert size.verify(meta("table_size", rows=3, columns=2), "4,2") == 0.0  # header counted
    partition = tasks.get("table_partition")
    m = meta("table_partition", cells=["Name", "Graz"])
    assert partition.verify(m, "name | graz") == 1.0 and partition.verify(m, "Name | Uma Ueda") == 0.0
    merged = tasks.get("table_merged")
    m = meta("table_merged", corners=[[2, 1], [4, 3]])
    assert merged.verify(m, "4,3 2,1") == merged.verify(m, "2,1 4,3") == 1.0
    for bad in ("2,1", "2,1 4,3 4,3", "2,1 4,3 1,1", "2,1,4,3", ""):
        assert merged.verify(m, bad) == 0.0, bad


@pytest.mark.parametrize("name", TABLE_TASKS)
def test_hostile_answers_score_zero(name):
    task = tasks.get(name)
    ex = task.generate(np.random.default_rng(1), 4)
    for response in ("", "x" * 10_000, " | ".join(["a"] * 5000), "1," * 3000, "\x00", ex.answer + "\n\n?"):
        assert task.verify(ex, response) == 0.0


def test_merged_task_accepts_only_html():
    with pytest.raises(tasks.TaskError, match="formats=.*subset of \\('html',\\)"):
        tasks.get("table_merged", formats=("csv",))
    assert tasks.get("table_lookup", formats=["json"]).formats == ("json",)
