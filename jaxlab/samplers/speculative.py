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

import functools

import jax
import jax.numpy as jnp


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


# ---------------------------------------------------------------- the decoding loop

def rollback(cache: dict, length: int) -> dict:
    """A transformer KV cache cut back to its first ``length`` slots (every row holds the same
    number of real tokens): later slots are forgotten (segment id 0) and overwritten next."""
    keep_S = jnp.arange(cache["segment_ids"].shape[1]) < length
    return {**cache, "index": jnp.asarray(length, jnp.int32),
            "positions": jnp.full_like(cache["positions"], length),
            "segment_ids": cache["segment_ids"] * keep_S[None].astype(cache["segment_ids"].dtype)}


@functools.cache
def _jitted(fn):
    """``fn`` jitted with its config (third argument) static, compiled once per shape."""
    return jax.jit(fn, static_argnums=2)


def speculative_generate(target_params: dict, target_cfg, draft_params: dict, draft_cfg, prompt, *,
                         gamma: int = 4, max_new_tokens: int = 64, temperature: float = 0.0,
                         stop_tokens=(), key: jax.Array | None = None) -> dict:
    """Speculative decoding of one prompt (module docstring): each round the draft proposes
    ``gamma`` tokens one at a time and the target scores the pending token and all of them in
    one pass over its KV cache; both caches are rolled back past the rejected tokens.
    ``temperature=0`` is greedy (exactly the target's greedy output); otherwise both models
    sample from softmax(logits / temperature) and the output follows the target's
    distribution. The draft is any model with the target's vocabulary (e.g.
    :func:`jaxlab.analysis.layers.drop_layers` of the target).

    Returns ``{"tokens": list[int], "target_calls", "draft_calls", "accepted": [n per round]}``."""
    from jaxlab.models import transformer

    if gamma < 1 or max_new_tokens < 1:
        raise ValueError(f"gamma and max_new_tokens must be >= 1, got {gamma}, {max_new_tokens}")
    if target_cfg.vocab_size != draft_cfg.vocab_size:
        raise ValueError(f"the draft's vocabulary ({draft_cfg.vocab_size}) is not the target's "
                         f"({target_cfg.vocab_size})")
    prompt = [int(t) for t in prompt]
    if not prompt:
        raise ValueError("speculative decoding needs a non-empty prompt")
    greedy = temperature == 0.0
    key = jax.random.key(0) if key is None else key
    slots = len(prompt) + max_new_tokens + gamma + 2
    t_cache = transformer.init_cache(target_cfg, 1, slots)
    d_cache = transformer.init_cache(draft_cfg, 1, slots)

    def probs(logits_V):
        logits_V = logits_V.astype(jnp.float32)
        if greedy:
            return jax.nn.one_hot(jnp.argmax(logits_V, -1), logits_V.shape[-1])
        return jax.nn.softmax(logits_V / temperature, axis=-1)

    step_draft = _jitted(transformer.decode_step)
    prefill = _jitted(transformer.prefill)
    verify = lambda p, toks, c: prefill(p, toks, target_cfg, c)  # noqa: E731
    fill_draft = lambda p, toks, c: prefill(p, toks, draft_cfg, c)  # noqa: E731
    context = len(prompt) - 1  # tokens both caches hold; the last prompt token is pending
    if context:
        head = jnp.asarray([prompt[:-1]], jnp.int32)
        _, t_cache = verify(target_params, head, t_cache)
        _, d_cache = fill_draft(draft_params, head, d_cache)
    pending, out, accepted = prompt[-1], [], []
    target_calls, draft_calls = 0, 0
    stops = set(int(s) for s in stop_tokens)
    while len(out) < max_new_tokens:
        key, k_draft, k_accept = jax.random.split(key, 3)
        q_rows, drafts, x = [], [], pending
        for i in range(gamma):
            logits, d_cache = step_draft(draft_params, jnp.asarray([x], jnp.int32), draft_cfg, d_cache)
            draft_calls += 1
            q = probs(logits[0])
            x = int(jnp.argmax(q)) if greedy else int(jax.random.categorical(jax.random.fold_in(k_draft, i), jnp.log(q)))
            q_rows.append(q)
            drafts.append(x)
        logits_T, t_cache = verify(target_params, jnp.asarray([[pending] + drafts], jnp.int32), t_cache)
        target_calls += 1
        p = jax.vmap(probs)(logits_T[0])[None]
        n, nxt = accept_draft(p, jnp.stack(q_rows)[None], jnp.asarray([drafts], jnp.int32), k_accept, greedy=greedy)
        n, nxt = int(n[0]), int(nxt[0])
        accepted.append(n)
        new = drafts[:n] + [nxt]
        if n == gamma:  # the draft never saw its own last token
            _, d_cache = step_draft(draft_params, jnp.asarray([drafts[-1]], jnp.int32), draft_cfg, d_cache)
            draft_calls += 1
        context += 1 + n
        t_cache, d_cache = rollback(t_cache, context), rollback(d_cache, context)
        for token in new:
            out.append(token)
            if token in stops or len(out) >= max_new_tokens:
                return {"tokens": out, "target_calls": target_calls, "draft_calls": draft_calls, "accepted": accepted}
        pending = nxt
    return {"tokens": out, "target_calls": target_calls, "draft_calls": draft_calls, "accepted": accepted}
