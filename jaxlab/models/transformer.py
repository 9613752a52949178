"""A Llama-style decoder LM as pure functions of a params pytree.

    x_0 = E[tokens]
    x_{l+1} = x_l' + mlp(norm(x_l')),   x_l' = x_l + attn(norm(x_l))      (pre-norm residual)
    logits = unembed(norm(x_L))

Layers are stacked on a leading L axis and run under ``lax.scan`` (one layer compiled once),
optionally rematerialised. ``init(cfg, key)``, ``apply(params, tokens, cfg)``; for generation
``init_cache``, ``prefill`` and ``decode_step`` share the same forward pass. Under a context
mesh the residual stream, attention heads, MLP hidden units and logits are constrained to
their logical shardings (:mod:`jaxlab.nn.partitioning`).

The KV cache is a dict: ``k``, ``v`` [L, B, S, K, Dh] (carried through the layer scan and
updated in place, one token's slots per layer and decode step); ``segment_ids`` [B, S] (1 for a written
token slot, 0 for padding and empty slots); ``positions`` [B], the next token's position in
each row; ``index``, the next slot to write (the same for all rows: prompts are left-padded,
which keeps distances between real tokens equal to slot distances).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp

from jaxlab.nn.attention import AttentionConfig, attention_block, init_attention, rope_for
from jaxlab.nn.embed import embed, init_embedding, unembed
from jaxlab.nn.linear import init_dense
from jaxlab.nn.mlp import MlpType, init_mlp, mlp_down, mlp_hidden
from jaxlab.nn.partitioning import constrain
from jaxlab.nn.norms import NormType, init_norm, norm
from jaxlab.nn.rope import RopeScaling

DType = Literal["float32", "bfloat16", "float16"]
AttentionKind = Literal["softmax", "softplus"]
Remat = Literal["none", "full", "dots"]

_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Decoder LM hyper-parameters (frozen, hashable: static under jit)."""

    vocab_size: int = 264
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 4
    head_dim: int = 64
    mlp_dim: int = 768
    mlp_type: MlpType = "swiglu"
    norm_type: NormType = "rms"
    norm_eps: float = 1e-6
    qk_norm: bool = False
    rope_base: float = 10000.0
    rope_fraction: float = 1.0  # share of each head's dims that is rotated; 0 = NoPE
    rope_scaling: RopeScaling = RopeScaling()  # context extension: none | linear | llama3
    causal: bool = True
    window: int | None = None  # sliding-window attention in every layer
    tie_embeddings: bool = True
    attention_bias: bool = False
    mlp_bias: bool = False
    param_dtype: DType = "float32"
    compute_dtype: DType = "float32"
    attention_impl: str = "auto"
    # "softplus": softplus attention with a log-length score scale (Gao & Spratling, 2025);
    # attention_reweight_power > 1 sharpens its weights (a^p / sum a^p), also at evaluation
    # time only, without retraining.
    attention_kind: AttentionKind = "softmax"
    attention_reweight_power: float = 1.0
    # The multiplier of attention's two products, q.k and probs.v: "exact" (the kernels), or
    # "lmul<m>" (L-Mul with m mantissa bits), "fp8_e4m3", "fp8_e5m2" through the explicit
    # attention path (jaxlab.nn.attention.explicit_attention; jaxlab.analysis.lmul).
    attention_products: str = "exact"
    remat: Remat = "none"
    scan_unroll: int = 1  # layers per scan iteration; n_layers unrolls the stack fully
    # A local Hugging Face model folder to start from (``jaxlab run``): its architecture and
    # weights replace this config's architecture and the random init, its tokenizer.json
    # (if present) replaces the byte tokenizer. The compute settings above stay the run's.
    hf_path: str | None = None
    family: Literal["transformer"] = "transformer"  # the model family (jaxlab.models.module)

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "mlp_dim",
                     "scan_unroll"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"model.n_heads ({self.n_heads}) must be a multiple of "
                             f"model.n_kv_heads ({self.n_kv_heads})")
        if not 0.0 <= self.rope_fraction <= 1.0:
            raise ValueError(f"model.rope_fraction must be in [0, 1], got {self.rope_fraction}")
        if self.attention_kind not in ("softmax", "softplus"):
            raise ValueError(f"model.attention_kind must be 'softmax' or 'softplus', got "
                             f"{self.attention_kind!r}")
        if self.attention_kind == "softmax" and self.attention_reweight_power != 1.0:
            raise ValueError("model.attention_reweight_power applies to attention_kind='softplus' "
                             f"only, got {self.attention_reweight_power}")
        if not self.attention_reweight_power >= 1.0:
            raise ValueError(f"model.attention_reweight_power must be >= 1, got "
                             f"{self.attention_reweight_power}")
        if self.attention_products != "exact":
            from jaxlab.analysis.lmul import check_products  # not at import: analysis imports this module
            try:
                check_products(self.attention_products)
            except ValueError as e:
                raise ValueError(f"model.attention_products: {e}") from None

    @property
    def attention(self) -> AttentionConfig:
        return AttentionConfig(
            d_model=self.d_model, n_heads=self.n_heads, n_kv_heads=self.n_kv_heads,
            head_dim=self.head_dim, qk_norm=self.qk_norm, norm_eps=self.norm_eps,
            rope_base=self.rope_base, rope_fraction=self.rope_fraction,
            rope_scaling=self.rope_scaling, causal=self.causal,
            window=self.window, bias=self.attention_bias, impl=self.attention_impl,
            kind=self.attention_kind, reweight_power=self.attention_reweight_power,
            products=self.attention_products)

    @property
    def dtype(self):
        return jnp.dtype(self.compute_dtype)


def _init_layer(key: jax.Array, cfg: Config) -> dict:
    k_attn, k_mlp = jax.random.split(key)
    dtype = jnp.dtype(cfg.param_dtype)
    out_scale = (2 * cfg.n_layers) ** -0.5
    return {
        "attn_norm": init_norm(cfg.d_model, cfg.norm_type, dtype),
        "attn": init_attention(k_attn, cfg.attention, dtype=dtype, out_scale=out_scale),
        "mlp_norm": init_norm(cfg.d_model, cfg.norm_type, dtype),
        "mlp": init_mlp(k_mlp, cfg.d_model, cfg.mlp_dim, dtype=dtype, bias=cfg.mlp_bias,
                        out_scale=out_scale, kind=cfg.mlp_type),
    }


def init_layers(cfg: Config, key: jax.Array) -> dict:
    """``cfg.n_layers`` blocks' params stacked on a leading [L] axis (``init(...)["layers"]``)."""
    return jax.vmap(lambda k: _init_layer(k, cfg))(jax.random.split(key, cfg.n_layers))


@functools.partial(jax.jit, static_argnums=0)
def init(cfg: Config, key: jax.Array) -> dict:
    """Params pytree; per-layer params are stacked on a leading [L] axis under ``layers``.

    Compiled as one program (eager op-by-op initialisation compiles each op separately)."""
    k_embed, k_layers, k_out = jax.random.split(key, 3)
    dtype = jnp.dtype(cfg.param_dtype)
    params = {
        "embed": init_embedding(k_embed, cfg.vocab_size, cfg.d_model, dtype),
        "layers": init_layers(cfg, k_layers),
        "final_norm": init_norm(cfg.d_model, cfg.norm_type, dtype),
    }
    if not cfg.tie_embeddings:
        params["unembed"] = init_dense(k_out, (cfg.d_model,), (cfg.vocab_size,), dtype=dtype)
    return params


# Logical axis names of every param, by path (the ``layers/`` prefix adds a leading "layers").
PARAM_AXES = {
    "embed/embedding": ("vocab", "embed"),
    "unembed/kernel": ("embed", "vocab"),
    "final_norm/scale": ("norm",),
    "final_norm/bias": ("norm",),
    "attn_norm/scale": ("norm",),
    "attn_norm/bias": ("norm",),
    "mlp_norm/scale": ("norm",),
    "mlp_norm/bias": ("norm",),
    "attn/q/kernel": ("embed", "heads", "head_dim"),
    "attn/q/bias": ("heads", "head_dim"),
    "attn/k/kernel": ("embed", "kv_heads", "head_dim"),
    "attn/k/bias": ("kv_heads", "head_dim"),
    "attn/v/kernel": ("embed", "kv_heads", "head_dim"),
    "attn/v/bias": ("kv_heads", "head_dim"),
    "attn/o/kernel": ("heads", "head_dim", "embed"),
    "attn/o/bias": ("embed",),
    "attn/q_norm/scale": ("head_dim",),
    "attn/k_norm/scale": ("head_dim",),
    "mlp/gate/kernel": ("embed", "mlp"),
    "mlp/gate/bias": ("mlp",),
    "mlp/up/kernel": ("embed", "mlp"),
    "mlp/up/bias": ("mlp",),
    "mlp/periodic/kernel": ("embed", "mlp"),  # mlp_type="fan"
    "mlp/plain/kernel": ("embed", "mlp"),
    "mlp/plain/bias": ("mlp",),
    "mlp/down/kernel": ("mlp", "embed"),
    "mlp/down/bias": ("embed",),
}


def param_axes(path: str) -> tuple[str, ...]:
    """Logical axis names of the param at ``path`` (e.g. ``layers/attn/q/kernel``)."""
    if path.startswith("layers/"):
        return ("layers",) + param_axes(path[len("layers/"):])
    if path not in PARAM_AXES:
        raise KeyError(f"no logical axes known for param {path!r}")
    return PARAM_AXES[path]


# What ``apply(capture=...)`` can read from every layer, each stacked on a leading [L] axis.
CAPTURE_POINTS = {
    "resid": "the residual stream entering the layer [L, B, T, D]",
    "attn_out": "the attention block's output added to the stream [L, B, T, D]",
    "attn_probs": ("the attention probabilities [L, B, H, T, S] (float32), masked keys 0: computed "
                   "by the explicit attention path (jaxlab.nn.attention.explicit_attention) when asked for; "
                   "the model has no score softcap"),
    "mlp_hidden": "the MLP hidden act(W_gate h) * W_up h, the down projection's input [L, B, T, F]",
    "mlp_out": "the MLP block's output added to the stream [L, B, T, D]",
}
# What ``apply(intervention=...)`` can change, each an array with a leading [L] axis.
INTERVENTIONS = {
    "head_scale": "[L, H]: multiplies each head's output before W_o (0 ablates the head)",
    "mlp_hidden_scale": "[L, F]: multiplies the MLP hidden units (0 ablates a unit)",
    "resid_add": "[L, D]: added to the residual stream entering the layer (steering)",
}


def _layer(cfg: Config, x_BTD, layer_params, cache_layer, *, rope, segment_ids_BT,
           cache_index, kv_segment_ids_BS, edit=None, capture=()):
    """One block; ``edit`` holds this layer's slice of the interventions, ``capture`` names
    the points to return (dict)."""
    edit = edit or {}
    if "resid_add" in edit:
        x_BTD = x_BTD + edit["resid_add"].astype(x_BTD.dtype)
    seen = {"resid": x_BTD}
    h_BTD = norm(layer_params["attn_norm"], x_BTD, cfg.norm_type, cfg.norm_eps)
    attn = attention_block(
        layer_params["attn"], h_BTD, cfg.attention, rope=rope,
        segment_ids_BT=segment_ids_BT, cache=cache_layer, cache_index=cache_index,
        kv_segment_ids_BS=kv_segment_ids_BS, head_scale_H=edit.get("head_scale"),
        return_probs="attn_probs" in capture)
    attn_BTD, new_cache = attn[:2]
    if "attn_probs" in capture:
        seen["attn_probs"] = attn[2]
    x_BTD = x_BTD + attn_BTD
    h_BTD = norm(layer_params["mlp_norm"], x_BTD, cfg.norm_type, cfg.norm_eps)
    hidden_BTF = constrain(mlp_hidden(layer_params["mlp"], h_BTD, cfg.mlp_type), "mlp_hidden")
    if "mlp_hidden_scale" in edit:
        hidden_BTF = hidden_BTF * edit["mlp_hidden_scale"].astype(hidden_BTF.dtype)
    mlp_BTD = mlp_down(layer_params["mlp"], hidden_BTF)
    seen.update(attn_out=attn_BTD, mlp_hidden=hidden_BTF, mlp_out=mlp_BTD)
    return x_BTD + mlp_BTD, new_cache, {name: seen[name] for name in capture}


def _check_edits(intervention: dict | None, capture: tuple, cfg: Config) -> None:
    for name in capture:
        if name not in CAPTURE_POINTS:
            raise ValueError(f"unknown capture point {name!r}; points are {sorted(CAPTURE_POINTS)}")
    widths = {"head_scale": cfg.n_heads, "mlp_hidden_scale": cfg.mlp_dim, "resid_add": cfg.d_model}
    for name, value in (intervention or {}).items():
        if name not in INTERVENTIONS:
            raise ValueError(f"unknown intervention {name!r}; interventions are {sorted(INTERVENTIONS)}")
        if tuple(value.shape) != (cfg.n_layers, widths[name]):
            raise ValueError(f"intervention {name!r} must be [L, {widths[name]}]="
                             f"{(cfg.n_layers, widths[name])}, got {tuple(value.shape)}")


def _scan_layers(layers: dict, x_BTD, cfg: Config, *, rope, segment_ids_BT, kv_cache=None, cache_index=0,
                 kv_segment_ids_BS=None, return_hidden=False, intervention=None, capture=()):
    """The block stack as one ``lax.scan`` over the stacked ``layers``; returns (x_BTD after the
    last block, new_kv_cache or None, hidden [L, B, T, D] after each block or None, captured).

    With ``kv_cache`` ({"k", "v": [L, B, S, K, Dh]}) the stacked cache rides in the scan's
    carry: layer l reads its slice and writes back only this call's T new slots,
    ``k[l, :, index:index+T] = k_new``, a ``dynamic_update_slice`` XLA performs in place (the
    cache is neither copied per layer nor re-stacked as a scan output). ``intervention``
    ({name: [L, ...]}, :data:`INTERVENTIONS`) is scanned with the layers, each layer taking
    its slice."""
    T = x_BTD.shape[1]
    edits = intervention or {}

    def body(carry, xs):
        x_BTD, kv = carry
        layer_params, l, edit = xs
        cache_layer = None if kv is None else {name: kv[name][l] for name in ("k", "v")}
        x_BTD, new_layer, seen = _layer(cfg, x_BTD, layer_params, cache_layer, rope=rope,
                                        segment_ids_BT=segment_ids_BT, cache_index=cache_index,
                                        kv_segment_ids_BS=kv_segment_ids_BS, edit=edit,
                                        capture=capture)
        x_BTD = constrain(x_BTD, "residual")
        if kv is not None:
            kv = {name: jax.lax.dynamic_update_slice(
                      kv[name],
                      jax.lax.dynamic_slice_in_dim(new_layer[name], cache_index, T, axis=1)[None],
                      (l, 0, cache_index, 0, 0))
                  for name in ("k", "v")}
        return (x_BTD, kv), (x_BTD if return_hidden else None, seen)

    if cfg.remat != "none":
        body = jax.checkpoint(body, policy=_REMAT_POLICIES[cfg.remat])
    n_layers = jax.tree.leaves(layers)[0].shape[0]
    (x_BTD, new_cache), (hidden_LBTD, captured) = jax.lax.scan(
        body, (x_BTD, kv_cache), (layers, jnp.arange(n_layers), edits), unroll=min(cfg.scan_unroll, n_layers))
    return x_BTD, new_cache, hidden_LBTD, captured


def _forward(params, tokens_BT, cfg: Config, *, positions_BT, segment_ids_BT, kv_cache=None,
             cache_index=0, kv_segment_ids_BS=None, return_hidden=False, last_only=False,
             intervention=None, capture=()):
    """Shared forward pass; returns (logits_BTV, new_kv_cache or None, hidden or None,
    captured {point: [L, ...]}). The layers run in :func:`_scan_layers`; ``last_only``
    unembeds the last position only (logits [B, 1, V])."""
    x0_BTD = constrain(embed(params["embed"], tokens_BT, cfg.dtype), "residual")
    x_BTD, new_cache, hidden_LBTD, captured = _scan_layers(
        params["layers"], x0_BTD, cfg, rope=rope_for(cfg.attention, positions_BT), segment_ids_BT=segment_ids_BT,
        kv_cache=kv_cache, cache_index=cache_index, kv_segment_ids_BS=kv_segment_ids_BS,
        return_hidden=return_hidden, intervention=intervention, capture=capture)
    if last_only:
        x_BTD = x_BTD[:, -1:]
    h_BTD = norm(params["final_norm"], x_BTD, cfg.norm_type, cfg.norm_eps)
    unembed_params = params["embed"] if cfg.tie_embeddings else params["unembed"]
    logits_BTV = constrain(unembed(unembed_params, h_BTD, tied=cfg.tie_embeddings), "logits")
    if return_hidden:
        hidden_LBTD = jnp.concatenate([x0_BTD[None], hidden_LBTD], axis=0)
    return logits_BTV, new_cache, hidden_LBTD, captured


def run_layers(layers: dict, x_BTD: jax.Array, cfg: Config, *, positions_BT: jax.Array,
               segment_ids_BT: jax.Array | None = None) -> jax.Array:
    """The residual stream after the stacked blocks ``layers`` (:func:`init_layers`) from the
    embeddings x [B, T, D] (no embedding, no final norm): the block stack of other models
    (:mod:`jaxlab.models.blt` runs its local and latent transformers with it)."""
    return _scan_layers(layers, x_BTD, cfg, rope=rope_for(cfg.attention, positions_BT),
                        segment_ids_BT=segment_ids_BT)[0]


def apply(params: dict, tokens_BT: jax.Array, cfg: Config, *, positions_BT: jax.Array | None = None,
          segment_ids_BT: jax.Array | None = None, return_hidden: bool = False,
          intervention: dict | None = None, capture: tuple[str, ...] = ()):
    """Logits [B, T, V] (float32) of a batch of token rows.

    Args:
      positions_BT: token positions for RoPE (default 0..T-1; packed rows restart per segment).
      segment_ids_BT: packed-sequence ids; tokens attend only within their segment (0 = pad).
      return_hidden: also return the residual stream before each layer and after the last,
        ``hidden_LBTD`` of shape [n_layers + 1, B, T, D] (before the final norm).
      intervention: {name: [L, ...]} edits of activations (:data:`INTERVENTIONS`): a pure
        argument, jit-able and batched like the tokens.
      capture: names of :data:`CAPTURE_POINTS` to return, as a dict of [L, ...] arrays.
    Returns logits, then hidden (with ``return_hidden``), then the captured dict (with
    ``capture``).
    """
    if tokens_BT.ndim != 2:
        raise ValueError(f"tokens must be [B, T], got shape {tokens_BT.shape}")
    capture = tuple(capture)
    _check_edits(intervention, capture, cfg)
    if positions_BT is None:
        positions_BT = jnp.broadcast_to(jnp.arange(tokens_BT.shape[1]), tokens_BT.shape)
    logits_BTV, _, hidden_LBTD, captured = _forward(
        params, tokens_BT, cfg, positions_BT=positions_BT, segment_ids_BT=segment_ids_BT,
        return_hidden=return_hidden, intervention=intervention, capture=capture)
    out = (logits_BTV,) + ((hidden_LBTD,) if return_hidden else ()) + ((captured,) if capture else ())
    return out if len(out) > 1 else logits_BTV


def init_cache(cfg: Config, batch_size: int, max_len: int, dtype=None) -> dict:
    """An empty KV cache for ``batch_size`` rows of up to ``max_len`` tokens.

    The caller sizes it: writing past ``max_len`` (more prefill + decode tokens than slots)
    is not detected inside jit and overwrites the last slots."""
    dtype = cfg.dtype if dtype is None else dtype
    shape = (cfg.n_layers, batch_size, max_len, cfg.n_kv_heads, cfg.head_dim)
    return {
        "k": jnp.zeros(shape, dtype),
        "v": jnp.zeros(shape, dtype),
        "segment_ids": jnp.zeros((batch_size, max_len), jnp.int32),
        "positions": jnp.zeros((batch_size,), jnp.int32),
        "index": jnp.zeros((), jnp.int32),
    }


# The row (batch) axis of each cache entry; None: shared by all rows.
CACHE_ROW_AXIS = {"k": 1, "v": 1, "segment_ids": 0, "positions": 0, "index": None}


def _cached_forward(params, tokens_BT, cfg, cache, mask_BT, last_only=False):
    """Feeds T tokens per row at cache slots [index, index + T); returns (logits, new cache).

    Positions continue each row's count of real tokens: p_bt = positions_b + (cumsum_t mask_bt) - 1
    (clipped at the row's start for left padding); padding slots get segment id 0 and are never
    attended to."""
    if tokens_BT.shape[1] > cache["k"].shape[2]:
        raise ValueError(f"{tokens_BT.shape[1]} tokens do not fit a KV cache of "
                         f"{cache['k'].shape[2]} slots")
    segment_ids_BT = mask_BT.astype(jnp.int32)
    positions_BT = cache["positions"][:, None] + jnp.maximum(jnp.cumsum(segment_ids_BT, axis=1) - 1, 0)
    index = cache["index"]
    kv_segment_ids_BS = jax.lax.dynamic_update_slice_in_dim(
        cache["segment_ids"], segment_ids_BT, index, axis=1)
    logits_BTV, kv, _, _ = _forward(
        params, tokens_BT, cfg, positions_BT=positions_BT, segment_ids_BT=segment_ids_BT,
        kv_cache={"k": cache["k"], "v": cache["v"]}, cache_index=index,
        kv_segment_ids_BS=kv_segment_ids_BS, last_only=last_only)
    new_cache = {
        "k": kv["k"], "v": kv["v"], "segment_ids": kv_segment_ids_BS,
        "positions": cache["positions"] + jnp.sum(segment_ids_BT, axis=1),
        "index": index + tokens_BT.shape[1],
    }
    return logits_BTV, new_cache


def prefill(params: dict, tokens_BT: jax.Array, cfg: Config, cache: dict, *,
            mask_BT: jax.Array | None = None, last_only: bool = False):
    """Runs the prompt through the model, filling the cache. Returns (logits_BTV, cache).

    ``mask_BT`` is 1 for real tokens and 0 for left padding (prompts of different lengths are
    left-padded to a common length); the logits of row b's last real token are at T - 1.
    ``last_only`` returns only those, logits [B, 1, V] (skips unembedding T - 1 positions).
    """
    if mask_BT is None:
        mask_BT = jnp.ones(tokens_BT.shape, jnp.int32)
    return _cached_forward(params, tokens_BT, cfg, cache, mask_BT, last_only=last_only)


def decode_step(params: dict, tokens_B: jax.Array, cfg: Config, cache: dict):
    """Feeds one token per row. Returns (logits_BV, cache)."""
    logits_B1V, cache = _cached_forward(params, tokens_B[:, None], cfg, cache,
                                        jnp.ones((tokens_B.shape[0], 1), jnp.int32))
    return logits_B1V[:, 0], cache


def count_params(params: dict) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
