"""Table-structure tasks (Sui et al., "Table Meets LLM", WSDM 2024: the SUC benchmark), over
random tables serialised as markdown, HTML, CSV or JSON (a list of row objects).

    table_lookup          value at data row r, column "C"                    -> "Oslo"
    table_reverse_lookup  row,column of a value that occurs once             -> "3,2"
    table_row             data row r, left to right, " | "-separated          -> "Lena Weber | Oslo | 12.50"
    table_column          column "C", top to bottom, " | "-separated         -> "Oslo | Porto | Graz"
    table_size            data rows,columns (the header row is not counted)  -> "5,4"
    table_partition       the table's first and last cell, " | "-separated, where the table
                          sits between paragraphs of text                    -> "Name | 12.50"
    table_merged          top-left row,column of every merged cell (HTML rowspan / colspan;
                          HTML only, the one serialisation here that can merge), blank-separated,
                          any order                                          -> "2,1 4,3"

Rows are data rows counted from 1 after the header; columns are counted from 1. Difficulty d
(1..10) sets the size: rows in [d + 1, 2 d + 2], columns in [2, min(d + 2, 8)]; merged cells
number 1 + d // 3. Cell values are compared with blanks collapsed and case folded; indices are
ASCII integers of at most 4 digits.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json

import numpy as np

from jaxlab.tasks.base import Example, Task, TaskError, ascii_uint
from jaxlab.tasks.documents import values as V

FORMATS = ("markdown", "html", "csv", "json")
MAX_CELLS = 256
GOODS = ("Widget", "Gadget", "Bolt", "Cable", "Lamp", "Chair", "Desk", "Toner", "Paper", "Hub", "Fan", "Mug")
STATUS = ("open", "paid", "overdue", "shipped", "pending", "cancelled")


def _column_kinds():
    return {
        "Name": lambda r: V.draw_person(r), "City": lambda r: V.pick(r, V.CITIES)[0],
        "Product": lambda r: f"{V.pick(r, GOODS)} {V.pick(r, 'ABCDEFGH')}{int(r.integers(10, 99))}",
        "Price": lambda r: f"{int(r.integers(1, 999))}.{int(r.integers(0, 100)):02d}",
        "Qty": lambda r: str(int(r.integers(1, 500))), "Date": lambda r: V.draw_date(r).isoformat(),
        "ID": lambda r: f"{V.pick(r, 'ABCKMXZ')}-{int(r.integers(1000, 9999))}",
        "Email": lambda r: V.draw_email(r), "Status": lambda r: V.pick(r, STATUS),
        "Score": lambda r: str(int(r.integers(0, 101))), "Company": lambda r: V.draw_company(r),
        "Phone": lambda r: V.draw_phone(r),
    }


COLUMN_KINDS = _column_kinds()


@dataclasses.dataclass(frozen=True)
class Table:
    """``header`` (column names) and ``rows`` (lists of cell strings); ``merges`` are
    (row, col, rowspan, colspan) with 1-based data-row and column indices."""

    header: list
    rows: list
    merges: tuple = ()


def draw_table(rng: np.random.Generator, difficulty: int) -> Table:
    """A random table at ``difficulty`` (module docstring), distinct column names."""
    n_rows = int(rng.integers(difficulty + 1, 2 * difficulty + 3))
    n_cols = int(rng.integers(2, min(difficulty + 2, 8) + 1))
    names = [list(COLUMN_KINDS)[i] for i in rng.permutation(len(COLUMN_KINDS))[:n_cols]]
    rows = [[COLUMN_KINDS[c](rng) for c in names] for _ in range(n_rows)]
    return Table(names, rows)


def draw_merges(rng: np.random.Generator, table: Table, count: int) -> Table:
    """``table`` with up to ``count`` non-overlapping merged blocks (each spans >= 2 cells);
    the covered cells take the top-left cell's value."""
    n_rows, n_cols = len(table.rows), len(table.header)
    taken = np.zeros((n_rows, n_cols), bool)
    merges = []
    for _ in range(50 * count):
        if len(merges) == count:
            break
        rs, cs = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        if rs * cs == 1:
            continue
        r, c = int(rng.integers(0, n_rows - rs + 1)), int(rng.integers(0, n_cols - cs + 1))
        if taken[r:r + rs, c:c + cs].any():
            continue
        taken[r:r + rs, c:c + cs] = True
        merges.append((r + 1, c + 1, rs, cs))
    rows = [list(row) for row in table.rows]
    for r, c, rs, cs in merges:
        for i in range(r - 1, r - 1 + rs):
            for j in range(c - 1, c - 1 + cs):
                rows[i][j] = rows[r - 1][c - 1]
    return Table(table.header, rows, tuple(sorted(merges)))


def serialize(table: Table, fmt: str) -> str:
    """``table`` as text in ``fmt`` (:data:`FORMATS`); merged cells need ``html``."""
    if table.merges and fmt != "html":
        raise ValueError(f"merged cells can only be serialised as html, not {fmt!r}")
    if fmt == "markdown":
        lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
        lines += ["| " + " | ".join(row) + " |" for row in table.rows]
        return "\n".join(lines)
    if fmt == "html":
        spans = {(r - 1, c - 1): (rs, cs) for r, c, rs, cs in table.merges}
        covered = {(r - 1 + i, c - 1 + j) for r, c, rs, cs in table.merges for i in range(rs) for j in range(cs)}
        lines = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in table.header) + "</tr>"]
        for i, row in enumerate(table.rows):
            cells = []
            for j, value in enumerate(row):
                if (i, j) in spans:
                    rs, cs = spans[i, j]
                    attrs = (f' rowspan="{rs}"' if rs > 1 else "") + (f' colspan="{cs}"' if cs > 1 else "")
                    cells.append(f"<td{attrs}>{html.escape(value)}</td>")
                elif (i, j) not in covered:
                    cells.append(f"<td>{html.escape(value)}</td>")
            lines.append("<tr>" + "".join(cells) + "</tr>")
        return "\n".join(lines + ["</table>"])
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(table.header)
        writer.writerows(table.rows)
        return out.getvalue().rstrip("\n")
    if fmt == "json":
        return json.dumps([dict(zip(table.header, row)) for row in table.rows], ensure_ascii=False)
    raise ValueError(f"unknown table format {fmt!r}; formats: {', '.join(FORMATS)}")


def cell_key(text: str) -> str:
    """A cell value for comparison: blanks collapsed, case folded."""
    return " ".join(text.split()).casefold()


def _cells(answer: str) -> list[str] | None:
    parts = [cell_key(p) for p in answer.split("|")]
    return parts if len(parts) <= MAX_CELLS and all(parts) else None


def _position(text: str) -> tuple[int, int] | None:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        return None
    r, c = (ascii_uint(p, 4) for p in parts)
    return None if r is None or c is None else (r, c)


@dataclasses.dataclass(frozen=True)
class _TableTask(Task):
    knob = "table size"
    min_difficulty = 1
    max_difficulty = 10
    train_difficulty: tuple[int, int] = (1, 5)
    ood_difficulty: tuple[int, int] = (6, 10)
    formats: tuple = FORMATS
    allowed_formats = FORMATS

    def __post_init__(self):
        super().__post_init__()
        value = tuple(self.formats)
        if not value or not set(value) <= set(self.allowed_formats):
            raise TaskError(f"{self.name}: formats={value!r} must be a non-empty subset of {self.allowed_formats}")
        object.__setattr__(self, "formats", value)

    def _example(self, rng, difficulty, table: Table, question: str, answer: str, **meta) -> Example:
        fmt = self.formats[int(rng.integers(len(self.formats)))]
        prompt = f"Table ({fmt}):\n{serialize(table, fmt)}\n\n{question}\nAnswer: "
        return Example(prompt, answer, {"task": self.name, "difficulty": difficulty, "format": fmt, **meta})


@dataclasses.dataclass(frozen=True)
class TableLookup(_TableTask):
    name = "table_lookup"

    def _generate(self, rng, difficulty):
        table = draw_table(rng, difficulty)
        r, c = int(rng.integers(len(table.rows))), int(rng.integers(len(table.header)))
        question = (f'What is the value in data row {r + 1} (row 1 is the first row after the header) '
                    f'under column "{table.header[c]}"?')
        return self._example(rng, difficulty, table, question, table.rows[r][c], value=table.rows[r][c])

    def parse(self, answer):
        return cell_key(answer) or None

    def check(self, meta, parsed):
        return parsed == cell_key(meta["value"])


@dataclasses.dataclass(frozen=True)
class TableReverseLookup(_TableTask):
    name = "table_reverse_lookup"

    def _generate(self, rng, difficulty):
        table = draw_table(rng, difficulty)
        keys = [cell_key(v) for row in table.rows for v in row]
        while True:  # a cell whose value occurs once (Price / ID / Email... almost always do)
            r, c = int(rng.integers(len(table.rows))), int(rng.integers(len(table.header)))
            if keys.count(cell_key(table.rows[r][c])) == 1:
                break
        question = (f'Which data row and column hold the value "{table.rows[r][c]}"? Answer as row,column '
                    f"(data rows counted from 1 after the header, columns from 1).")
        return self._example(rng, difficulty, table, question, f"{r + 1},{c + 1}", row=r + 1, column=c + 1)

    def parse(self, answer):
        return _position(answer)

    def check(self, meta, parsed):
        return parsed == (meta["row"], meta["column"])


@dataclasses.dataclass(frozen=True)
class TableRow(_TableTask):
    name = "table_row"

    def _generate(self, rng, difficulty):
        table = draw_table(rng, difficulty)
        r = int(rng.integers(len(table.rows)))
        question = (f'List the values of data row {r + 1} (row 1 is the first row after the header) from '
                    f'left to right, separated by " | ".')
        return self._example(rng, difficulty, table, question, " | ".join(table.rows[r]), cells=table.rows[r])

    def parse(self, answer):
        return _cells(answer)

    def check(self, meta, parsed):
        return parsed == [cell_key(v) for v in meta["cells"]]


@dataclasses.dataclass(frozen=True)
class TableColumn(_TableTask):
    name = "table_column"

    def _generate(self, rng, difficulty):
        table = draw_table(rng, difficulty)
        c = int(rng.integers(len(table.header)))
        cells = [row[c] for row in table.rows]
        question = (f'List the values of column "{table.header[c]}" from top to bottom, without the header, '
                    f'separated by " | ".')
        return self._example(rng, difficulty, table, question, " | ".join(cells), cells=cells)

    parse = TableRow.parse
    check = TableRow.check


@dataclasses.dataclass(frozen=True)
class TableSize(_TableTask):
    name = "table_size"

    def _generate(self, rng, difficulty):
        table = draw_table(rng, difficulty)
        n_rows, n_cols = len(table.rows), len(table.header)
        question = ("How many data rows (not counting the header) and columns does the table have? "
                    "Answer as rows,columns.")
        return self._example(rng, difficulty, table, question, f"{n_rows},{n_cols}", rows=n_rows, columns=n_cols)

    def parse(self, answer):
        return _position(answer)

    def check(self, meta, parsed):
        return parsed == (meta["rows"], meta["columns"])


PROSE = ("The figures below were exported from the accounting system on request.",
         "Please review the entries and report any discrepancy within 14 days.",
         "Amounts are shown before discounts; 3 items were returned last month.",
         "This summary replaces the version sent on 2 May.", "Contact the office at +44 20 7946 0958 with questions.",
         "Rows marked pending will be processed in the next cycle.", "All dates use the ISO format.",
         "Thank you for your business.", "Totals exclude shipping | handling fees.")


@dataclasses.dataclass(frozen=True)
class TablePartition(_TableTask):
    name = "table_partition"

    def _example(self, rng, difficulty, table, question, answer, **meta):
        fmt = self.formats[int(rng.integers(len(self.formats)))]
        before, after = (" ".join(V.pick(rng, PROSE) for _ in range(int(rng.integers(1, 4)))) for _ in range(2))
        prompt = f"Text ({fmt} table inside):\n{before}\n{serialize(table, fmt)}\n{after}\n\n{question}\nAnswer: "
        return Example(prompt, answer, {"task": self.name, "difficulty": difficulty, "format": fmt, **meta})

    def _generate(self, rng, difficulty):
        table = draw_table(rng, difficulty)
        cells = [table.header[0], table.rows[-1][-1]]
        question = ('The text above holds one table. Give its first cell (the first header) and its last cell '
                    '(the last row\'s last value), separated by " | ".')
        return self._example(rng, difficulty, table, question, " | ".join(cells), cells=cells)

    parse = TableRow.parse
    check = TableRow.check


@dataclasses.dataclass(frozen=True)
class TableMerged(_TableTask):
    name = "table_merged"
    formats: tuple = ("html",)
    allowed_formats = ("html",)

    def _generate(self, rng, difficulty):
        table = draw_merges(rng, draw_table(rng, difficulty), 1 + difficulty // 3)
        corners = sorted((r, c) for r, c, _, _ in table.merges)
        question = ("Which cells are merged (span several rows or columns)? Answer with the row,column of each "
                    "merged cell's top-left corner (data rows counted from 1 after the header, columns from 1), "
                    "separated by blanks, e.g. 2,1 4,3.")
        answer = " ".join(f"{r},{c}" for r, c in corners)
        return self._example(rng, difficulty, table, question, answer, corners=[list(p) for p in corners])

    def parse(self, answer):
        parts = answer.split()
        if not parts or len(parts) > MAX_CELLS:
            return None
        positions = [_position(p) for p in parts]
        if None in positions or len(set(positions)) != len(positions):
            return None
        return frozenset(positions)

    def check(self, meta, parsed):
        return parsed == frozenset(tuple(p) for p in meta["corners"])


TABLE_TASKS = (TableLookup, TableReverseLookup, TableRow, TableColumn, TableSize, TablePartition, TableMerged)
