"""Speculative sampling: the acceptance rule that keeps the target model's distribution.

A draft model proposes gamma tokens d_1..d_gamma from its distributions q_1..q_gamma; the
target scores the same positions in one pass, giving p_1..p_{gamma+1} (p_{gamma+1} the
distribution after the last draft token). Token i is accepted with probability

    a_i = min(1, p_i(d_i) / q_i(d_i))

(Leviathan et al. 2023; Chen et al. 2023). With n the number of draft tokens accepted before
the first rejection, the step emits d_1..d_n and then one more token:

    n < gamma:   t ~ norm(max(0, p_{n+1} - q_{n+1}))     (the residual distribution)
    n = gamma:   t ~ p_{gamma+1}                           (the bonus token)

so every emitted token follows the target's distribution exactly, whatever the draft. In
greedy mode a draft token is accepted iff it is the target's argmax, and t = argmax p_{n+1}:
the output is exactly the target's greedy output.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def accept_draft(p_BGV: jax.Array, q_BGV: jax.Array, draft_BG: jax.Array, key: jax.Array, *,
                 greedy: bool = False) -> tuple[jax.Array, jax.Array]:
    """One verification step (module docstring) for a batch.

    p_BGV: [B, gamma + 1, V] target probabilities at the gamma draft positions and after them.
    q_BGV: [B, gamma, V] draft probabilities the draft tokens were sampled from.
    draft_BG: [B, gamma] int draft tokens.
    Returns (n_accepted_B int32 in 0..gamma, next_token_B int32): row b emits
    draft_BG[b, :n] followed by next_token_B[b]."""
    B, G = draft_BG.shape
    if p_BGV.shape[:2] != (B, G + 1) or q_BGV.shape[:2] != (B, G) or p_BGV.shape[2] != q_BGV.shape[2]:
        raise ValueError(f"need p [B, gamma + 1, V] and q [B, gamma, V] for draft [B, gamma] = {draft_BG.shape}, "
                         f"got p {p_BGV.shape} and q {q_BGV.shape}")
    p_BGV = p_BGV.astype(jnp.float32)
    q_BGV = q_BGV.astype(jnp.float32)
    k_accept, k_next = jax.random.split(key)
    p_draft_BG = jnp.take_along_axis(p_BGV[:, :G], draft_BG[..., None], axis=-1)[..., 0]
    if greedy:
        accepted_BG = draft_BG == jnp.argmax(p_BGV[:, :G], axis=-1)
    else:
        q_draft_BG = jnp.take_along_axis(q_BGV, draft_BG[..., None], axis=-1)[..., 0]
        u_BG = jax.random.uniform(k_accept, (B, G))
        # u < p / q, written without the division (q(d) > 0 for a token the draft sampled)
        accepted_BG = u_BG * q_draft_BG < p_draft_BG
    n_B = jnp.sum(jnp.cumprod(accepted_BG.astype(jnp.int32), axis=1), axis=1)  # accepted prefix length
    p_next_BV = jnp.take_along_axis(p_BGV, n_B[:, None, None], axis=1)[:, 0]
    if greedy:
        return n_B.astype(jnp.int32), jnp.argmax(p_next_BV, axis=-1).astype(jnp.int32)
    q_pad_BGV = jnp.concatenate([q_BGV, jnp.zeros_like(q_BGV[:, :1])], axis=1)  # no residual after gamma
    q_next_BV = jnp.take_along_axis(q_pad_BGV, n_B[:, None, None], axis=1)[:, 0]
    residual_BV = jnp.maximum(p_next_BV - q_next_BV, 0.0)
    mass_B = residual_BV.sum(-1, keepdims=True)
    # p == q leaves no residual mass; that position is then accepted with probability 1 and
    # never reached, so any distribution will do: fall back to p.
    dist_BV = jnp.where(mass_B > 0, residual_BV / jnp.where(mass_B > 0, mass_B, 1.0), p_next_BV)
    next_B = jax.random.categorical(k_next, jnp.log(jnp.maximum(dist_BV, 1e-38)), axis=-1)
    next_B = jnp.where(dist_BV[jnp.arange(B), next_B] > 0, next_B, jnp.argmax(dist_BV, -1))
    return n_B.astype(jnp.int32), next_B.astype(jnp.int32)


def accept_bild(p_BGV: jax.Array, draft_BG: jax.Array, rollback: float) -> tuple[jax.Array, jax.Array]:
    """BiLD's rollback policy (Kim et al. 2023, "Speculative Decoding with Big Little Decoder"):
    draft token i is kept while the large model's cross-entropy of it stays small,

        keep_i = -log p_i(d_i) <= rollback        (p_i at temperature 1)

    and the round ends at the first token that fails it with the large model's own argmax:
    next = argmax p_{n+1}. Unlike :func:`accept_draft` this is approximate: a kept draft token
    need not be the large model's argmax, so the output can differ from its greedy output (the
    tolerance trades agreement for speed). Returns (n_accepted_B, next_token_B)."""
    B, G = draft_BG.shape
    if p_BGV.shape[:2] != (B, G + 1):
        raise ValueError(f"need p [B, gamma + 1, V] for draft [B, gamma] = {draft_BG.shape}, got {p_BGV.shape}")
    logp_BGV = jnp.log(jnp.maximum(p_BGV.astype(jnp.float32), 1e-38))
    nll_BG = -jnp.take_along_axis(logp_BGV[:, :G], draft_BG[..., None], axis=-1)[..., 0]
    n_B = jnp.sum(jnp.cumprod((nll_BG <= rollback).astype(jnp.int32), axis=1), axis=1)
    p_next_BV = jnp.take_along_axis(p_BGV, n_B[:, None, None], axis=1)[:, 0]
    return n_B.astype(jnp.int32), jnp.argmax(p_next_BV, axis=-1).astype(jnp.int32)


# ---------------------------------------------------------------- the decoding loop

DRAFT_LENGTHS = ("fixed", "svip", "bild")
ACCEPT_RULES = ("exact", "bild")


@dataclasses.dataclass(frozen=True)
class SpeculativeConfig:
    """How a round drafts and verifies (frozen, hashable).

    gamma: the most draft tokens per round (exactly gamma with ``length="fixed"``).
    length: when the draft stops drafting, looking at its distribution q_t for the next token:
      "fixed" never (gamma tokens);
      "svip" when SVIP's estimate of the acceptance rate falls below ``svip_min_accept``
        (Zhang et al. 2024, "Draft Model Knows When to Stop"): the acceptance rate is 1 - TVD(p, q),
        and SVIP bounds the TVD by an entropy term whose unknown cross-entropy it approximates by
        a constant times the draft's entropy, giving  est_t = 1 - sqrt(svip_c * H(q_t))
        (H in nats; the rule is an entropy threshold H(q_t) > (1 - svip_min_accept)^2 / svip_c);
      "bild" BiLD's fallback policy: stop when the draft's confidence max_v q_t(v) < ``fallback``.
      The token whose q_t stops the draft is not drafted (the target emits it), so a round can
      hold 0 draft tokens: one target step, as in plain decoding.
    accept: "exact" (:func:`accept_draft`: the output follows the target's distribution; at
      temperature 0 it is the target's greedy output) or "bild" (:func:`accept_bild` with
      ``rollback`` nats; temperature 0 only; approximate).
    temperature: 0 = greedy; otherwise both models sample from softmax(logits / temperature).
    max_new_tokens: tokens per row (the last round's extra tokens are cut).
    """
    gamma: int = 4
    length: str = "fixed"
    svip_c: float = 0.4
    svip_min_accept: float = 0.4
    fallback: float = 0.5
    accept: str = "exact"
    rollback: float = 2.0
    temperature: float = 0.0
    max_new_tokens: int = 64

    def __post_init__(self):
        if self.gamma < 1 or self.max_new_tokens < 1:
            raise ValueError(f"gamma and max_new_tokens must be >= 1, got {self.gamma}, {self.max_new_tokens}")
        if self.length not in DRAFT_LENGTHS:
            raise ValueError(f"speculative length {self.length!r} is not one of {DRAFT_LENGTHS}")
        if self.accept not in ACCEPT_RULES:
            raise ValueError(f"speculative accept {self.accept!r} is not one of {ACCEPT_RULES}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.accept == "bild" and self.temperature != 0:
            raise ValueError("accept='bild' is a greedy policy: set temperature=0")
        if self.svip_c <= 0 or not 0 <= self.svip_min_accept < 1 or not 0 <= self.fallback <= 1 \
                or self.rollback < 0:
            raise ValueError(f"need svip_c > 0, 0 <= svip_min_accept < 1, 0 <= fallback <= 1, rollback >= 0; "
                             f"got {self.svip_c}, {self.svip_min_accept}, {self.fallback}, {self.rollback}")

    def _only(self, *names: str) -> "SpeculativeConfig":
        """This config with every field but ``names`` at its default: the static argument of a
        compiled step that reads only those, so configs that differ elsewhere share it."""
        return SpeculativeConfig(**{n: getattr(self, n) for n in names})


def entropy(q_BV: jax.Array) -> jax.Array:
    """H(q) = -sum_v q(v) log q(v) in nats, per row [B]."""
    q_BV = q_BV.astype(jnp.float32)
    return -jnp.sum(jnp.where(q_BV > 0, q_BV * jnp.log(jnp.where(q_BV > 0, q_BV, 1.0)), 0.0), axis=-1)


def svip_estimate(q_BV: jax.Array, c: float) -> jax.Array:
    """SVIP's acceptance estimate before verification: 1 - sqrt(c * H(q)) per row [B]."""
    return 1.0 - jnp.sqrt(c * entropy(q_BV))


def draft_stops(q_BV: jax.Array, spec: SpeculativeConfig) -> jax.Array:
    """[B] bool: the draft stops before drafting from q (:class:`SpeculativeConfig` ``length``).
    SVIP and BiLD's fallback read the draft's own, untempered distribution q."""
    if spec.length == "svip":
        return svip_estimate(q_BV, spec.svip_c) < spec.svip_min_accept
    if spec.length == "bild":
        return jnp.max(q_BV, axis=-1) < spec.fallback
    return jnp.zeros(q_BV.shape[:1], bool)


def _distribution(logits_BV: jax.Array, temperature: float) -> jax.Array:
    """The distribution a model samples from: one-hot argmax (greedy) or softmax(logits / T)."""
    logits_BV = logits_BV.astype(jnp.float32)
    if temperature == 0.0:
        return jax.nn.one_hot(jnp.argmax(logits_BV, -1), logits_BV.shape[-1], dtype=jnp.float32)
    return jax.nn.softmax(logits_BV / temperature, axis=-1)


def _full_vocab(logits_BV: jax.Array, vocab_ids: jax.Array | None, vocab_size: int) -> jax.Array:
    """Draft logits over its head's token ids placed in the full vocabulary (-inf elsewhere)."""
    if vocab_ids is None:
        return logits_BV
    full = jnp.full((logits_BV.shape[0], vocab_size), -jnp.inf, jnp.float32)
    return full.at[:, vocab_ids].set(logits_BV.astype(jnp.float32))


@functools.partial(jax.jit, static_argnames=("cfg",))
def _prefill(params, tokens_BT, cache, mask_BT, *, cfg):
    from jaxlab.models import transformer

    return transformer.prefill(params, tokens_BT, cfg, cache, mask_BT=mask_BT, last_only=True)


@functools.partial(jax.jit, static_argnames=("cfg", "spec", "vocab_size"))
def _draft_step(params, tokens_BT, mask_BT, cache, key, vocab_ids, *, cfg, spec, vocab_size):
    """The draft reads tokens_BT where mask_BT is 1 (its last token is the one to continue) and
    proposes one token: (q_BV it was drawn from, token_B, stop_B, cache)."""
    from jaxlab.models import transformer

    logits_BTV, cache = transformer.prefill(params, tokens_BT, cfg, cache, mask_BT=mask_BT, last_only=True)
    logits_BV = _full_vocab(logits_BTV[:, -1], vocab_ids, vocab_size)
    q_BV = _distribution(logits_BV, spec.temperature)
    stop_B = draft_stops(jax.nn.softmax(logits_BV.astype(jnp.float32), -1), spec)
    if spec.temperature == 0.0:
        token_B = jnp.argmax(q_BV, -1)
    else:
        token_B = jax.random.categorical(key, jnp.log(jnp.maximum(q_BV, 1e-38)), axis=-1)
    return q_BV, token_B.astype(jnp.int32), stop_B, cache


@functools.partial(jax.jit, static_argnames=("cfg", "spec"))
def _verify(params, tokens_BK, q_BGV, cache, key, *, cfg, spec):
    """The target scores [pending, d_1..d_k] in one cached pass and decides: (n_B, next_B,
    cache). With k = 0 this is one plain decoding step."""
    from jaxlab.models import transformer

    logits_BKV, cache = transformer.prefill(params, tokens_BK, cfg, cache)
    drafts_BG = tokens_BK[:, 1:]
    if spec.accept == "bild":
        n_B, next_B = accept_bild(jax.nn.softmax(logits_BKV.astype(jnp.float32), -1), drafts_BG, spec.rollback)
    else:
        p_BKV = jax.vmap(functools.partial(_distribution, temperature=spec.temperature), 1, 1)(logits_BKV)
        n_B, next_B = accept_draft(p_BKV, q_BGV, drafts_BG, key, greedy=spec.temperature == 0.0)
    return n_B, next_B, cache


@dataclasses.dataclass(frozen=True)
class LookupDraft:
    """A draft without a model: prompt lookup (n-gram copying from the context). The longest
    suffix of the row's tokens (prompt and output so far), of ``max_ngram`` down to
    ``min_ngram`` tokens, that occurred earlier in them proposes the tokens that followed its
    latest earlier occurrence (:func:`lookup_proposal`). Its distribution q is one-hot on the
    proposal, so exact acceptance keeps the target's distribution (a token is kept with
    probability p(d); a rejection resamples from p without d). Pass it as ``draft_cfg`` with
    ``draft_params=None``. Free to run, and strong where outputs copy from the input (field
    extraction from a document)."""
    max_ngram: int = 3
    min_ngram: int = 1

    def __post_init__(self):
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {self.min_ngram}, {self.max_ngram}")


def lookup_proposal(context: Sequence[int], k: int, *, max_ngram: int = 3, min_ngram: int = 1) -> list[int]:
    """Up to ``k`` tokens that followed the latest earlier occurrence of the longest suffix
    (``max_ngram`` .. ``min_ngram`` tokens) of ``context``; [] when no suffix occurred before."""
    L = len(context)
    for n in range(min(max_ngram, L - 1), min_ngram - 1, -1):
        suffix = list(context[L - n:])
        for start in range(L - n - 1, -1, -1):  # latest occurrence first, not the suffix itself
            if list(context[start:start + n]) == suffix:
                return [int(t) for t in context[start + n:start + n + k]]
    return []


@jax.jit
def forget(cache: dict, start: jax.Array, keep_B: jax.Array, positions_B: jax.Array) -> dict:
    """A transformer KV cache whose row b forgets the slots from ``start + keep_B[b]`` up to its
    write index (segment id 0: never attended to again; the index stays, so the slots stay
    written) and counts ``positions_B[b]`` tokens. Rows of a batch keep different numbers of a
    round's tokens this way, without moving each other's slots."""
    slot_S = jnp.arange(cache["segment_ids"].shape[1])
    forget_BS = (slot_S[None] >= start + keep_B[:, None]) & (slot_S[None] < cache["index"])
    return {**cache, "positions": positions_B.astype(jnp.int32),
            "segment_ids": jnp.where(forget_BS, 0, cache["segment_ids"])}


def speculative_generate(target_params: dict, target_cfg, draft_params: dict, draft_cfg, prompts, *,
                         spec: SpeculativeConfig = SpeculativeConfig(), stop_tokens=(),
                         key: jax.Array | None = None, draft_vocab=None) -> dict:
    """Speculative decoding of a batch of prompts (module docstring, :class:`SpeculativeConfig`).

    Each round the draft proposes up to ``spec.gamma`` tokens one at a time (k for every row;
    the round stops drafting when the length rule stops any unfinished row) and the target
    scores the pending token and all of them in one pass over its KV cache. Each row then
    advances on its own, by its n accepted drafts and one corrected (or bonus) token, exactly
    as it would alone: with ``accept="exact"`` every row follows the target's distribution (at
    temperature 0 it is the target's greedy output). The rows share the caches' write index, so
    a row that kept fewer of the round's k + 1 slots forgets the rest (:func:`forget`: segment id
    0, its position count set back), and each round uses k + 1 slots whatever it kept. A row
    that accepted every draft token has the draft read that token at the start of the next
    round (a masked slot for the other rows).

    prompts: a list of token-id lists (any lengths; left-padded here). The draft is any
    transformer with the target's vocabulary, e.g. :func:`jaxlab.analysis.layers.drop_layers`
    of the target or a distilled small model (:mod:`jaxlab.samplers.draft`), or
    :class:`LookupDraft` (prompt lookup, no model: ``draft_params=None``); ``draft_vocab`` (token ids [V']) says its head
    covers only those tokens (logits [.., V'], see :func:`restrict_head`): q is 0 elsewhere.
    Rows stop at a stop token (included) or after ``spec.max_new_tokens``.

    Returns ``{"tokens": [list[int] per row], "target_calls", "draft_calls", "drafted": [k per
    round], "accepted": [[n per row] per round], "emitted": [[n + 1 per row] per round]}``.
    """
    from jaxlab.models import transformer

    lookup = isinstance(draft_cfg, LookupDraft)
    for name, cfg in (("target", target_cfg),) + ((("draft", draft_cfg),) if not lookup else ()):
        if getattr(cfg, "family", "transformer") != "transformer":
            raise ValueError(f"speculative decoding needs a transformer {name} (KV-cache rollback), "
                             f"got family {cfg.family!r}")
    vocab_ids = None
    if draft_vocab is not None:
        vocab_ids = jnp.asarray(token_ids(draft_vocab, target_cfg.vocab_size, "draft_vocab"), jnp.int32)
    if not lookup and target_cfg.vocab_size != draft_cfg.vocab_size:
        raise ValueError(f"the draft's vocabulary ({draft_cfg.vocab_size}) is not the target's "
                         f"({target_cfg.vocab_size})")
    prompts = [[int(t) for t in p] for p in prompts]
    if not prompts or min(len(p) for p in prompts) < 1:
        raise ValueError("speculative decoding needs at least one prompt, each non-empty")
    B, V, G = len(prompts), target_cfg.vocab_size, spec.gamma
    key = jax.random.key(0) if key is None else key
    T, slots = _cache_shape(max(len(p) for p in prompts), spec)
    t_cache = transformer.init_cache(target_cfg, B, slots)
    d_cache = None if lookup else transformer.init_cache(draft_cfg, B, slots)
    if T:
        head_BT = np.zeros((B, T), np.int32)
        mask_BT = np.zeros((B, T), np.int32)
        for b, p in enumerate(prompts):
            head_BT[b, T - len(p) + 1:] = p[:-1]
            mask_BT[b, T - len(p) + 1:] = 1
        _, t_cache = _prefill(target_params, jnp.asarray(head_BT), t_cache, jnp.asarray(mask_BT), cfg=target_cfg)
        if not lookup:
            _, d_cache = _prefill(draft_params, jnp.asarray(head_BT), d_cache, jnp.asarray(mask_BT), cfg=draft_cfg)
    pending_B = np.asarray([p[-1] for p in prompts], np.int32)
    unseen_B = np.zeros(B, np.int32)  # a row's last accepted draft token, not yet read by the draft
    need_B = np.zeros(B, bool)        # ... for the rows that accepted every draft token
    out = [[] for _ in range(B)]
    done = np.zeros(B, bool)
    stops = set(int(s) for s in stop_tokens)
    stats = {"target_calls": 0, "draft_calls": 0, "drafted": [], "accepted": [], "emitted": []}
    no_q = jnp.zeros((B, 0, V), jnp.float32)
    draft_spec, verify_spec = _step_specs(spec)
    while not done.all():
        key, k_draft, k_accept = jax.random.split(key, 3)
        t_start, t_positions0_B = t_cache["index"], t_cache["positions"]
        drafts, qs, fed = [], [], 0  # fed: draft steps this round (tokens read from pending on)
        if lookup:
            proposals = [lookup_proposal(prompts[b] + out[b], G, max_ngram=draft_cfg.max_ngram,
                                         min_ngram=draft_cfg.min_ngram) for b in range(B)]
            k = min(len(proposals[b]) for b in range(B) if not done[b])
            for i in range(k):
                token_B = jnp.asarray([p[i] if len(p) > i else 0 for p in proposals], jnp.int32)
                drafts.append(token_B)
                qs.append(jax.nn.one_hot(token_B, V, dtype=jnp.float32))
        else:
            if need_B.any():  # [the unseen token where a row has one (else a forgotten slot), pending]
                x_BT, m_BT = np.stack([unseen_B, pending_B], 1), np.stack([need_B, np.ones(B, bool)], 1)
            else:
                x_BT, m_BT = pending_B[:, None], np.ones((B, 1), bool)
            d_start = d_cache["index"] + x_BT.shape[1] - 1  # the draft's slot of the pending token
            d_positions0_B = d_cache["positions"] + need_B.astype(np.int32)  # its count before pending
            while len(drafts) < G:
                q_BV, token_B, stop_B, d_cache = _draft_step(
                    draft_params, jnp.asarray(x_BT, jnp.int32), jnp.asarray(m_BT, jnp.int32), d_cache,
                    jax.random.fold_in(k_draft, fed), vocab_ids, cfg=draft_cfg, spec=draft_spec, vocab_size=V)
                fed += 1
                if bool(np.asarray(stop_B)[~done].any()):
                    break
                drafts.append(token_B)
                qs.append(q_BV)
                x_BT, m_BT = np.asarray(token_B)[:, None], np.ones((B, 1), bool)
        stats["draft_calls"] += fed
        k = len(drafts)
        tokens_BK = jnp.concatenate([jnp.asarray(pending_B)[:, None]] + [d[:, None] for d in drafts], 1)
        q_BGV = jnp.stack(qs, 1) if qs else no_q
        n_B, next_B, t_cache = _verify(target_params, tokens_BK, q_BGV, t_cache, k_accept, cfg=target_cfg,
                                       spec=verify_spec)
        stats["target_calls"] += 1
        n_B, next_B = np.asarray(n_B), np.asarray(next_B)
        drafts_BK = np.asarray(tokens_BK)[:, 1:]
        stats["drafted"].append(k)
        stats["accepted"].append(n_B.tolist())
        stats["emitted"].append((n_B + 1).tolist())
        # each row keeps pending and its accepted drafts d_1 .. d_n; the draft read pending and
        # d_1 .. d_{fed - 1}, so a row that accepted all k = fed drafts still owes it d_k
        t_cache = forget(t_cache, t_start, jnp.asarray(n_B + 1), t_positions0_B + jnp.asarray(n_B + 1))
        if not lookup:
            keep_B = np.minimum(n_B + 1, fed)
            d_cache = forget(d_cache, d_start, jnp.asarray(keep_B), d_positions0_B + jnp.asarray(keep_B))
            need_B = keep_B < n_B + 1
            unseen_B = np.zeros(B, np.int32)
            if need_B.any():  # then every row drafted k = fed >= 1 tokens
                unseen_B = np.where(need_B, drafts_BK[np.arange(B), np.maximum(n_B - 1, 0)], 0).astype(np.int32)
        for b in range(B):
            for token in [*drafts_BK[b, :n_B[b]], next_B[b]]:
                if done[b]:
                    break
                out[b].append(int(token))
                done[b] = int(token) in stops or len(out[b]) >= spec.max_new_tokens
        pending_B = next_B.astype(np.int32)
    return {"tokens": out, **stats}


def _cache_shape(prompt_len: int, spec: SpeculativeConfig) -> tuple[int, int]:
    """(T, slots): the cached head, each row's prompt but its last token (pending) left-padded to
    a bucket of lengths (one compiled prefill per bucket, as in generate), and the cache size:
    a round writes up to gamma + 1 slots, whatever its rows keep."""
    from jaxlab.samplers.generate import prompt_bucket

    T = prompt_len - 1
    T = prompt_bucket(T) if T else 0
    # a round takes at most gamma + 1 slots of each cache and emits at least one token per row
    return T, T + spec.max_new_tokens * (spec.gamma + 1) + 2


def _step_specs(spec: SpeculativeConfig) -> tuple[SpeculativeConfig, SpeculativeConfig]:
    """The static configs of the draft step and of the verification (each keeps only what it reads)."""
    return (spec._only("length", "svip_c", "svip_min_accept", "fallback", "temperature"),
            spec._only("accept", "rollback", "temperature"))


def warm_up(target_params: dict, target_cfg, draft_params, draft_cfg, batch_size: int, prompt_len: int, *,
            spec: SpeculativeConfig = SpeculativeConfig(), draft_vocab=None) -> None:
    """Compiles every step :func:`speculative_generate` can run for ``batch_size`` prompts of at
    most ``prompt_len`` tokens (the same length bucket): the prefill, the verification for each
    draft count 0..gamma, the draft step reading 1 or 2 tokens, and :func:`forget`. How many tokens a round
    drafts depends on the data, so without this a timed call may compile a new shape."""
    from jaxlab.models import transformer

    lookup = isinstance(draft_cfg, LookupDraft)
    B, V = batch_size, target_cfg.vocab_size
    T, slots = _cache_shape(prompt_len, spec)
    draft_spec, verify_spec = _step_specs(spec)
    t_cache = transformer.init_cache(target_cfg, B, slots)
    tokens = lambda n: jnp.zeros((B, n), jnp.int32)  # noqa: E731
    if T:
        jax.block_until_ready(_prefill(target_params, tokens(T), t_cache, tokens(T), cfg=target_cfg))
    for k in range(spec.gamma + 1):
        *_, cache = _verify(target_params, tokens(k + 1), jnp.zeros((B, k, V), jnp.float32), t_cache,
                            jax.random.key(0), cfg=target_cfg, spec=verify_spec)
        # the loop forgets slots of caches that jitted steps returned (committed arrays)
        jax.block_until_ready(forget(cache, cache["index"] - 1, jnp.ones(B, jnp.int32), cache["positions"]))
    if lookup:
        return
    vocab_ids = None if draft_vocab is None else jnp.asarray(draft_vocab, jnp.int32)
    d_cache = transformer.init_cache(draft_cfg, B, slots)
    if T:
        jax.block_until_ready(_prefill(draft_params, tokens(T), d_cache, tokens(T), cfg=draft_cfg))
    for n in (1, 2):
        *_, cache = _draft_step(draft_params, tokens(n), tokens(n), d_cache, jax.random.key(0), vocab_ids,
                                cfg=draft_cfg, spec=draft_spec, vocab_size=V)
        jax.block_until_ready(forget(cache, cache["index"] - 1, jnp.ones(B, jnp.int32), cache["positions"]))


def token_ids(ids, vocab_size: int, what: str) -> np.ndarray:
    """``ids`` as a 1-D int array, or ValueError (naming ``what``) unless it is a non-empty list
    of ids in [0, vocab_size)."""
    arr = np.asarray(ids, np.int64)
    if arr.ndim != 1 or not len(arr) or arr.min() < 0 or arr.max() >= vocab_size:
        raise ValueError(f"{what} must be a non-empty list of token ids below {vocab_size}")
    return arr


def restrict_head(params: dict, cfg, ids) -> dict:
    """A draft whose output head covers only ``ids`` [V'] (e.g. the target's most frequent
    tokens): the unembedding's columns for those ids (the embedding when tied), so a draft step
    costs D * V' multiply-adds at the head instead of D * V. Use with ``speculative_generate(...,
    draft_vocab=ids)`` and ``dataclasses.replace(cfg, tie_embeddings=False)``."""
    ids = token_ids(ids, cfg.vocab_size, "ids")
    if cfg.tie_embeddings:
        kernel_DV = params["embed"]["embedding"].T
    else:
        kernel_DV = params["unembed"]["kernel"]
    return {**params, "unembed": {"kernel": kernel_DV[:, ids]}}
