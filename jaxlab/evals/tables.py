"""A chat model on the table-structure tasks (:mod:`jaxlab.tasks.documents.tables`): the same
problems in several serialisations, few-shot chat prompts, greedy answers scored by the tasks.

    problems = paired_problems("table_lookup", ("markdown", "html"), seed=0, n=20, difficulty=(1, 2))
    problems[i]["html"], problems[i]["markdown"]     one table and question, two serialisations
    shots = paired_problems(..., seed=0, n=2, difficulty=(1, 1), stream="shots")
    messages = table_messages(shots, problems[i], "html")    system + shots as chat turns + question

Pairing. Problem i of a task is drawn from the generator ``default_rng([seed, stream id,
stable_hash(task), i])`` once per serialisation, by the task restricted to that one
serialisation; the tasks draw the table, the question and any surrounding text before the
format (whose draw does not depend on which format), so every serialisation of problem i holds
the same table, question and answer. :func:`paired_problems` checks it (same answer, same meta
apart from ``format``) and raises otherwise.

Prompts (:data:`SYSTEM`): an instruction as the system message, then the shots as user /
assistant turns (prompt / bare reference answer), then the question; identical in every
serialisation except for the serialised tables. The answer format of the tasks is reachable
this way: the released SmolLM2-135M-Instruct answers a bare question in sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from jaxlab.data import chat as chat_lib
from jaxlab.evals.generation import complete
from jaxlab.samplers import SampleConfig
from jaxlab.tasks.base import Example, stable_hash
from jaxlab.tasks.documents.tables import FORMATS, TABLE_TASKS
from jaxlab.ttc.self_augment import direct_messages

TASKS = {cls.name: cls for cls in TABLE_TASKS}
STREAMS = ("test", "shots", "pilot")
SYSTEM = ("You read tables and answer questions about them. Reply with the answer only, on one line, "
          "in exactly the format the question asks for: no sentence, no explanation.")


def check_names(tasks: Sequence[str], formats: Sequence[str]) -> None:
    """Raises ValueError naming what exists when a task or serialisation name is unknown, or
    a task cannot be written in a serialisation (merged cells need HTML)."""
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise ValueError(f"unknown table task(s) {bad} (or none given); tasks: {', '.join(TASKS)}")
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"unknown serialisation(s) {bad} (or none given); serialisations: {', '.join(FORMATS)}")
    for t in tasks:
        missing = [f for f in formats if f not in TASKS[t].allowed_formats]
        if missing:
            raise ValueError(f"task {t!r} cannot be serialised as {missing} (it allows {TASKS[t].allowed_formats})")


def paired_problems(task: str, formats: Sequence[str], *, seed: int, n: int, difficulty: tuple[int, int],
                    stream: str = "test") -> list[dict[str, Example]]:
    """``n`` problems of ``task``, each as {format: Example} (module docstring). Problem i has
    difficulty low + i mod (high - low + 1)."""
    check_names([task], formats)
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
    low, high = difficulty
    tasks = {f: TASKS[task](formats=(f,)) for f in formats}
    out = []
    for i in range(int(n)):
        d = low + i % (high - low + 1)
        problem = {f: t.generate(np.random.default_rng([int(seed), STREAMS.index(stream), stable_hash(task), i]), d)
                   for f, t in tasks.items()}
        first = next(iter(problem.values()))
        strip = {k: v for k, v in first.meta.items() if k != "format"}
        for f, e in problem.items():
            if e.answer != first.answer or {k: v for k, v in e.meta.items() if k != "format"} != strip:
                raise AssertionError(f"{task} problem {i}: the {f} serialisation holds another problem")
        out.append(problem)
    return out


def table_messages(shots: Sequence[dict[str, Example]], problem: dict[str, Example], fmt: str,
                   system: str = SYSTEM) -> list[dict]:
    """The chat of one problem in serialisation ``fmt``: system, shots (prompt / answer), question."""
    return direct_messages(system, [(s[fmt].prompt, s[fmt].answer) for s in shots], problem[fmt].prompt)


def greedy_texts(model_cfg, params, tok, conversations: Sequence[list[dict]], *, max_new_tokens: int,
                 batch_size: int, progress: bool = False, desc: str = "generate") -> list[str]:
    """The greedy completion of each conversation (rendered by the tokenizer's chat template
    with the generation prompt). Rows are generated shortest prompt first (fewer padded
    columns per batch) and returned in the given order."""
    ids = [chat_lib.encode_prompt(list(c), tok) for c in conversations]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    texts, _ = complete(model_cfg, params, tok, [ids[i] for i in order], key=jax.random.key(0),
                        batch_size=batch_size, progress=progress, desc=desc,
                        sample_cfg=SampleConfig(max_new_tokens=max_new_tokens, temperature=0.0,
                                                stop_tokens=tuple(tok.eos_ids), pad_id=tok.pad_id))
    out = [""] * len(ids)
    for i, t in zip(order, texts, strict=True):
        out[i] = t
    return out


def score(task: str, examples: Sequence[Example], texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(correct, well_formed), int8 [P] each: the task's verify and format_reward of each text."""
    t = TASKS[task]()
    correct = np.array([t.verify(e, x) for e, x in zip(examples, texts, strict=True)], np.int8)
    formed = np.array([t.format_reward(x) for x in texts], np.int8)
    return correct, formed


TINY_RANDOM = "tiny-random"


def load(name: str, seed: int):
    """(model cfg, params, tokenizer): a registry model (:func:`jaxlab.interop.models.load_model`),
    or ``"tiny-random"``: a 1-layer byte-level transformer initialised from ``seed`` (the smoke
    presets: it exercises every step in seconds and answers nothing right)."""
    if name == TINY_RANDOM:
        from jaxlab.data.tokenizer import BYTES
        from jaxlab.models import transformer
        cfg = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                                 head_dim=16, mlp_dim=64)
        return cfg, transformer.init(cfg, jax.random.key(seed)), BYTES
    from jaxlab.interop.models import load_model
    return load_model(name)
