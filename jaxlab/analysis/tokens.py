"""Under-trained tokens (Land and Bartolo 2024, "Fishing for Magikarp"): tokens the model never
saw in training have unembedding rows that moved only with the shared, input-independent
component, so once that component is removed they sit close together.

    c          = the first principal component of the unembedding U [V, D] (rows centred)
    U'         = U - (U c) c^T                       (c's direction removed from every row)
    u_ref      = mean of U'_i over reference tokens i in S (known unused: e.g. unreachable bytes)
    score_i    = cos(U'_i, u_ref)
    candidates = tokens whose score is at or above the ``percentile`` of all scores (the paper
                 flags the closest few percent), reference tokens excluded

Candidates are then verified by prompting (:func:`repeat_probabilities`): a real under-trained
token gets near-zero probability even when the model is asked to repeat it. Reference tokens
come from the tokenizer (:func:`unreachable_ids`): tokens no text encodes to, such as the
lone continuation bytes of a byte-level BPE.
"""

from __future__ import annotations

import numpy as np

REPEAT_INSTRUCTION = "Repeat the string after 'String:' exactly."


def undertrained_scores(unembed_VD, reference_ids) -> np.ndarray:
    """score_i [V] (module docstring)."""
    u = np.asarray(unembed_VD, np.float64)
    ref = np.asarray(reference_ids, np.int64)
    if u.ndim != 2 or ref.size == 0:
        raise ValueError(f"need an unembedding [V, D] and at least one reference token, got {u.shape}, {ref.size}")
    centred = u - u.mean(0, keepdims=True)
    c = np.linalg.svd(centred, full_matrices=False)[2][0]
    removed = u - np.outer(u @ c, c)
    ref_mean = removed[ref].mean(0)
    norms = np.linalg.norm(removed, axis=1) * np.linalg.norm(ref_mean)
    return removed @ ref_mean / np.maximum(norms, 1e-30)


def undertrained_candidates(unembed_VD, reference_ids, percentile: float = 98.0) -> np.ndarray:
    """Token ids whose score is at or above the ``percentile`` of all scores, best first,
    reference tokens excluded."""
    scores = undertrained_scores(unembed_VD, reference_ids)
    cut = np.percentile(scores, percentile)
    ids = np.flatnonzero(scores >= cut)
    ids = ids[~np.isin(ids, np.asarray(reference_ids))]
    return ids[np.argsort(-scores[ids], kind="stable")]


def precision_recall(flagged, truth) -> tuple[float, float]:
    """Precision and recall of flagged ids against the true under-trained ids."""
    flagged, truth = set(map(int, flagged)), set(map(int, truth))
    hits = len(flagged & truth)
    return (hits / len(flagged) if flagged else 0.0, hits / len(truth) if truth else 0.0)


def unreachable_ids(tokenizer) -> np.ndarray:
    """Ids t whose text decode([t]) is non-empty but does not encode back to [t]: no input text
    produces them (special tokens, whose text decodes empty, are left out)."""
    out = []
    for t in range(tokenizer.vocab_size):
        text = tokenizer.decode(np.array([t], np.int32))
        if text and list(tokenizer.encode(text)) != [t]:
            out.append(t)
    return np.asarray(out, np.int64)


def repeat_rows(tokenizer, ids) -> list[list[np.ndarray]]:
    """For each token t, the prompts whose next token should be t (the token itself spliced in
    as an id, never as re-encoded text):

        chat     the instruction as a user turn, then the assistant's
                 'String: "' t '"\nRepeated: "'  -> t
        copy     t ' ' t ' ' t ' '                  -> t   (plain repetition, no instruction)
    """
    from jaxlab.data.chat import encode_prompt

    head = encode_prompt([{"role": "user", "content": REPEAT_INSTRUCTION}], tokenizer)
    before = np.asarray(tokenizer.encode('String: "'), np.int32)
    after = np.asarray(tokenizer.encode('"\nRepeated: "'), np.int32)
    space = np.asarray(tokenizer.encode(" "), np.int32)
    bos = np.asarray([tokenizer.bos_id] if tokenizer.bos_id is not None and tokenizer.add_bos else [], np.int32)
    rows = []
    for t in np.asarray(ids, np.int32).reshape(-1):
        one = np.asarray([t], np.int32)
        rows.append([np.concatenate([head, before, one, after]),
                     np.concatenate([bos] + [one, space] * 3)])
    return rows


def repeat_probabilities(params: dict, cfg, tokenizer, ids, *, batch_size: int = 32) -> np.ndarray:
    """p_max(t) [N]: the largest probability, over the prompts of :func:`repeat_rows`, that the
    model's next token is t. Batched, one compiled forward pass per batch shape."""
    import jax
    import jax.numpy as jnp

    from jaxlab.models import transformer

    ids = np.asarray(ids, np.int32).reshape(-1)
    if ids.size == 0:
        raise ValueError("repeat_probabilities needs at least one token id")
    prompts = [p for per_token in repeat_rows(tokenizer, ids) for p in per_token]
    per_token = len(prompts) // max(len(ids), 1)
    T = max(len(p) for p in prompts)
    apply = jax.jit(transformer.apply, static_argnums=2)
    probs = np.empty(len(prompts), np.float64)
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        rows_BT = np.full((batch_size, T), tokenizer.pad_id, np.int32)
        for b, p in enumerate(chunk):
            rows_BT[b, :len(p)] = p
        logits_BTV = apply(params, jnp.asarray(rows_BT), cfg)
        last_B = np.asarray([len(p) - 1 for p in chunk] + [0] * (batch_size - len(chunk)))
        p_BV = jax.nn.softmax(logits_BTV[jnp.arange(batch_size), last_B].astype(jnp.float32), -1)
        targets = [ids[(start + b) // per_token] for b in range(len(chunk))]
        probs[start:start + len(chunk)] = np.asarray(p_BV[jnp.arange(len(chunk)), jnp.asarray(targets)])
    return probs.reshape(len(ids), per_token).max(axis=1)
