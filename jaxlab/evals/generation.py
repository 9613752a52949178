"""Completions of many prompts, in fixed-shape batches, through :func:`jaxlab.samplers.generate`.

    ids = encode_task_prompt(tokenizer, "cd 3 5 7 t 22:", chat=False)        int32 [T]
    texts, truncated = complete(cfg, params, tokenizer, [ids, ...], sample_cfg=..., key=...)

Shapes are kept few so the sampler compiles a handful of times, not once per batch: every
batch holds ``min(batch_size, number of prompts)`` rows (the last one is filled up by
repeating its first row, whose outputs are dropped); :func:`jaxlab.samplers.generate` itself
pads prompt lengths to its buckets.

Each row's text is the decoded completion without its stop token (the task convention:
the response is what the model wrote after the prompt). A row is ``truncated`` when it used
all ``max_new_tokens`` slots without emitting a stop token.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxlab.data import chat as chat_lib
from jaxlab.samplers import SampleConfig, generate, pad_prompts

def check_vocab(cfg, tokenizer) -> None:
    """Raises ValueError unless the model's vocabulary holds every id of the tokenizer (a
    model's vocabulary may be padded larger, never smaller)."""
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary "
                         f"only {cfg.vocab_size}: they do not belong together")


def prompts_as_chat(tokenizer) -> bool:
    """Whether task prompts go through the chat template by default: when the tokenizer's
    template makes a text prompt a user message (an instruction-tuned model's template, e.g.
    ChatML), not for the "plain" template of base and byte models."""
    return bool(tokenizer.chat_template.text_prompt_as_user)


def encode_task_prompt(tokenizer, prompt: str, *, chat: bool) -> np.ndarray:
    """The tokens a model continues to answer ``prompt``, int32 [T]: with ``chat``, the prompt
    as one user message rendered by the tokenizer's chat template followed by its generation
    prompt (:func:`jaxlab.data.chat.encode_prompt`); otherwise [BOS]? + the plain prompt text
    (BOS when ``tokenizer.add_bos``)."""
    if chat:
        return chat_lib.encode_prompt([{"role": "user", "content": prompt}], tokenizer)
    return np.asarray(tokenizer.encode(prompt, bos=tokenizer.add_bos), np.int32)


def _batch_arrays(rows: Sequence[np.ndarray], batch_size: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """[batch_size, T] left-padded tokens and mask (:func:`jaxlab.samplers.pad_prompts`);
    missing rows repeat the first row."""
    rows = list(rows) + [rows[0]] * (batch_size - len(rows))
    return pad_prompts(rows, pad_id)


def complete(cfg, params, tokenizer, prompts: Sequence[np.ndarray], *, sample_cfg: SampleConfig,
             key: jax.Array, batch_size: int = 32, progress: bool = True,
             desc: str = "generate", across_processes: bool = False) -> tuple[list[str], np.ndarray]:
    """One completion per prompt (repeat a prompt for several samples). Batch i draws with
    ``fold_in(key, i)``. Returns (texts, truncated_R bool) in prompt order.

    ``across_processes``: in a multi-process run (``params`` local to each process, e.g. loaded
    by each), process p of P completes batches p, p + P, p + 2P, ... and the texts are gathered,
    so every process returns what one process completing every batch would."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if len(prompts) == 0:
        return [], np.zeros((0,), bool)
    batch_size = min(batch_size, len(prompts))  # no filler rows for a short job
    stops = set(sample_cfg.stop_tokens)
    starts = list(enumerate(range(0, len(prompts), batch_size)))
    count = jax.process_count() if across_processes else 1
    if count > 1:
        starts = starts[jax.process_index()::count]
    done = []  # (batch index, texts, truncated) of the batches this process completed
    for i, start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        rows = prompts[start:start + batch_size]
        tokens_BT, mask_BT = _batch_arrays(rows, batch_size, sample_cfg.pad_id)
        out = jax.device_get(generate(params, cfg, jnp.asarray(tokens_BT), jnp.asarray(mask_BT),
                                      jax.random.fold_in(key, i), sample_cfg))
        tokens_BN, mask_BN = np.asarray(out.tokens), np.asarray(out.mask)
        texts, truncated = [], []
        for b in range(len(rows)):
            ids = tokens_BN[b][mask_BN[b] > 0]
            stopped = ids.size > 0 and int(ids[-1]) in stops
            texts.append(tokenizer.decode(ids[:-1] if stopped else ids))
            truncated.append(bool(not stopped and ids.size >= sample_cfg.max_new_tokens))
        done.append((i, texts, truncated))
    if count > 1:  # every process's batches, back in prompt order
        from jaxlab.train.distributed import allgather_json

        done = sorted((tuple(batch) for part in allgather_json(done) for batch in part), key=lambda d: d[0])
    return ([t for _, texts, _ in done for t in texts],
            np.asarray([x for _, _, truncated in done for x in truncated], bool))


def greedy_correct(model_cfg, params, tok, task, examples, *, max_new_tokens: int,
                   batch_size: int) -> np.ndarray:
    """1/0 per example: the greedy completion of its prompt (through the chat template when
    the tokenizer has one) verified by ``task``. int8 [P]."""
    chat = prompts_as_chat(tok)
    prompts = [encode_task_prompt(tok, e.prompt, chat=chat) for e in examples]
    texts, _ = complete(model_cfg, params, tok, prompts, key=jax.random.key(0), batch_size=batch_size,
                        progress=False, sample_cfg=SampleConfig(
                            max_new_tokens=max_new_tokens, temperature=0.0,
                            stop_tokens=tuple(tok.eos_ids), pad_id=tok.pad_id))
    return np.array([task.verify(e, t) for e, t in zip(examples, texts, strict=True)], np.int8)
