"""Chat and instruction data for any tokenizer (:class:`jaxlab.data.tokenizer.Tokenizer`;
default: bytes): SFT examples with the prompt masked, and preference pairs whose two responses
share a prompt; both packable.

Format. An example is a token stream ``s = [BOS]? + body`` (BOS when ``tokenizer.add_bos``),
where the body is a sequence of prompt pieces (read, not trained) and response pieces
(trained), each response ending with what ends an assistant turn in the tokenizer's chat
template (the EOS id, or ChatML's "<|im_end|>"; trained: the model learns to stop). As in
:mod:`jaxlab.data.pipeline`, every input sits in one column with its target:

    inputs_T    = s[:-1]
    targets_T   = s[1:]       (= body with BOS)
    loss_mask_T = 1.0 where targets_T is a response token or the end of its turn, else 0.0

:func:`render_messages` is the one place that lays out a conversation (the template's
headers, suffixes, default system message and generation prompt; see
:mod:`jaxlab.data.tokenizer`). Under the byte tokenizer ("plain" template):

Records (plain dicts, e.g. items of a list or a random-access data source):

    {"prompt": str, "response": str}   body = prompt + response + [EOS]; the prompt carries
                                       whatever separator a task wants ("12+34=" -> "46")
                                       (ChatML: the prompt is one user message, then the
                                       generation prompt)
    {"messages": [{"role", "content"}, ...]}   roles "system", "user", "assistant":
        system / user:  "System: " / "User: " + content + "\\n"    (prompt)
        assistant:      "Assistant: " (prompt) + content + [EOS]   (response: every assistant
                                                                    turn is trained)
    {"prompt": str | messages, "chosen": str, "rejected": str}   a preference pair: the two
        examples prompt + chosen + [EOS] and prompt + rejected + [EOS]; a messages prompt is
        the history rendered as above followed by the generation prompt "Assistant: ".

:func:`encode_prompt` gives the tokens a model continues at generation time (the body up to
where a response starts). :func:`verification_record` writes the GenRM verification example
(problem + solution + "Is the answer correct? " -> "Yes" / "No").

Lengths. An example of n = len(body) tokens needs n <= seq_len columns. ``overflow="error"``
(the default) raises :class:`DataError`; ``overflow="truncate"`` keeps the first seq_len tokens
(the end of the response, EOS included, is lost), and still raises when no trained token is
left (the prompt alone fills the row). Examples are never split across rows. A packed pair
needs len(chosen) + len(rejected) <= seq_len; truncating keeps at most seq_len // 2 tokens of
each half.

Batches (dicts of numpy arrays; the keys of :data:`jaxlab.data.pipeline.BATCH_KEYS`, with
``mask`` the loss mask: 1 on trained targets of real tokens, 0 on prompts and padding):

    SFT, packed (:func:`sft_dataset`): [B, T] rows holding whole examples packed first-fit,
        segment_ids 1, 2, ... per example and 0 on padding, positions restarting at 0 at each
        example's BOS. The LM loss of the pipeline reads it unchanged.
    Preference, stacked (:func:`preference_batch`, ``preference_dataset(pairs_per_row=None)``):
        {"chosen": rows, "rejected": rows}, each [B, T] with one example per row; row b of both
        halves is pair b, so splitting both halves along B (micro-batches, devices) keeps
        pairs whole. :func:`jaxlab.losses.preference.stack_pairs` makes the [2B, T] input of
        one forward pass.
    Preference, packed (``preference_dataset(pairs_per_row=P)``): [B, T] rows, each holding up
        to P whole pairs: pair k of a row is segment 2k + 1 (chosen) followed by segment
        2k + 2 (rejected), each with its own BOS and positions from 0 (a pair never straddles
        rows). :func:`jaxlab.losses.preference.packed_pair_logprobs` reads the per-segment sums.

Datasets shard (``source[shard_index::shard_count]``), shuffle (a new order each epoch), repeat
and pack as :func:`jaxlab.data.pipeline.packed_lm_dataset` does; with ``repeat=False`` one pass
ends with a batch filled up by all-padding rows. Packing is grain's first-fit over
``batch_size`` open rows, deterministic for a given seed; iterator state is JSON data.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np

from jaxlab.data.corpus import DataError
from jaxlab.data.pipeline import (
    BATCH_KEYS,
    JsonStateIterDataset,
    check_positive,
    shard_records,
    default_read_options,
    finish_packed_row,
    pad_batch,
)
from jaxlab.data.tokenizer import BYTES, ROLES, Tokenizer

OVERFLOW = ("error", "truncate")
VERIFY_QUESTION = "Is the answer correct? "
YES, NO = "Yes", "No"


# ---------------------------------------------------------------- encoding

Piece = tuple[np.ndarray, bool]  # (ids, trained)


def _text(text: str | bytes, what: str) -> str:
    """``text`` as a str (bytes, e.g. from a tfds source, are decoded as UTF-8)."""
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise DataError(f"{what} must be a str, got {type(text).__name__}: {text!r:.80}")
    return text


def _ids(tok: Tokenizer, text: str) -> np.ndarray:
    return np.asarray(tok.encode(text), np.int32).reshape(-1)


def _check_messages(messages: Any) -> None:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise DataError(f"messages must be a non-empty list of {{'role', 'content'}} dicts, "
                        f"got {messages!r:.80}")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or m.get("role") not in ROLES or "content" not in m:
            raise DataError(f"message {i} must be a dict with 'role' in {ROLES} and 'content', "
                            f"got {m!r:.80}")


def turn_end(tok: Tokenizer) -> np.ndarray:
    """The ids that end an assistant turn (trained): [EOS id] or the template's end text."""
    template = tok.chat_template
    if template.end == "text":
        return _ids(tok, template.end_text)
    if tok.eos_id is None:
        raise DataError("the chat template ends assistant turns with EOS, but the tokenizer has "
                        "no EOS id")
    return np.asarray([tok.eos_id], np.int32)


def response_pieces(tok: Tokenizer, response: str | bytes, *, train: bool = True) -> list[Piece]:
    """An assistant turn after its header: content and turn end (trained if ``train``), then
    the template's text after the end (ChatML's newline; context)."""
    content = _ids(tok, _text(response, "response"))
    pieces = [(np.concatenate([content, turn_end(tok)]).astype(np.int32), train)]
    if tok.chat_template.after_end:
        pieces.append((_ids(tok, tok.chat_template.after_end), False))
    return pieces


def render_messages(messages: Sequence[Mapping[str, str]], tokenizer: Tokenizer = BYTES, *,
                    train: bool = True, add_generation_prompt: bool = False) -> list[Piece]:
    """The body pieces (ids, trained) of a conversation under the tokenizer's chat template:
    the default system message when the template has one and ``messages`` start without one,
    then each message; assistant contents and their turn ends are trained if ``train``.
    ``add_generation_prompt`` appends the assistant header a model continues."""
    _check_messages(messages)
    template = tokenizer.chat_template
    if template.default_system is not None and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": template.default_system}, *messages]
    pieces = []
    for i, m in enumerate(messages):
        content = _text(m["content"], f"message {i} content")
        header = template.header(m["role"])
        if m["role"] == "assistant":
            pieces.append((_ids(tokenizer, header), False))
            pieces += response_pieces(tokenizer, content, train=train)
        else:
            pieces.append((_ids(tokenizer, header + content + template.suffix), False))
    if add_generation_prompt:
        pieces.append((_ids(tokenizer, template.generation_prompt), False))
    return pieces


def _prompt_pieces(prompt: str | Sequence[Mapping[str, str]], tok: Tokenizer) -> list[Piece]:
    """Prompt pieces of the body (no BOS): the text as it is ("plain"), or as one user message
    (ChatML), or messages rendered, each followed by the generation prompt."""
    if isinstance(prompt, (str, bytes)):
        text = _text(prompt, "prompt")
        if not tok.chat_template.text_prompt_as_user:
            return [(_ids(tok, text), False)]
        prompt = [{"role": "user", "content": text}]
    elif not isinstance(prompt, Sequence):
        raise DataError(f"prompt must be a str or a list of messages, got "
                        f"{type(prompt).__name__}: {prompt!r:.80}")
    return render_messages(prompt, tok, train=False, add_generation_prompt=True)


def _bos(tok: Tokenizer) -> np.ndarray:
    if not tok.add_bos:
        return np.zeros(0, np.int32)
    if tok.bos_id is None:
        raise DataError("the tokenizer says sequences begin with BOS (add_bos) but has no BOS id")
    return np.asarray([tok.bos_id], np.int32)


def _example(pieces: Sequence[Piece], tok: Tokenizer) -> dict[str, np.ndarray]:
    """The stream s = [BOS]? + body as aligned inputs / targets / loss mask (module docstring)."""
    bos = _bos(tok)
    s_T = np.concatenate([bos] + [p for p, _ in pieces]).astype(np.int32)
    trained_T = np.concatenate([np.zeros(len(bos), np.float32)]
                               + [np.full(len(p), t, np.float32) for p, t in pieces])
    return {"inputs": s_T[:-1], "targets": s_T[1:], "loss_mask": trained_T[1:]}


def encode_example(prompt: str | Sequence[Mapping[str, str]], response: str,
                   tokenizer: Tokenizer = BYTES) -> dict[str, np.ndarray]:
    """One SFT example: body = prompt pieces + response + turn end. Returns ``inputs``,
    ``targets`` (int32) and ``loss_mask`` (float32, 1 on the response and its end), all of
    length len(s) - 1 (bytes: len(prompt bytes) + len(response bytes) + 1)."""
    return _example(_prompt_pieces(prompt, tokenizer) + response_pieces(tokenizer, response), tokenizer)


def encode_messages(messages: Sequence[Mapping[str, str]], tokenizer: Tokenizer = BYTES) -> dict[str, np.ndarray]:
    """One SFT example from a conversation; every assistant turn (content + end) is trained."""
    _check_messages(messages)
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError("messages have no 'assistant' turn: nothing to train on")
    return _example(render_messages(messages, tokenizer, train=True), tokenizer)


def encode_prompt(prompt: str | Sequence[Mapping[str, str]], tokenizer: Tokenizer = BYTES) -> np.ndarray:
    """The tokens a model continues to answer ``prompt``: [BOS]? + prompt pieces, int32 [T]
    (for messages, the history rendered with each assistant turn's end, then the
    generation prompt)."""
    pieces = _prompt_pieces(prompt, tokenizer)
    return np.concatenate([_bos(tokenizer)] + [p for p, _ in pieces]).astype(np.int32)


def encode_record(record: Mapping[str, Any], tokenizer: Tokenizer = BYTES) -> dict[str, np.ndarray]:
    """An SFT record, ``{"prompt", "response"}`` or ``{"messages"}``, as an example."""
    if not isinstance(record, Mapping):
        raise DataError(f"a record must be a dict, got {type(record).__name__}")
    if "messages" in record:
        return encode_messages(record["messages"], tokenizer)
    if "prompt" in record and "response" in record:
        return encode_example(record["prompt"], record["response"], tokenizer)
    raise DataError(f"an SFT record has keys ('prompt', 'response') or ('messages',), got "
                    f"{sorted(record)}")


def encode_pair(record: Mapping[str, Any], tokenizer: Tokenizer = BYTES
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A preference record ``{"prompt", "chosen", "rejected"}`` as (chosen, rejected) examples
    that share the prompt tokens (masked in both)."""
    if not isinstance(record, Mapping) or not {"prompt", "chosen", "rejected"} <= set(record):
        got = sorted(record) if isinstance(record, Mapping) else type(record).__name__
        raise DataError(f"a preference record has keys 'prompt', 'chosen', 'rejected', got {got}")
    return (encode_example(record["prompt"], record["chosen"], tokenizer),
            encode_example(record["prompt"], record["rejected"], tokenizer))


def verdict_ids(tokenizer: Tokenizer = BYTES) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The token ids of the verdicts "Yes" and "No" as a response is encoded (the word alone,
    without the end of the turn). Bytes: (89, 101, 115) and (78, 111)."""
    return (tuple(int(i) for i in _ids(tokenizer, YES)), tuple(int(i) for i in _ids(tokenizer, NO)))


def verification_record(problem: str, solution: str, correct: bool) -> dict[str, str]:
    """The GenRM verification example of a candidate solution: prompt = problem + solution +
    "\\n" + "Is the answer correct? ", response "Yes" if ``correct`` else "No"."""
    return {"prompt": f"{problem}{solution}\n{VERIFY_QUESTION}", "response": YES if correct else NO}


# ---------------------------------------------------------------- lengths and rows

def fit(example: Mapping[str, np.ndarray], max_len: int, overflow: str = "error") -> dict[str, np.ndarray]:
    """``example`` if it fits ``max_len`` tokens; else an error or, with
    ``overflow="truncate"``, its first ``max_len`` tokens (at least one trained)."""
    if overflow not in OVERFLOW:
        raise DataError(f"overflow={overflow!r} is not one of {OVERFLOW}")
    n = len(example["inputs"])
    if n <= max_len:
        return dict(example)
    n_prompt = int(np.argmax(example["loss_mask"] > 0))
    if overflow == "error":
        raise DataError(f"an example of {n} tokens ({n_prompt} prompt, {n - n_prompt} response "
                        f"incl. EOS) does not fit {max_len} tokens; raise seq_len or use "
                        f"overflow='truncate'")
    out = {k: v[:max_len] for k, v in example.items()}
    if not out["loss_mask"].any():
        raise DataError(f"truncating an example to {max_len} tokens leaves no response token "
                        f"(its prompt has {n_prompt} tokens)")
    return out


def example_row(example: Mapping[str, np.ndarray], seq_len: int, tokenizer: Tokenizer = BYTES
                ) -> dict[str, np.ndarray]:
    """One example as a right-padded row of ``seq_len`` columns with the batch keys
    (segment_ids 1 on its tokens, positions 0..n-1, mask = loss mask, inputs / targets the
    tokenizer's pad id past the end). It must fit."""
    n = len(example["inputs"])
    if n > seq_len:
        raise DataError(f"an example of {n} tokens does not fit a row of {seq_len}")
    pad = seq_len - n
    return {
        "inputs": np.pad(example["inputs"], (0, pad), constant_values=tokenizer.pad_id).astype(np.int32),
        "targets": np.pad(example["targets"], (0, pad), constant_values=tokenizer.pad_id).astype(np.int32),
        "segment_ids": np.pad(np.ones(n, np.int32), (0, pad)),
        "positions": np.pad(np.arange(n, dtype=np.int32), (0, pad)),
        "mask": np.pad(example["loss_mask"].astype(np.float32), (0, pad)),
    }


def pad_rows(examples: Sequence[Mapping[str, np.ndarray]], seq_len: int,
             tokenizer: Tokenizer = BYTES) -> dict[str, np.ndarray]:
    """Examples as [N, seq_len] rows, one per row (:func:`example_row`)."""
    rows = [example_row(e, seq_len, tokenizer) for e in examples]
    return {k: np.stack([r[k] for r in rows]) for k in BATCH_KEYS}


def _pair_rows(record: Mapping[str, Any], seq_len: int, overflow: str, tok: Tokenizer) -> dict:
    chosen, rejected = encode_pair(record, tok)
    return {"chosen": example_row(fit(chosen, seq_len, overflow), seq_len, tok),
            "rejected": example_row(fit(rejected, seq_len, overflow), seq_len, tok)}


def preference_batch(records: Sequence[Mapping[str, Any]], *, seq_len: int,
                     overflow: str = "error", tokenizer: Tokenizer = BYTES
                     ) -> dict[str, dict[str, np.ndarray]]:
    """The stacked layout of preference ``records``: {"chosen": [B, T] rows, "rejected":
    [B, T] rows}, row b of both halves from record b."""
    check_positive("seq_len", seq_len)
    pairs = [_pair_rows(r, seq_len, overflow, tokenizer) for r in records]
    if not pairs:
        raise DataError("preference_batch needs at least one record")
    return {half: {k: np.stack([p[half][k] for p in pairs]) for k in BATCH_KEYS}
            for half in ("chosen", "rejected")}


# ---------------------------------------------------------------- packing

def _packed_pair_element(record: Mapping[str, Any], seq_len: int, overflow: str,
                         tok: Tokenizer) -> dict:
    """A pair as one element to pack: its two examples back to back, with ``half`` (1 chosen,
    2 rejected) and each example's own positions ``pos``. Each half gets at most seq_len // 2
    tokens when truncating; the pair must fit one row."""
    chosen, rejected = encode_pair(record, tok)
    if overflow == "truncate":
        chosen, rejected = fit(chosen, seq_len // 2, overflow), fit(rejected, seq_len // 2, overflow)
    n_c, n_r = len(chosen["inputs"]), len(rejected["inputs"])
    if n_c + n_r > seq_len:
        raise DataError(f"a pair of {n_c} (chosen) + {n_r} (rejected) tokens does not fit a row "
                        f"of {seq_len}; raise seq_len or use overflow='truncate' (each half "
                        f"then keeps at most seq_len // 2 = {seq_len // 2} tokens)")
    out = {k: np.concatenate([chosen[k], rejected[k]]) for k in chosen}
    out["half"] = np.concatenate([np.full(n_c, 1, np.int32), np.full(n_r, 2, np.int32)])
    out["pos"] = np.concatenate([np.arange(n_c, dtype=np.int32), np.arange(n_r, dtype=np.int32)])
    return out


def finish_sft_row(row: Mapping[str, np.ndarray], pad_id: int = BYTES.pad_id) -> dict[str, np.ndarray]:
    """A first-fit packed row of examples -> the batch keys, ``mask`` = loss mask."""
    out = finish_packed_row(row, pad_id)
    out["mask"] = out["mask"] * np.asarray(row["loss_mask"], np.float32)
    return out


def finish_pair_row(row: Mapping[str, np.ndarray], pad_id: int = BYTES.pad_id) -> dict[str, np.ndarray]:
    """A first-fit packed row of pairs -> the batch keys: pair k (packed segment k + 1) becomes
    segments 2k + 1 (chosen) and 2k + 2 (rejected), positions restart in each."""
    out = finish_sft_row(row, pad_id)
    real_T = out["segment_ids"] > 0
    out["segment_ids"] = np.where(real_T, 2 * (out["segment_ids"] - 1) + row["half"], 0).astype(np.int32)
    out["positions"] = np.where(real_T, row["pos"], 0).astype(np.int32)
    return out


def _check_overflow(overflow: str) -> None:
    if overflow not in OVERFLOW:
        raise DataError(f"overflow={overflow!r} is not one of {OVERFLOW}")


def _pack(elements: grain.MapDataset, *, features: tuple[str, ...], seq_len: int, batch_size: int,
          per_row: int | None, finish, repeat: bool, read_options, pad_id: int) -> grain.IterDataset:
    rows = grain.experimental.FirstFitPackIterDataset(
        elements.to_iter_dataset(read_options or default_read_options()),
        length_struct={k: seq_len for k in features}, num_packing_bins=batch_size,
        shuffle_bins=False, max_sequences_per_bin=per_row,
    ).map(functools.partial(finish, pad_id=pad_id))
    batches = rows.batch(batch_size, drop_remainder=repeat)
    if not repeat:
        batches = batches.map(functools.partial(pad_batch, batch_size=batch_size, pad_id=pad_id))
    return JsonStateIterDataset(batches)


def sft_dataset(source: Sequence[Mapping[str, Any]], *, seq_len: int, batch_size: int,
                examples_per_row: int | None = None, shuffle: bool = True, seed: int = 0,
                shard_index: int = 0, shard_count: int = 1, repeat: bool = True,
                overflow: str = "error", name: str = "data source",
                read_options: grain.ReadOptions | None = None,
                tokenizer: Tokenizer = BYTES) -> grain.IterDataset:
    """Packed SFT batches (module docstring) of SFT records: each element is ``{inputs,
    targets, segment_ids, positions, mask}``, each [batch_size, seq_len], mask = loss mask.
    ``examples_per_row``: at most this many examples in a row (1 = unpacked; None = as many
    as fit)."""
    check_positive("seq_len", seq_len)
    check_positive("batch_size", batch_size)
    _check_overflow(overflow)
    if examples_per_row is not None:
        check_positive("examples_per_row", examples_per_row)
    records = shard_records(source, shuffle=shuffle, seed=seed, shard_index=shard_index,
                       shard_count=shard_count, repeat=repeat, name=name)
    elements = records.map(lambda r: fit(encode_record(r, tokenizer), seq_len, overflow))
    return _pack(elements, features=("inputs", "targets", "loss_mask"), seq_len=seq_len,
                 batch_size=batch_size, per_row=examples_per_row, finish=finish_sft_row,
                 repeat=repeat, read_options=read_options, pad_id=tokenizer.pad_id)


def preference_dataset(source: Sequence[Mapping[str, Any]], *, seq_len: int, batch_size: int,
                       pairs_per_row: int | None = None, shuffle: bool = True, seed: int = 0,
                       shard_index: int = 0, shard_count: int = 1, repeat: bool = True,
                       overflow: str = "error", name: str = "data source",
                       read_options: grain.ReadOptions | None = None,
                       tokenizer: Tokenizer = BYTES) -> grain.IterDataset:
    """Preference batches of ``{"prompt", "chosen", "rejected"}`` records (module docstring).

    ``pairs_per_row=None``: the stacked layout, ``{"chosen": rows, "rejected": rows}`` with
    ``batch_size`` pairs ([batch_size, seq_len] each half). ``pairs_per_row=P``: the packed
    layout, ``batch_size`` rows of up to P pairs each (pass the same P to
    :func:`jaxlab.losses.preference.packed_pair_logprobs`)."""
    check_positive("seq_len", seq_len)
    check_positive("batch_size", batch_size)
    _check_overflow(overflow)
    records = shard_records(source, shuffle=shuffle, seed=seed, shard_index=shard_index,
                       shard_count=shard_count, repeat=repeat, name=name)
    if pairs_per_row is None:
        batches = records.map(lambda r: _pair_rows(r, seq_len, overflow, tokenizer)).to_iter_dataset(
            read_options or default_read_options()).batch(batch_size, drop_remainder=repeat)
        if not repeat:
            batches = batches.map(lambda b: {h: pad_batch(b[h], batch_size, tokenizer.pad_id) for h in b})
        return JsonStateIterDataset(batches)
    check_positive("pairs_per_row", pairs_per_row)
    elements = records.map(lambda r: _packed_pair_element(r, seq_len, overflow, tokenizer))
    return _pack(elements, features=("inputs", "targets", "loss_mask", "half", "pos"),
                 seq_len=seq_len, batch_size=batch_size, per_row=pairs_per_row,
                 finish=finish_pair_row, repeat=repeat, read_options=read_options,
                 pad_id=tokenizer.pad_id)
