"""Synthetic business documents (invoices, receipts, purchase orders, forms) rendered as text.

:func:`render_document` draws the fields of a document ``kind`` (:data:`SCHEMAS`), writes
each value in a document-wide style (date format, currency placement, number style), and
renders the labelled fields in a ``layout``:

    kv          "Invoice No.: INV-2023-0042" lines, a title and line items
    two_column  two labelled fields per line, padded into columns
    markdown    a "| Field | Value |" table (and an item table)
    html        <table> rows of <th>label</th><td>value</td>
    csv         "field,value" rows (quoted where a value holds a comma)
    json        one object of label -> value (and an "items" list)

Difficulty d (1..10) sets how many fields are asked (min(1 + d, fields of the kind)), how many
distractors are shown (d // 2 more fields of the kind or look-alike fields such as "Order
Date" beside "Invoice Date", "Amount Paid" beside "Total"), whether one asked field is absent
from the document (from d >= 6, probability 0.3: its target is null), and the OCR noise rate
(0 up to d = 4, then 0.02 (d - 4) per character / blank / line break).

OCR noise (kv and two_column only: the other layouts are machine serialisations) confuses
characters (O/0, l/1, S/5, rn/m, ...), splits and merges words, and drops line breaks. It
never touches a field's value, so every target is recoverable from the text and
``Document.spans`` stay exact: ``text[start:end]`` is the written value of the field.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from decimal import Decimal

import numpy as np

from jaxlab.tasks.documents import values as V

KINDS = ("invoice", "receipt", "purchase_order", "form")
LAYOUTS = ("kv", "two_column", "markdown", "html", "csv", "json")
NOISY_LAYOUTS = ("kv", "two_column")
MAX_DIFFICULTY = 10
TITLES = {"invoice": ("INVOICE", "Tax Invoice", "Invoice"), "receipt": ("RECEIPT", "Sales Receipt", "Receipt"),
          "purchase_order": ("PURCHASE ORDER", "Purchase Order", "PO"),
          "form": ("APPLICATION FORM", "Customer Registration Form", "Claim Form")}

# field -> (type, labels); a document shows one label per field
FIELDS = {
    "invoice_number": ("id", ("Invoice No.", "Invoice #", "Invoice Number", "Inv. No")),
    "invoice_date": ("date", ("Invoice Date", "Date of Issue", "Issued")),
    "due_date": ("date", ("Due Date", "Payment Due", "Due By")),
    "vendor_name": ("text", ("From", "Vendor", "Supplier", "Seller")),
    "vendor_address": ("text", ("Vendor Address", "Supplier Address", "Remit To")),
    "customer_name": ("text", ("Bill To", "Customer", "Client")),
    "customer_address": ("text", ("Billing Address", "Customer Address")),
    "po_number": ("id", ("PO Number", "P.O. #", "Purchase Order No.", "Order No.")),
    "subtotal": ("amount", ("Subtotal", "Net Amount", "Sub-total")),
    "tax": ("amount", ("Tax", "VAT", "Sales Tax")),
    "total": ("amount", ("Total", "Amount Due", "Total Due", "Grand Total")),
    "currency": ("currency", ("Currency", "Curr.")),
    "payment_terms": ("text", ("Terms", "Payment Terms")),
    "merchant_name": ("text", ("Store", "Merchant")),
    "merchant_address": ("text", ("Store Address", "Location")),
    "receipt_number": ("id", ("Receipt No.", "Receipt #", "Trans. No")),
    "date": ("date", ("Date", "Transaction Date")),
    "payment_method": ("text", ("Paid By", "Payment Method", "Tender")),
    "order_date": ("date", ("Order Date", "PO Date", "Date Ordered")),
    "delivery_date": ("date", ("Delivery Date", "Deliver By", "Required By")),
    "buyer_name": ("text", ("Buyer", "Ordered By", "Purchaser")),
    "ship_to_address": ("text", ("Ship To", "Delivery Address")),
    "full_name": ("text", ("Full Name", "Name", "Applicant")),
    "date_of_birth": ("date", ("Date of Birth", "DOB", "Birth Date")),
    "email": ("email", ("Email", "E-mail Address")),
    "phone": ("phone", ("Phone", "Telephone", "Mobile")),
    "address": ("text", ("Address", "Home Address", "Residential Address")),
    "policy_number": ("id", ("Policy No.", "Policy Number", "Member ID")),
    "signature_date": ("date", ("Signed On", "Signature Date", "Date Signed")),
}
SCHEMAS = {
    "invoice": ("invoice_number", "invoice_date", "due_date", "vendor_name", "vendor_address",
                "customer_name", "customer_address", "po_number", "subtotal", "tax", "total", "currency",
                "payment_terms"),
    "receipt": ("merchant_name", "merchant_address", "receipt_number", "date", "subtotal", "tax", "total",
                "currency", "payment_method"),
    "purchase_order": ("po_number", "order_date", "delivery_date", "buyer_name", "vendor_name",
                       "ship_to_address", "subtotal", "tax", "total", "currency", "payment_terms"),
    "form": ("full_name", "date_of_birth", "email", "phone", "address", "policy_number", "signature_date"),
}
# look-alike fields shown only as distractors: (type, labels)
DISTRACTORS = {
    "invoice": {"ship_date": ("date", ("Ship Date", "Shipped On")),
                "amount_paid": ("amount", ("Amount Paid", "Total Paid")),
                "reference_number": ("id", ("Reference No.", "Ref #")),
                "ship_to_name": ("text", ("Ship To", "Deliver To")),
                "discount": ("amount", ("Discount",)), "previous_balance": ("amount", ("Previous Balance",))},
    "receipt": {"cashier": ("text", ("Cashier", "Served By")), "change": ("amount", ("Change", "Change Due")),
                "tendered": ("amount", ("Cash Tendered", "Amount Tendered")),
                "register_id": ("id", ("Register", "Till No."))},
    "purchase_order": {"quote_number": ("id", ("Quote No.", "Quotation #")), "quote_date": ("date", ("Quote Date",)),
                       "freight": ("amount", ("Freight", "Shipping")), "approved_by": ("text", ("Approved By",))},
    "form": {"emergency_contact": ("text", ("Emergency Contact",)),
             "emergency_phone": ("phone", ("Emergency Phone",)),
             "previous_policy": ("id", ("Previous Policy No.",)),
             "start_date": ("date", ("Start Date", "Effective Date"))},
}
CONFUSIONS = {"O": "0", "0": "O", "l": "1", "1": "l", "I": "l", "S": "5", "5": "S", "B": "8", "e": "c",
              "a": "o", "m": "rn", "rn": "m", "cl": "d", "i": "í"}


@dataclasses.dataclass(frozen=True)
class Document:
    """A rendered document: ``text``, the target ``record`` (asked field -> canonical value or
    None when absent), their ``types``, and ``spans``: field -> (start, end) character offsets
    in ``text`` of every shown field, asked or distractor (``text[start:end]`` is its written
    value)."""

    kind: str
    layout: str
    text: str
    record: dict
    types: dict
    spans: dict


def _draw_values(rng, kind: str, currency: str) -> dict[str, object]:
    """Canonical values of every field of ``kind`` and its distractors (dates as ``date``,
    amounts as ``Decimal``), consistent: total = subtotal + tax, due after issue."""
    issue = V.draw_date(rng)
    subtotal = V.draw_amount(rng, currency)
    rate = Decimal(int(V.pick(rng, (5, 7, 10, 19, 20, 21)))) / 100
    scale = Decimal(1).scaleb(-V.CURRENCIES[currency][1])
    tax = (subtotal * rate).quantize(scale)
    later = lambda days: issue + datetime.timedelta(days=int(rng.integers(1, days)))  # noqa: E731
    vendor = V.draw_company(rng)
    out = {
        "invoice_number": V.draw_id(rng, "INV"), "invoice_date": issue, "due_date": later(90),
        "vendor_name": vendor, "vendor_address": V.draw_address(rng), "customer_name": V.draw_company(rng),
        "customer_address": V.draw_address(rng), "po_number": V.draw_id(rng, "PO"), "subtotal": subtotal,
        "tax": tax, "total": subtotal + tax, "currency": currency, "payment_terms": V.pick(rng, V.PAYMENT_TERMS),
        "merchant_name": vendor, "merchant_address": V.draw_address(rng), "receipt_number": V.draw_id(rng, "R"),
        "date": issue, "payment_method": V.pick(rng, V.PAYMENT_METHODS), "order_date": issue,
        "delivery_date": later(60), "buyer_name": V.draw_person(rng), "ship_to_address": V.draw_address(rng),
        "full_name": V.draw_person(rng), "date_of_birth": datetime.date(1940, 1, 1) + datetime.timedelta(
            days=int(rng.integers(0, 60 * 365))), "email": V.draw_email(rng), "phone": V.draw_phone(rng),
        "address": V.draw_address(rng), "policy_number": V.draw_id(rng, V.pick(rng, ("POL", "MBR", "CL"))),
        "signature_date": issue,
        # distractors
        "ship_date": later(30), "amount_paid": V.draw_amount(rng, currency), "reference_number": V.draw_id(rng, "REF"),
        "ship_to_name": V.draw_person(rng), "discount": V.draw_amount(rng, currency, 1, 500),
        "previous_balance": V.draw_amount(rng, currency), "cashier": V.draw_person(rng),
        "change": V.draw_amount(rng, currency, 0.1, 50), "tendered": V.draw_amount(rng, currency),
        "register_id": V.draw_id(rng, "T"), "quote_number": V.draw_id(rng, "Q"), "quote_date": later(20),
        "freight": V.draw_amount(rng, currency, 5, 800), "approved_by": V.draw_person(rng),
        "emergency_contact": V.draw_person(rng), "emergency_phone": V.draw_phone(rng),
        "previous_policy": V.draw_id(rng, "POL"), "start_date": later(365),
    }
    return out


def _canonical(value, kind: str, currency: str) -> str:
    if kind == "date":
        return value.isoformat()
    if kind == "amount":
        return V.canonical_amount(value, currency)
    return str(value)


def _noisy(text: str, rng, rate: float) -> str:
    """OCR noise on text that holds no field value (module docstring)."""
    if rate <= 0:
        return text
    out, i = [], 0
    while i < len(text):
        pair, c = text[i:i + 2], text[i]
        u = rng.random()
        if pair in CONFUSIONS and u < rate:
            out.append(CONFUSIONS[pair])
            i += 2
            continue
        if c in CONFUSIONS and u < rate:
            out.append(CONFUSIONS[c])
        elif c == "\n" and u < rate * 4:
            out.append(" ")
        elif c == " " and u < rate * 2:
            pass  # merged words
        elif c.isalpha() and u < rate * 1.5:
            out.append(c + " ")  # split word
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _items(rng, currency, write) -> list[tuple[str, str, str]]:
    goods = ("Widget", "Cable 2m", "Paper A4 (box)", "Toner cartridge", "Desk lamp", "Service hour",
             "Coffee beans 1kg", "USB hub", "Shipping box", "Label roll")
    n = int(rng.integers(1, 4))
    rows = []
    for _ in range(n):
        qty = int(rng.integers(1, 10))
        price = V.draw_amount(rng, currency, 1, 300)
        rows.append((f"{qty} x {V.pick(rng, goods)}", write(price), write(price * qty)))
    return rows


def _segments(layout: str, title: str, shown, items, rng) -> list[tuple[str, str | None]]:
    """The document as (text, field or None) pieces; ``shown`` are (field, label, written)."""
    seg: list[tuple[str, str | None]] = []
    add = seg.append
    if layout == "kv":
        add((f"{title}\n", None))
        sep = V.pick(rng, (": ", " : ", " - ", ":  "))
        for field, label, written in shown:
            add((f"{label}{sep}", None)); add((written, field)); add(("\n", None))
        for desc, unit, amount in items:
            add((f"{desc} @ {unit}  {amount}\n", None))
    elif layout == "two_column":
        add((f"{title}\n", None))
        width = 44
        for i, (field, label, written) in enumerate(shown):
            cell = f"{label}: "
            add((cell, None)); add((written, field))
            if i % 2 == 0 and i + 1 < len(shown):
                add((" " * max(2, width - len(cell) - len(written)), None))
            else:
                add(("\n", None))
        for desc, unit, amount in items:
            add((f"{desc:<28}{unit:>14}{amount:>14}\n", None))
    elif layout == "markdown":
        add((f"## {title}\n\n| Field | Value |\n|---|---|\n", None))
        for field, label, written in shown:
            add((f"| {label} | ", None)); add((written, field)); add((" |\n", None))
        if items:
            add(("\n| Item | Unit price | Amount |\n|---|---|---|\n", None))
            for row in items:
                add(("| " + " | ".join(row) + " |\n", None))
    elif layout == "html":
        add((f"<h1>{title}</h1>\n<table>\n", None))
        for field, label, written in shown:
            add((f"<tr><th>{label}</th><td>", None)); add((written, field)); add(("</td></tr>\n", None))
        add(("</table>\n", None))
        if items:
            add(("<table>\n<tr><th>Item</th><th>Unit price</th><th>Amount</th></tr>\n", None))
            for row in items:
                add(("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>\n", None))
            add(("</table>\n", None))
    elif layout == "csv":
        quote = lambda s: f'"{s}"' if "," in s else s  # noqa: E731  (values hold no quotes)
        add(("field,value\n", None))
        add((f"Document,{quote(title)}\n", None))
        for field, label, written in shown:
            q = '"' if "," in written else ""
            add((f"{quote(label)},{q}", None)); add((written, field)); add((f"{q}\n", None))
        for desc, unit, amount in items:
            add((f"Item,{quote(f'{desc} @ {unit} = {amount}')}\n", None))
    elif layout == "json":
        add(("{" + f'"document": {json.dumps(title)}', None))
        for field, label, written in shown:
            add((f', {json.dumps(label)}: "', None)); add((written, field)); add(('"', None))
        if items:
            rows = [{"item": d, "unit_price": u, "amount": a} for d, u, a in items]
            add((', "items": ' + json.dumps(rows, ensure_ascii=False), None))
        add(("}\n", None))
    else:
        raise ValueError(f"unknown layout {layout!r}; layouts: {', '.join(LAYOUTS)}")
    return seg


def render_document(rng: np.random.Generator, difficulty: int, *, kind: str | None = None,
                    layout: str | None = None, noise: bool = True) -> Document:
    """A document at ``difficulty`` (module docstring); ``kind`` / ``layout`` drawn when None."""
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty={difficulty} must be in [1, {MAX_DIFFICULTY}]")
    kind = kind or V.pick(rng, KINDS)
    layout = layout or V.pick(rng, LAYOUTS)
    if kind not in SCHEMAS:
        raise ValueError(f"unknown document kind {kind!r}; kinds: {', '.join(KINDS)}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; layouts: {', '.join(LAYOUTS)}")
    currency = V.pick(rng, tuple(V.CURRENCIES))
    date_style = V.pick(rng, V.DATE_FORMATS)
    number_style = V.pick(rng, tuple(V.NUMBER_STYLES))
    placement = V.pick(rng, ("symbol", "code_before", "code_after", "none"))
    values = _draw_values(rng, kind, currency)
    schema = SCHEMAS[kind]
    n_asked = min(1 + difficulty, len(schema))
    order = [schema[i] for i in rng.permutation(len(schema))]
    asked, rest = order[:n_asked], order[n_asked:]
    absent = asked[int(rng.integers(len(asked)))] if difficulty >= 6 and rng.random() < 0.3 else None
    pool = rest + list(DISTRACTORS[kind])
    distractors = [pool[i] for i in rng.permutation(len(pool))[: difficulty // 2]]
    types = {f: FIELDS[f][0] if f in FIELDS else DISTRACTORS[kind][f][0] for f in asked + distractors}

    def write(field):
        kind_, value = types[field], values[field]
        if kind_ == "date":
            return V.format_date(value, date_style)
        if kind_ == "amount":
            return V.format_amount(value, currency, number_style, placement)
        return str(value)

    shown_fields = [f for f in asked if f != absent] + distractors
    shown_fields = [shown_fields[i] for i in rng.permutation(len(shown_fields))]
    shown = []
    for f in shown_fields:
        labels = FIELDS[f][1] if f in FIELDS else DISTRACTORS[kind][f][1]
        shown.append((f, V.pick(rng, labels), write(f)))
    price = lambda value: V.format_amount(value, currency, number_style, placement)  # noqa: E731
    items = _items(rng, currency, price) if kind != "form" else []
    segments = _segments(layout, V.pick(rng, TITLES[kind]), shown, items, rng)
    rate = 0.02 * max(0, difficulty - 4) if noise and layout in NOISY_LAYOUTS else 0.0
    text, spans = [], {}
    pos = 0
    for piece, field in segments:
        if field is None:
            piece = _noisy(piece, rng, rate)
        else:
            spans[field] = (pos, pos + len(piece))
        text.append(piece)
        pos += len(piece)
    record = {f: None if f == absent else _canonical(values[f], types[f], currency) for f in asked}
    return Document(kind, layout, "".join(text), record, {f: types[f] for f in asked}, spans)



def render_documents(rng: np.random.Generator, n: int, difficulty: tuple[int, int], *, kinds=KINDS,
                     layouts=LAYOUTS, noise: bool = True, max_bytes: int | None = None,
                     max_draws: int | None = None) -> tuple[list[Document], int]:
    """``n`` documents, each of a difficulty, kind and layout drawn uniformly from
    ``difficulty`` (inclusive range), ``kinds`` and ``layouts``; a document whose UTF-8 text
    is longer than ``max_bytes`` is drawn again (for a model with a fixed row length).
    Returns (documents, how many were drawn again); more than ``max_draws`` draws in all
    (default 10 n) is an error saying the limit is too tight."""
    lo, hi = difficulty
    if n < 0 or not 1 <= lo <= hi <= MAX_DIFFICULTY:
        raise ValueError(f"need n >= 0 and 1 <= difficulty[0] <= difficulty[1] <= {MAX_DIFFICULTY}, "
                         f"got n={n}, difficulty={difficulty}")
    kinds, layouts = tuple(kinds), tuple(layouts)
    max_draws = 10 * n if max_draws is None else max_draws
    docs, redrawn = [], 0
    while len(docs) < n:
        if len(docs) + redrawn >= max_draws:
            raise ValueError(f"{redrawn} of {len(docs) + redrawn} documents were over max_bytes={max_bytes}; "
                             "raise it or lower the difficulty")
        doc = render_document(rng, int(rng.integers(lo, hi + 1)), kind=V.pick(rng, kinds),
                              layout=V.pick(rng, layouts), noise=noise)
        if max_bytes is not None and len(doc.text.encode("utf-8")) > max_bytes:
            redrawn += 1
            continue
        docs.append(doc)
    return docs, redrawn

def bio_tags(spans: dict, offsets, *, fields=None) -> list[str]:
    """BIO tags of tokens with character ``offsets`` [(start, end), ...] (any tokenizer's, e.g.
    ``tokenizers``' ``Encoding.offsets``) against field ``spans`` {field: (start, end)}: a token
    overlapping a span (start < span_end and end > span_start) is ``B-field`` when it is the
    first such token of that span, else ``I-field``; other tokens, and empty (start == end)
    tokens such as specials, are ``O``. ``fields`` limits the labelled fields (None: all)."""
    tags = ["O"] * len(offsets)
    for field, (s, e) in sorted(spans.items(), key=lambda kv: kv[1]):
        if fields is not None and field not in fields:
            continue
        first = True
        for t, (a, b) in enumerate(offsets):
            if a < b and a < e and b > s:
                tags[t] = ("B-" if first else "I-") + field
                first = False
    return tags


def bio_label_names(fields) -> list[str]:
    """Label list for a token classifier over ``fields``: ``O`` then ``B-f``, ``I-f`` per field."""
    return ["O"] + [f"{p}-{f}" for f in fields for p in ("B", "I")]


def bio_spans(tags, offsets) -> list[tuple[str, int, int, int]]:
    """Field spans of a BIO tag sequence: ``(field, start, end, n_tokens)`` per run, where a run
    is ``B-f`` followed by ``I-f`` tokens, in character offsets ``(start of its first token,
    end of its last)``. Lenient on hostile sequences: ``I-f`` that does not continue a run of
    ``f`` (after ``O``, another field, or at the start) opens a new run, as ``B-f`` would;
    ``O``, empty-offset tokens and tags that are not ``O`` / ``B-x`` / ``I-x`` end the run."""
    if len(tags) != len(offsets):
        raise ValueError(f"{len(tags)} tags but {len(offsets)} offsets")
    runs: list[list] = []
    current = None  # [field, start, end, n] of the open run
    for tag, (a, b) in zip(tags, offsets):
        prefix, _, field = str(tag).partition("-")
        if a >= b or prefix not in ("B", "I") or not field:
            current = None
            continue
        if prefix == "I" and current is not None and current[0] == field:
            current[2] = max(current[2], b)
            current[3] += 1
            continue
        current = [field, a, b, 1]
        runs.append(current)
    return [tuple(r) for r in runs]


def bio_record(tags, offsets, text: str, *, fields=None) -> dict:
    """The record {field: value or None} that BIO ``tags`` of tokens with character ``offsets``
    mark in ``text``; the inverse of :func:`bio_tags`. A field's value is ``text[start:end]``
    (stripped of blanks; empty: None) of its run (:func:`bio_spans`) with the most tokens, the
    first of equal ones, so any tag sequence gives one value per field. ``fields``: the keys
    of the record (each None when no run marks it; runs of other fields are dropped); None:
    every field some run marks."""
    best: dict[str, tuple[int, int, int]] = {}
    for field, start, end, n in bio_spans(tags, offsets):
        if fields is not None and field not in fields:
            continue
        if field not in best or n > best[field][2]:
            best[field] = (start, end, n)
    keys = list(fields) if fields is not None else list(best)
    record = {}
    for f in keys:
        value = text[best[f][0]:best[f][1]].strip() if f in best else ""
        record[f] = value or None
    return record
