"""Field extraction from business documents: the answer is a one-line JSON record.

    prompt  "Extract these fields from the invoice below ... {document} ... JSON: "
    answer  '{"invoice_number": "INV-2023-0042", "total": "1234.56", "due_date": null}'

The document comes from :func:`jaxlab.tasks.documents.generator.render_document` (difficulty:
fields asked, distractors, absent fields, OCR noise). The record must be the answer line (the
last non-blank line, as for every task), with exactly the asked keys; ``null`` for a field
the document does not show. Values are compared after :func:`~jaxlab.tasks.documents.values.normalize`
(dates in any unambiguous form, amounts with or without currency and separators, case and
blanks where the field allows it).

``verify`` is exact (1.0 when every field is right and nothing extra is predicted);
:meth:`DocumentExtraction.reward` is the field-level F1 for partial credit (an RL reward in
[0, 1]) and :meth:`DocumentExtraction.scores` gives precision / recall / F1 / exact, as
defined in :mod:`jaxlab.tasks.documents.records`.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from jaxlab.tasks.base import Example, Task, TaskError
from jaxlab.tasks.documents import generator
from jaxlab.tasks.documents.records import field_scores, parse_record

TYPE_HINTS = {"date": "YYYY-MM-DD", "amount": "number", "currency": "ISO code", "text": "text", "id": "text",
              "email": "text", "phone": "text"}


@dataclasses.dataclass(frozen=True)
class DocumentExtraction(Task):
    """Documents of ``kinds`` in ``layouts``; ``noise`` enables OCR noise (difficulty >= 5)."""

    name = "doc_extract"
    knob = "fields, distractors, noise"
    min_difficulty = 1
    max_difficulty = generator.MAX_DIFFICULTY

    train_difficulty: tuple[int, int] = (1, 5)
    ood_difficulty: tuple[int, int] = (6, 10)
    kinds: tuple = generator.KINDS
    layouts: tuple = generator.LAYOUTS
    noise: bool = True

    def __post_init__(self):
        super().__post_init__()
        for field, allowed in (("kinds", generator.KINDS), ("layouts", generator.LAYOUTS)):
            value = tuple(getattr(self, field))
            if not value or not set(value) <= set(allowed):
                raise TaskError(f"{self.name}: {field}={value!r} must be a non-empty subset of {allowed}")
            object.__setattr__(self, field, value)

    def _generate(self, rng: np.random.Generator, difficulty: int) -> Example:
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        layout = self.layouts[int(rng.integers(len(self.layouts)))]
        doc = generator.render_document(rng, difficulty, kind=kind, layout=layout, noise=self.noise)
        asked = ", ".join(f"{k} ({TYPE_HINTS[t]})" for k, t in doc.types.items())
        head = (f"Extract these fields from the {kind.replace('_', ' ')} below: {asked}. Answer with one "
                f"line of JSON with exactly these keys, null for a field the document does not show.\n\n")
        prompt = f"{head}{doc.text}\nJSON: "
        meta = {"task": self.name, "difficulty": difficulty, "kind": kind, "layout": layout,
                "record": doc.record, "types": doc.types, "doc_start": len(head),
                "spans": {k: list(v) for k, v in doc.spans.items()}}
        return Example(prompt, json.dumps(doc.record, ensure_ascii=False), meta)

    def parse(self, answer: str):
        return parse_record(answer)

    def check(self, meta: dict, parsed) -> bool:
        return field_scores(meta["record"], meta["types"], parsed)["exact"] == 1.0

    def scores(self, example, response) -> dict[str, float]:
        """``{"precision", "recall", "f1", "exact"}`` of the record in ``response``
        (:mod:`jaxlab.tasks.documents.records`); all 0 when it is malformed."""
        meta = self._meta(example)
        return field_scores(meta["record"], meta["types"], self._parsed_answer(response))

    def reward(self, example, response) -> float:
        """Partial credit in [0, 1]: the field-level F1 of the record in ``response``."""
        return self.scores(example, response)["f1"]
