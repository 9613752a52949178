"""A recurrent layer with a dense, input-selected state transition (an Elman cell whose
transition matrix is chosen by the input token, the unfactored multiplicative RNN of Sutskever,
Martens and Hinton 2011), run over time with ``lax.scan``:

    h_0 = tanh(h_init),    h_t = tanh(U[x_t] h_{t-1} + b[x_t])

U [V, H, H], b [V, H], h_init [H]; x_t is a token in 0 .. V-1. Every state unit reads every
other one (U[x] is a full matrix, not the diagonal of a state-space model) and the map is
nonlinear, so it can hold the state of any finite automaton: with U[g] a permutation matrix
acting on a one-hot state, h_t tracks the running product of permutations (the word problems
of :mod:`jaxlab.data.groups`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def init_token_rnn(key: jax.Array, vocab_size: int, d_hidden: int) -> dict:
    """U[v] orthogonal for every token v, b = 0, h_init ~ N(0, 1)."""
    if vocab_size < 1 or d_hidden < 1:
        raise ValueError(f"need vocab_size >= 1 and d_hidden >= 1, got {vocab_size}, {d_hidden}")
    k_u, k_h = jax.random.split(key)
    orthogonal = jax.nn.initializers.orthogonal()
    return {"u": jax.vmap(lambda k: orthogonal(k, (d_hidden, d_hidden)))(jax.random.split(k_u, vocab_size)),
            "b": jnp.zeros((vocab_size, d_hidden)),
            "h_init": jax.random.normal(k_h, (d_hidden,))}


def token_rnn(params: dict, tokens_BT: jax.Array) -> jax.Array:
    """h_t for every t, [B, T, H], of token rows [B, T] (module docstring)."""
    if tokens_BT.ndim != 2:
        raise ValueError(f"tokens must be [B, T], got shape {tokens_BT.shape}")
    u_TBHH = params["u"][tokens_BT.T]   # one gather outside the loop (its gradient is one scatter)
    b_TBH = params["b"][tokens_BT.T]
    h0_BH = jnp.broadcast_to(jnp.tanh(params["h_init"]), (tokens_BT.shape[0], params["h_init"].shape[0]))

    def step(h_BH, xs):
        u_BHH, b_BH = xs
        h_BH = jnp.tanh(jnp.einsum("bij,bj->bi", u_BHH, h_BH) + b_BH)
        return h_BH, h_BH

    _, h_TBH = jax.lax.scan(step, h0_BH, (u_TBHH, b_TBH))
    return jnp.swapaxes(h_TBH, 0, 1)
