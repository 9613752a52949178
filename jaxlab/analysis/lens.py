"""Reading a transformer's layers: the logit lens and super weights.

Logit lens (nostalgebraist 2020): unembed the residual stream after each layer through the
final norm, logits^l = unembed(norm(x^l)), and follow where the answer token ranks.

Super weights (Yu et al. 2024, "The Super Weight in Large Language Models"): a single scalar
of an MLP down projection W_down [F, D] whose product with one huge hidden activation makes a
spike in the residual stream. Data-free detection from one forward pass: in the layer whose
MLP output has the largest |value|, at the (token, output channel d*) of that spike, the input
channel is f* = argmax_f |hidden_f| of that token; the super weight is W_down[f*, d*].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.models import transformer
from jaxlab.nn.embed import unembed
from jaxlab.nn.norms import norm


def logit_lens(params: dict, cfg: transformer.Config, tokens_BT: jax.Array) -> jax.Array:
    """Log-probs [L + 1, B, T, V] of unembedding the stream before each layer and after the
    last (index 0: the embeddings; index L: the model's own output)."""
    _, hidden_LBTD = transformer.apply(params, tokens_BT, cfg, return_hidden=True)
    L1, B, T, D = hidden_LBTD.shape
    h = norm(params["final_norm"], hidden_LBTD.reshape(L1 * B, T, D), cfg.norm_type, cfg.norm_eps)
    unembed_params = params["embed"] if cfg.tie_embeddings else params["unembed"]
    logits = unembed(unembed_params, h, tied=cfg.tie_embeddings).astype(jnp.float32)
    return jax.nn.log_softmax(logits, axis=-1).reshape(L1, B, T, -1)


def answer_ranks(lens_LBTV: jax.Array, answer_B: jax.Array, position: int = -1) -> np.ndarray:
    """Rank (0 = top) of each row's answer token at ``position`` under every layer's lens [L+1, B]."""
    logp_LBV = lens_LBTV[:, :, position]
    answer = jnp.take_along_axis(logp_LBV, answer_B[None, :, None], axis=-1)
    return np.asarray(jnp.sum(logp_LBV > answer, axis=-1))


def plot_answer_ranks(ranks_LB: np.ndarray, path, labels=None) -> None:
    """Rank of the answer per layer (log scale), one line per row."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for b in range(ranks_LB.shape[1]):
        ax.plot(np.arange(ranks_LB.shape[0]), ranks_LB[:, b] + 1, marker="o", ms=3,
                label=None if labels is None else labels[b])
    ax.set_yscale("log")
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("rank of the answer + 1")
    ax.set_title("logit lens")
    if labels is not None:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def find_super_weight(params: dict, cfg: transformer.Config, tokens_BT: jax.Array) -> dict:
    """The super weight's (layer, row f*, column d*) and the spike (module docstring)."""
    _, seen = transformer.apply(params, tokens_BT, cfg, capture=("mlp_hidden", "mlp_out"))
    out = np.abs(np.asarray(seen["mlp_out"], np.float32))            # [L, B, T, D]
    layer, b, t, d = np.unravel_index(np.argmax(out), out.shape)
    hidden = np.abs(np.asarray(seen["mlp_hidden"], np.float32))[layer, b, t]
    f = int(np.argmax(hidden))
    return {"layer": int(layer), "row": f, "col": int(d), "token": int(t), "spike": float(out[layer, b, t, d]),
            "value": float(params["layers"]["mlp"]["down"]["kernel"][layer, f, d])}


def set_down_weight(params: dict, layer: int, row: int, col: int, value: float) -> dict:
    """The params with W_down[layer][row, col] = value (a pure edit: a new tree)."""
    down = params["layers"]["mlp"]["down"]["kernel"].at[layer, row, col].set(value)
    mlp = {**params["layers"]["mlp"], "down": {**params["layers"]["mlp"]["down"], "kernel": down}}
    return {**params, "layers": {**params["layers"], "mlp": mlp}}


def rtn_quantize(w, bits: int, block: int, *, keep=None) -> np.ndarray:
    """Round-to-nearest, absmax per block of ``block`` consecutive entries of each row:
    q = round(w / s) clipped to [-(2^(b-1) - 1), 2^(b-1) - 1], s = absmax / (2^(b-1) - 1).
    ``keep``: (row, col) entries held out (set to 0 before the absmax, restored after)."""
    w = np.asarray(w, np.float32)
    if w.shape[-1] % block:
        raise ValueError(f"the last axis ({w.shape[-1]}) must be a multiple of block={block}")
    held = w.copy()
    if keep:
        for r, c in keep:
            held[r, c] = 0.0
    levels = 2 ** (bits - 1) - 1
    blocks = held.reshape(*held.shape[:-1], -1, block)
    scale = np.abs(blocks).max(-1, keepdims=True) / levels
    q = np.clip(np.round(blocks / np.where(scale > 0, scale, 1.0)), -levels, levels) * scale
    out = q.reshape(w.shape)
    if keep:
        for r, c in keep:
            out[r, c] = w[r, c]
    return out


def _with_down(params: dict, down_LFD) -> dict:
    mlp = {**params["layers"]["mlp"], "down": {**params["layers"]["mlp"]["down"],
                                               "kernel": jnp.asarray(down_LFD, params["layers"]["mlp"]["down"]["kernel"].dtype)}}
    return {**params, "layers": {**params["layers"], "mlp": mlp}}


def zero_largest_down_weights(params: dict, k: int, *, exclude=()) -> dict:
    """The params with the ``k`` largest-|w| entries of all layers' W_down [L, F, D] set to 0,
    skipping the (layer, row, col) entries in ``exclude`` (the comparison arm of the super
    weight: as many large weights as you like, but not the super weight itself)."""
    down = np.array(params["layers"]["mlp"]["down"]["kernel"], np.float32)
    mag = np.abs(down)
    for l, r, c in exclude:
        mag[l, r, c] = -1.0
    if not 0 <= k <= mag.size - len(exclude):
        raise ValueError(f"k={k} must be in [0, {mag.size - len(exclude)}]")
    flat = np.argpartition(mag.reshape(-1), mag.size - k)[mag.size - k:] if k else np.array([], int)
    down.reshape(-1)[flat] = 0.0
    return _with_down(params, down)


def rtn_quantize_down(params: dict, bits: int, block: int, *, keep=()) -> dict:
    """The params with every layer's W_down [L, F, D] replaced by :func:`rtn_quantize` (blocks
    along D), holding out the (layer, row, col) entries in ``keep``."""
    down = np.array(params["layers"]["mlp"]["down"]["kernel"], np.float32)
    out = np.stack([rtn_quantize(down[l], bits, block, keep=[(r, c) for ll, r, c in keep if ll == l])
                    for l in range(down.shape[0])])
    return _with_down(params, out)
