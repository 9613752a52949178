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
