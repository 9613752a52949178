"""Self-augmented prompting (Sui et al. 2024, "Table Meets LLM", section 4): two calls to the
model per question instead of one.

    stage 1   the model is asked to describe the context's structure (for a table: its size,
              headers and critical values):      describe_messages(system, context) -> d
    stage 2   the description goes back into the conversation as the model's own answer, and
              the question follows:                augmented_messages(system, shots, context, d, question)

against direct prompting, one call:                direct_messages(system, shots, prompt)

A prompt of the task convention is ``context + "\\n\\n" + question`` (the question is what
follows the last blank line: :func:`split_question`). Few-shot examples are chat turns before
the question: ``shots`` of :func:`direct_messages` are (prompt, answer) pairs; those of
:func:`augmented_messages` are :class:`AugmentedShot` (context, the model's own stage-1
description of it, question, answer), so both arms see the same examples and the augmented arm
sees each example the way it sees the question.

Everything here builds messages (``[{"role", "content"}, ...]``, rendered by
:func:`jaxlab.data.chat.encode_prompt` under any chat template); :func:`self_augment` runs the
two stages through any batch completion function, so the method is tested without a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

DESCRIBE_REQUEST = ("Before any question, describe the structure of the table above in a few short "
                    "lines: how many data rows and columns it has, its column headers, and its "
                    "critical values (first and last cells, numbers and their ranges).")


@dataclasses.dataclass(frozen=True)
class AugmentedShot:
    """A few-shot example of the augmented arm: its ``context`` (e.g. the serialised table),
    the model's stage-1 ``description`` of it, the ``question`` and the reference ``answer``."""

    context: str
    description: str
    question: str
    answer: str


def split_question(prompt: str) -> tuple[str, str]:
    """(context, question) of a prompt: the text before and after its last blank line
    ("\\n\\n"). Raises ValueError when there is no blank line or either part is blank."""
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt must be a str, got {type(prompt).__name__}")
    context, sep, question = prompt.rpartition("\n\n")
    if not sep or not context.strip() or not question.strip():
        raise ValueError(f"a prompt needs a context and a question separated by a blank line, got {prompt!r:.120}")
    return context, question


def _system(system: str | None) -> list[dict]:
    return [] if system is None else [{"role": "system", "content": system}]


def direct_messages(system: str | None, shots: Sequence[tuple[str, str]], prompt: str) -> list[dict]:
    """Direct prompting: [system], then user shot prompt / assistant shot answer for each shot,
    then the user ``prompt``."""
    messages = _system(system)
    for shot_prompt, shot_answer in shots:
        messages += [{"role": "user", "content": shot_prompt}, {"role": "assistant", "content": shot_answer}]
    return messages + [{"role": "user", "content": prompt}]


def describe_request(context: str) -> str:
    """The stage-1 user turn: the context, a blank line, :data:`DESCRIBE_REQUEST`."""
    return f"{context}\n\n{DESCRIBE_REQUEST}"


def describe_messages(system: str | None, context: str) -> list[dict]:
    """Stage 1 (zero-shot): [system], user :func:`describe_request` (context)."""
    return _system(system) + [{"role": "user", "content": describe_request(context)}]


def augmented_messages(system: str | None, shots: Sequence[AugmentedShot], context: str, description: str,
                       question: str) -> list[dict]:
    """Stage 2: [system]; for each shot and then for the question itself, the turns
    user describe_request(context) / assistant description / user question, each shot's
    followed by assistant answer."""
    messages = _system(system)
    for s in shots:
        messages += [{"role": "user", "content": describe_request(s.context)},
                     {"role": "assistant", "content": s.description},
                     {"role": "user", "content": s.question}, {"role": "assistant", "content": s.answer}]
    return messages + [{"role": "user", "content": describe_request(context)},
                       {"role": "assistant", "content": description},
                       {"role": "user", "content": question}]


def self_augment(complete: Callable[[list[list[dict]], str], list[str]], system: str | None,
                 problems: Sequence[tuple[Sequence[tuple[str, str]], str]]) -> dict:
    """Both stages over a batch of ``problems``, each (shots, prompt) with shots the
    (prompt, answer) pairs the direct arm would get. ``complete(conversations, stage)`` maps a
    list of conversations to one completion each (greedy decoding in practice; ``stage`` is
    "describe" or "answer", e.g. for their token budgets). Stage 1 describes every distinct
    shot context and every prompt's context (zero-shot, one call); stage 2 asks every question
    with the shots as :class:`AugmentedShot` (one call). Returns ``{"descriptions" (per
    problem), "shot_descriptions" ({shot context: description}), "messages" (stage 2),
    "responses"}``, in problem order."""
    parts = [split_question(prompt) for _, prompt in problems]
    shot_contexts = list(dict.fromkeys(split_question(p)[0] for shots, _ in problems for p, _ in shots))
    contexts = shot_contexts + [c for c, _ in parts]
    described = list(complete([describe_messages(system, c) for c in contexts], "describe"))
    if len(described) != len(contexts):
        raise ValueError(f"complete returned {len(described)} texts for {len(contexts)} conversations")
    shot_desc = dict(zip(shot_contexts, described[:len(shot_contexts)]))
    desc = described[len(shot_contexts):]
    messages = []
    for (shots, _), (context, question), d in zip(problems, parts, desc):
        aug = [AugmentedShot(c, shot_desc[c], q, a) for (c, q), (_, a) in
               zip((split_question(p) for p, _ in shots), shots)]
        messages.append(augmented_messages(system, aug, context, d, question))
    responses = list(complete(messages, "answer")) if messages else []
    if len(responses) != len(messages):
        raise ValueError(f"complete returned {len(responses)} texts for {len(messages)} conversations")
    return {"descriptions": desc, "shot_descriptions": shot_desc, "messages": messages, "responses": responses}
