"""Verifiable synthetic tasks: a generator with a difficulty knob, a prompt format and an
exact verifier, each with train / test / harder out-of-distribution splits.

    task = jaxlab.tasks.get("countdown")                 # or get("arithmetic", ops="+-*")
    ex = task.generate(np.random.default_rng(0), 3)      # Example(prompt, answer, meta)
    task.verify(ex, "3*5+7")                             # 1.0 or 0.0
    splits = task.splits(seed=0, n_train=1000, n_test=100, n_ood=100)
    sources = jaxlab.tasks.prepare("countdown", data_dir, n_train=1000)   # tfds array_record

Tasks (``TASKS``; name: prompt -> reference answer; difficulty knob):

    arithmetic     "12+345=" -> "357"                      digits per operand
    countdown      "cd 3 5 7 t 22:" -> "3*5+7"             how many numbers
    hanoi          "hanoi AAA>C:" -> "AC AB CB AC BA BC AC"  disks
    count          "count a in bacaad:" -> "3"             list length
    most_frequent  "mode bacaad:" -> "a"                   list length
    last_letters   "last vobu ke tamin:" -> "uen"          words
    word_sort      "sort vobu ke tamin:" -> "ke tamin vobu"  words
    instructed_arithmetic  "What is 12+34? Answer with the number only." -> "46"  (chat models)
    card_sum       "Cards: 7, K, 3. J, Q and K count as 10. ..." -> "20"  cards (OOD: other rule)
    char_count     'How many times does the letter "r" appear in the word "error"? ...' -> "3"  word length
    char_locate    'At which position is the first "r" in the word "error"? ...' -> "2"  word length
    shift_cipher   'Decode this rot-13 text: "gur pynff"' -> "the class"  words (shift,
                   high- or low-probability plaintext; see :mod:`jaxlab.tasks.cipher`)
    doc_extract    document text -> one-line JSON record    fields, distractors, noise
    table_*        table questions (lookup, reverse_lookup, row, column, size, partition, merged); see
                   :mod:`jaxlab.tasks.documents`

The answer convention (every task): the response is the completion only, and its answer is
its last non-blank line (see :mod:`jaxlab.tasks.base`). Training text is ``prompt + answer``
followed by EOS. Verifiers treat responses as hostile input: bounded size, depth and number
magnitude, no ``eval``; a malformed answer scores 0 and never raises.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from jaxlab.tasks.arithmetic import Arithmetic
from jaxlab.tasks.base import MAX_RESPONSE_CHARS, Example, Task, TaskError, extract_answer
from jaxlab.tasks.characters import CharCount, CharLocate
from jaxlab.tasks.cipher import ShiftCipher
from jaxlab.tasks.countdown import Countdown
from jaxlab.tasks.counting import Count, MostFrequent
from jaxlab.tasks.documents import DOCUMENT_TASKS
from jaxlab.tasks.hanoi import Hanoi
from jaxlab.tasks.instructed import CardSum, InstructedArithmetic
from jaxlab.tasks.words import LastLetters, WordSort

TASKS: dict[str, Task] = {task.name: task for task in (
    Arithmetic(), Countdown(), Hanoi(), Count(), MostFrequent(), LastLetters(), WordSort(),
    InstructedArithmetic(), CardSum(), CharCount(), CharLocate(), ShiftCipher(), *DOCUMENT_TASKS)}


def get(name: str, **overrides) -> Task:
    """The task called ``name`` with its default settings, or with ``overrides`` of its fields
    (e.g. ``get("hanoi", train_difficulty=(1, 3))``). Raises :class:`TaskError` naming the
    known tasks or the task's fields."""
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    task = TASKS[name]
    if not overrides:
        return task
    fields = {f.name for f in dataclasses.fields(task)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TaskError(f"{name}: unknown field(s) {', '.join(unknown)}; fields: {', '.join(sorted(fields))}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(task, **overrides)


def verify(example, response) -> float:
    """Verifies ``response`` against an Example / meta dict / meta JSON of any task, dispatching
    on ``meta["task"]`` (a verifier depends only on the meta, not on generator settings)."""
    meta = example.meta if isinstance(example, Example) else example
    if isinstance(meta, (str, bytes)):
        meta = json.loads(meta)
    if not isinstance(meta, Mapping):
        raise TypeError(f"expected an Example, a meta dict or its JSON, got {type(example).__name__}")
    return get(meta.get("task")).verify(meta, response)


def prepare(name: str, data_dir, **kwargs):
    """Prepares (once) the tfds ``array_record`` splits of a task and returns its data sources;
    see :func:`jaxlab.tasks.tfds_tasks.prepare` (tensorflow-datasets is imported on first use)."""
    from jaxlab.tasks import tfds_tasks

    return tfds_tasks.prepare(name, data_dir, **kwargs)


__all__ = ["MAX_RESPONSE_CHARS", "TASKS", "Example", "Task", "TaskError", "extract_answer", "get",
           "prepare", "verify"]
