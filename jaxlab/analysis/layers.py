"""Which layers matter: the angular distance between a layer's input and the input n layers
later (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers").

    d(l, n) = (1 / pi) arccos( <x^l, x^(l+n)> / (|x^l| |x^(l+n)|) )

with x^l the residual stream entering layer l at the last token of a sequence (x^0 the
embeddings, x^L the output of the last layer), averaged over the data. Dropping the block of
layers l .. l + n - 1 changes the representation least where d(l, n) is smallest, so for each
n the layers to drop are l*(n) = argmin_l d(l, n).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def angular_distance_matrix(hidden_LBD) -> np.ndarray:
    """d [L, L] from the residual streams [L + 1, B, D] (x^0 .. x^L at the last token of B
    sequences): d[l, n - 1] = mean over B of d(l, n) for 1 <= n <= L - l, NaN elsewhere."""
    x = jnp.asarray(hidden_LBD, jnp.float32)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ValueError(f"need residual streams [L + 1, B, D] with L >= 1, got shape {x.shape}")
    unit = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-30)
    cos_LLB = jnp.einsum("ibd,jbd->ijb", unit, unit)
    d_LL = np.asarray(jnp.arccos(jnp.clip(cos_LLB, -1.0, 1.0)).mean(-1) / jnp.pi)  # [L+1, L+1]
    L = x.shape[0] - 1
    out = np.full((L, L), np.nan)
    for l in range(L):
        for n in range(1, L - l + 1):
            out[l, n - 1] = d_LL[l, l + n]
    return out


def block_to_drop(d_LL: np.ndarray, n: int) -> int:
    """l*(n) = argmin_l d(l, n): the first of the n consecutive layers to drop."""
    L = d_LL.shape[0]
    if not 1 <= n <= L:
        raise ValueError(f"n must be in [1, {L}], got {n}")
    return int(np.nanargmin(d_LL[: L - n + 1, n - 1]))


def drop_layers(params: dict, first: int, n: int) -> dict:
    """The params of the model without layers first .. first + n - 1 (stacked layers keep
    their leading [L] axis; the config's ``n_layers`` must be lowered by n to match)."""
    import jax

    L = jax.tree.leaves(params["layers"])[0].shape[0]
    if not (0 <= first and n >= 1 and first + n <= L and n < L):
        raise ValueError(f"cannot drop layers {first}..{first + n - 1} of {L}")
    keep = np.r_[0:first, first + n:L]
    return {**params, "layers": jax.tree.map(lambda w: w[keep], params["layers"])}
