"""Drafts for speculative decoding, made from the target itself.

A draft must share the target's tokenizer and be much cheaper per token. Three steps, each a
small pure function (or a trainer call), composed by :func:`jaxlab.ttc.speculation.build_draft`:

1. ``prune_draft``: keep ``keep`` of the target's L layers, dropping the block of L - keep
   consecutive layers whose removal changes the residual stream least by angular distance
   (:mod:`jaxlab.analysis.layers`; "self-speculative" decoding with a layer-pruned copy);
2. ``distill_draft``: train the pruned copy on the target's own greedy responses with the
   target's token distributions as soft labels (``sft.loss=distill``), which heals what pruning
   broke where the draft will be used;
3. ``frequent_tokens``: the ``k`` most frequent token ids of that text (stop tokens always in),
   for :func:`jaxlab.samplers.speculative.restrict_head`: at batch 1 on a CPU a step reads every
   weight once, and the output head of a small model is a large share of them (SmolLM2-135M:
   49,152 x 576 of 135M), so a head over k << V tokens makes the draft step much cheaper. The
   target's distribution is still exact: q is 0 outside the k tokens and the acceptance rule
   accounts for it.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.analysis.layers import angular_distance_matrix, block_to_drop, drop_layers
from jaxlab.models import transformer


def prune_draft(params: dict, cfg: transformer.Config, prompts: Sequence[Sequence[int]], keep: int
                ) -> tuple[transformer.Config, dict, int]:
    """(draft cfg, draft params, first dropped layer): the target without the block of
    ``cfg.n_layers - keep`` layers l*(n) = argmin_l d(l, n), the angular distance measured at the
    last token of each prompt."""
    if not 1 <= keep < cfg.n_layers:
        raise ValueError(f"keep must be in [1, {cfg.n_layers - 1}], got {keep}")
    if not prompts:
        raise ValueError("prune_draft needs at least one prompt to measure the layers on")
    hidden = []
    fwd = jax.jit(lambda p, t: transformer.apply(p, t, cfg, return_hidden=True)[1][:, 0, -1])
    for prompt in prompts:
        hidden.append(fwd(params, jnp.asarray([list(prompt)], jnp.int32)))
    d_LL = angular_distance_matrix(jnp.stack(hidden, 1))
    n = cfg.n_layers - keep
    first = block_to_drop(d_LL, n)
    return dataclasses.replace(cfg, n_layers=keep), drop_layers(params, first, n), first


def frequent_tokens(token_lists: Sequence[Sequence[int]], k: int, *, always: Sequence[int] = ()) -> np.ndarray:
    """The ``k`` most frequent ids in ``token_lists`` (ties: the lower id first) plus ``always``,
    sorted ascending."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    counts = collections.Counter(int(t) for tokens in token_lists for t in tokens)
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    chosen = set(ranked[:k]) | {int(t) for t in always}
    if not chosen:
        raise ValueError("frequent_tokens: no tokens given")
    return np.array(sorted(chosen), np.int32)


def distill_draft(workdir: str | Path, target: tuple, draft: tuple, records: Sequence[dict], *, tokenizer,
                  steps: int, batch_size: int = 4, seq_len: int = 384, lr: float = 3e-4, seed: int = 0,
                  mesh=None, progress: bool = True):
    """The draft (cfg, params) after ``steps`` of ``sft.loss=distill`` on ``records`` (prompt and
    the target's response) with ``target = (cfg, params)`` as the teacher; resumable in
    ``workdir``. Returns the trainer's FitResult (its ``params`` are the draft's)."""
    from jaxlab.train import sharding as shd
    from jaxlab.train.fit import LoopConfig
    from jaxlab.train.optim import OptimConfig
    from jaxlab.train.sft import SFTConfig, train_sft

    draft_cfg, draft_params = draft
    if mesh is None:
        mesh = shd.make_mesh(shd.MeshConfig(data=1), jax.devices()[:1])
    sft = SFTConfig(loss="distill", batch_size=batch_size, seq_len=seq_len,
                    loop=LoopConfig(steps=steps, seed=seed, log_every=max(1, steps // 10), eval_every=10 ** 9,
                                    checkpoint_every=max(1, steps // 2)))
    return train_sft(workdir, list(records), model_cfg=draft_cfg, sft=sft, mesh=mesh, progress=progress,
                     optim=OptimConfig(lr=lr, warmup_steps=min(5, steps)), init_params=draft_params,
                     tokenizer=tokenizer, teacher=target)


VOCAB_FILE = "draft_vocab.json"


def save_draft(folder: str | Path, cfg: transformer.Config, params: dict, vocab_ids=None) -> Path:
    """A draft as a jaxlab model folder (:func:`jaxlab.interop.convert.save_jaxlab`, full head)
    plus ``draft_vocab.json``, the token ids of its restricted head (absent: the full head)."""
    import json

    from jaxlab.interop import convert

    folder = Path(folder)
    convert.save_jaxlab(folder, cfg, params)
    if vocab_ids is not None:
        (folder / VOCAB_FILE).write_text(json.dumps([int(t) for t in vocab_ids]) + "\n")
    return folder


def load_draft(folder: str | Path) -> tuple[transformer.Config, dict, np.ndarray | None]:
    """(cfg, params, vocab_ids or None) of :func:`save_draft`; with vocab ids the params' head is
    already restricted (:func:`~jaxlab.samplers.speculative.restrict_head`, cfg untied), ready
    for ``speculative_generate(..., draft_vocab=vocab_ids)``."""
    import json

    from jaxlab.interop import convert
    from jaxlab.samplers.speculative import restrict_head

    folder = Path(folder)
    cfg, params = convert.load_jaxlab(folder)
    vocab_path = folder / VOCAB_FILE
    if not vocab_path.is_file():
        return cfg, params, None
    try:
        vocab_ids = np.asarray(json.loads(vocab_path.read_text()), np.int32)
    except ValueError as e:
        raise ValueError(f"{vocab_path} is not a JSON list of token ids: {e}") from None
    params = restrict_head(params, cfg, vocab_ids)
    return dataclasses.replace(cfg, tie_embeddings=False), params, vocab_ids
