"""Loss at several context lengths on the same scored tokens (length extrapolation).

A document's tokens are x_0 .. x_{n-1}. A window ends at input index e: for context length C it
feeds the inputs x_{e-C+1} .. x_e at positions 0 .. C-1 and predicts the targets
x_{e-C+2} .. x_{e+1}. Only the last K targets are scored,

    nll_C(e) = - 1/K * sum_{t = e-K+2}^{e+1} log p(x_t | x_{e-C+1} .. x_{t-1}),     K <= min C,

so every context length scores exactly the same K tokens of the same document and only the
context before them differs: nll_C(e) - nll_{C'}(e) measures what the longer context does,
not which text was drawn.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.models import transformer


def window_ends(n_tokens: int, max_context: int, max_windows: int) -> list[int]:
    """End indices e_k = (k + 1) * max_context - 1 of up to ``max_windows`` non-overlapping
    windows of ``max_context`` inputs over a document of ``n_tokens`` tokens, each with its
    next target inside the document (e_k + 1 <= n_tokens - 1). [] when none fits."""
    if max_context < 1 or max_windows < 0:
        raise ValueError(f"need max_context >= 1 and max_windows >= 0, got {max_context}, {max_windows}")
    count = min(max_windows, max(0, (n_tokens - 1) // max_context))
    return [(k + 1) * max_context - 1 for k in range(count)]


def suffix_windows(tokens_T: np.ndarray, ends_N, context: int) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs_NC, targets_NC)`` int32 with inputs_NC[i] = x[e_i - C + 1 : e_i + 1] and
    targets_NC[i] = x[e_i - C + 2 : e_i + 2] (C = ``context``, e_i = ``ends_N[i]``); raises
    ValueError when a window leaves the document."""
    x = np.asarray(tokens_T, np.int32)
    ends = np.asarray(ends_N, np.int64)
    if ends.size and (ends.min() - context + 1 < 0 or ends.max() + 1 >= len(x)):
        raise ValueError(f"a window of {context} inputs ending at {ends.tolist()} leaves the "
                         f"document of {len(x)} tokens")
    idx_NC = ends[:, None] + np.arange(-context + 1, 1)[None, :]
    return x[idx_NC], x[idx_NC + 1]


@functools.partial(jax.jit, static_argnames=("cfg", "n_scored"))
def suffix_nll_N(params, inputs_NC, targets_NC, cfg: transformer.Config, n_scored: int) -> jax.Array:
    """Mean next-token NLL (nats) of each row's last ``n_scored`` targets, [N] float32; the
    rows are single sequences at positions 0 .. C-1."""
    logits_NCV = transformer.apply(params, inputs_NC, cfg)
    logp_NKV = jax.nn.log_softmax(logits_NCV[:, -n_scored:].astype(jnp.float32), axis=-1)
    nll_NK = -jnp.take_along_axis(logp_NKV, targets_NC[:, -n_scored:, None], axis=-1)[..., 0]
    return jnp.mean(nll_NK, axis=1)
