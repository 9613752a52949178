"""A ModernBERT-style bidirectional encoder as pure functions of a params pytree.

    x_0 = LayerNorm_emb(E[tokens])                                       (embedding norm)
    x_l' = x_l + attn_l(n_l(x_l)),   n_0 = identity, n_l = LayerNorm for l > 0
    x_{l+1} = x_l' + W_down(gelu(W_gate m) * (W_up m)),   m = LayerNorm(x_l')   (GeGLU)
    h = LayerNorm_final(x_L)

Pre-norm LayerNorms (no bias unless ``norm_bias``), no biases in the linear layers, and no
attention norm in layer 0 (the embedding norm precedes it), as in ModernBERT. Attention is
bidirectional; layer l is *global* when ``layer_types[l] == "global"`` (default: l %
``global_every`` == 0, every third layer from the first) and *local* otherwise: query t sees key
s only when |t - s| <= ``local_window`` // 2 (ModernBERT's symmetric window; the attention
dispatcher's non-causal window w keeps |t - s| < w, so local layers pass w = local_window // 2 + 1).
Global and local layers rotate q and k with RoPE of different bases (``global_rope_base``,
``local_rope_base``). Layers are stacked on a leading L axis and run under ``lax.scan``; a
layer picks its attention with ``lax.cond`` on its type (only the chosen branch runs).

Packed (unpadded) rows: ``segment_ids_BT`` marks which sequence each token belongs to (0 =
padding); tokens attend only within their segment and positions restart at 0 in each segment
(:func:`segment_positions`). A row of one sequence with padding is the special case of ids 1/0.

Heads:
    mlm_logits       h -> LayerNorm(act(h W_d [+ b_d])) E^T + b       (tied decoder with bias)
    token_logits     h -> LayerNorm(act(h W_d [+ b_d])) W_c + b_c      (per token)
    sequence_logits  pool(h) -> the same head and classifier        (pool: first token or mean)

``act`` is ``head_activation`` (exact GELU by default). Params:

    embed/embedding [V, D], embed_norm/{scale, bias?} [D], final_norm/{scale, bias?} [D]
    layers/{attn_norm, mlp_norm}/{scale, bias?} [L, D]   (layer 0's attn_norm is unused)
    layers/attn/{q, k, v}/kernel [L, D, H, Dh], layers/attn/o/kernel [L, H, Dh, D]
    layers/mlp/{gate, up}/kernel [L, D, F], layers/mlp/down/kernel [L, F, D]
    mlm/dense/{kernel [D, D], bias?}, mlm/norm/{scale, bias?}, mlm/bias [V]      (:func:`init`)
    classifier/dense, classifier/norm, classifier/out/{kernel [D, N], bias [N]}  (:func:`init_classifier`)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp

from jaxlab.models import transformer
from jaxlab.nn.attention import AttentionConfig, attention_block, init_attention, rope_for
from jaxlab.nn.embed import embed, init_embedding, unembed
from jaxlab.nn.linear import dense, init_dense
from jaxlab.nn.mlp import MlpType, init_mlp, mlp
from jaxlab.nn.norms import init_norm, layer_norm

DType = Literal["float32", "bfloat16", "float16"]
LAYER_TYPES = ("global", "local")
HEAD_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
}
POOLINGS = ("cls", "mean")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Encoder hyper-parameters (frozen, hashable: static under jit); module docstring."""

    vocab_size: int = 512
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    head_dim: int = 32
    mlp_dim: int = 256
    mlp_type: MlpType = "geglu_exact"
    norm_eps: float = 1e-5
    norm_bias: bool = False
    global_every: int = 3
    layer_types: tuple[str, ...] | None = None  # "global" | "local" per layer; None: from global_every
    local_window: int = 128  # total local window: |t - s| <= local_window // 2
    global_rope_base: float = 160_000.0
    local_rope_base: float = 10_000.0
    head_activation: str = "gelu"
    head_bias: bool = False  # bias of the heads' dense layer (ModernBERT's classifier_bias)
    decoder_bias: bool = True  # bias of the tied MLM decoder
    pooling: Literal["cls", "mean"] = "cls"  # sequence classification
    param_dtype: DType = "float32"
    compute_dtype: DType = "float32"
    attention_impl: str = "auto"

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "head_dim", "mlp_dim", "global_every",
                     "local_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"encoder.{name} must be >= 1, got {getattr(self, name)}")
        if self.layer_types is not None:
            types = tuple(self.layer_types)
            if len(types) != self.n_layers or not set(types) <= set(LAYER_TYPES):
                raise ValueError(f"encoder.layer_types={types!r} must list {self.n_layers} of {LAYER_TYPES}")
            object.__setattr__(self, "layer_types", types)
        if self.head_activation not in HEAD_ACTIVATIONS:
            raise ValueError(f"encoder.head_activation={self.head_activation!r}; expected one of "
                             f"{sorted(HEAD_ACTIVATIONS)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"encoder.pooling={self.pooling!r}; expected one of {POOLINGS}")

    @property
    def types(self) -> tuple[str, ...]:
        """Each layer's attention type."""
        if self.layer_types is not None:
            return self.layer_types
        return tuple("global" if l % self.global_every == 0 else "local" for l in range(self.n_layers))

    def attention(self, layer_type: str) -> AttentionConfig:
        """The attention block config of a global or a local layer."""
        local = layer_type == "local"
        return AttentionConfig(
            d_model=self.d_model, n_heads=self.n_heads, n_kv_heads=self.n_heads, head_dim=self.head_dim,
            norm_eps=self.norm_eps, rope_base=self.local_rope_base if local else self.global_rope_base,
            causal=False, window=self.local_window // 2 + 1 if local else None, impl=self.attention_impl)

    @property
    def dtype(self):
        return jnp.dtype(self.compute_dtype)


def _init_ln(cfg: EncoderConfig, dim: int, dtype) -> dict:
    params = init_norm(dim, "layer", dtype)
    return params if cfg.norm_bias else {"scale": params["scale"]}


def _init_layer(key, cfg: EncoderConfig) -> dict:
    k_attn, k_mlp = jax.random.split(key)
    dtype = jnp.dtype(cfg.param_dtype)
    out_scale = (2 * cfg.n_layers) ** -0.5
    return {
        "attn_norm": _init_ln(cfg, cfg.d_model, dtype),
        "attn": init_attention(k_attn, cfg.attention("global"), dtype=dtype, out_scale=out_scale),
        "mlp_norm": _init_ln(cfg, cfg.d_model, dtype),
        "mlp": init_mlp(k_mlp, cfg.d_model, cfg.mlp_dim, dtype=dtype, out_scale=out_scale),
    }


def _init_head(key, cfg: EncoderConfig) -> dict:
    dtype = jnp.dtype(cfg.param_dtype)
    return {"dense": init_dense(key, (cfg.d_model,), (cfg.d_model,), dtype=dtype, bias=cfg.head_bias),
            "norm": _init_ln(cfg, cfg.d_model, dtype)}


@functools.partial(jax.jit, static_argnums=0)
def init(cfg: EncoderConfig, key: jax.Array) -> dict:
    """Params of the encoder and its MLM head (module docstring)."""
    k_embed, k_layers, k_head = jax.random.split(key, 3)
    dtype = jnp.dtype(cfg.param_dtype)
    params = {
        "embed": init_embedding(k_embed, cfg.vocab_size, cfg.d_model, dtype),
        "embed_norm": _init_ln(cfg, cfg.d_model, dtype),
        "layers": jax.vmap(lambda k: _init_layer(k, cfg))(jax.random.split(k_layers, cfg.n_layers)),
        "final_norm": _init_ln(cfg, cfg.d_model, dtype),
        "mlm": _init_head(k_head, cfg),
    }
    if cfg.decoder_bias:
        params["mlm"]["bias"] = jnp.zeros((cfg.vocab_size,), dtype)
    return params


def init_classifier(cfg: EncoderConfig, key: jax.Array, num_labels: int) -> dict:
    """A token / sequence classification head (dense, act, norm, then W_c [D, N] with bias);
    put it at ``params["classifier"]``."""
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1, got {num_labels}")
    k_head, k_out = jax.random.split(key)
    head = _init_head(k_head, cfg)
    head["out"] = init_dense(k_out, (cfg.d_model,), (num_labels,), dtype=jnp.dtype(cfg.param_dtype), bias=True)
    return head


def segment_positions(segment_ids_BT: jax.Array) -> jax.Array:
    """Positions that restart at 0 where the segment id changes: p_t = t - start(t), start(t)
    the first index of t's run of equal ids."""
    T = segment_ids_BT.shape[1]
    t_BT = jnp.broadcast_to(jnp.arange(T), segment_ids_BT.shape)
    starts_BT = jnp.concatenate([jnp.ones_like(segment_ids_BT[:, :1], bool),
                                 segment_ids_BT[:, 1:] != segment_ids_BT[:, :-1]], axis=1)
    return t_BT - jax.lax.cummax(jnp.where(starts_BT, t_BT, 0), axis=1)


def _layer(cfg: EncoderConfig, x_BTD, layer_params, is_global, is_first, *, ropes, segment_ids_BT):
    h_BTD = layer_norm(layer_params["attn_norm"], x_BTD, cfg.norm_eps)
    h_BTD = jnp.where(is_first, x_BTD, h_BTD)

    def attend(layer_type):
        def run(params, h):
            return attention_block(params, h, cfg.attention(layer_type), rope=ropes[layer_type],
                                   segment_ids_BT=segment_ids_BT)[0]
        return run

    kinds = set(cfg.types)
    if kinds == {"global", "local"}:
        attn_BTD = jax.lax.cond(is_global, attend("global"), attend("local"), layer_params["attn"], h_BTD)
    else:
        attn_BTD = attend(kinds.pop())(layer_params["attn"], h_BTD)
    x_BTD = x_BTD + attn_BTD
    h_BTD = layer_norm(layer_params["mlp_norm"], x_BTD, cfg.norm_eps)
    return x_BTD + mlp(layer_params["mlp"], h_BTD, cfg.mlp_type)


def encode(params: dict, tokens_BT: jax.Array, cfg: EncoderConfig, *, segment_ids_BT: jax.Array | None = None,
           positions_BT: jax.Array | None = None) -> jax.Array:
    """Final hidden states h_BTD (after the final norm) of a batch of token rows.

    Args:
      segment_ids_BT: packed-sequence ids (0 = padding); None: one sequence per row, no padding.
      positions_BT: RoPE positions; default restarts at 0 in every segment
        (:func:`segment_positions`), or 0..T-1 without segment ids.
    """
    if tokens_BT.ndim != 2:
        raise ValueError(f"tokens must be [B, T], got shape {tokens_BT.shape}")
    if segment_ids_BT is not None and segment_ids_BT.shape != tokens_BT.shape:
        raise ValueError(f"segment_ids {segment_ids_BT.shape} must match tokens {tokens_BT.shape}")
    if positions_BT is None:
        positions_BT = (jnp.broadcast_to(jnp.arange(tokens_BT.shape[1]), tokens_BT.shape)
                        if segment_ids_BT is None else segment_positions(segment_ids_BT))
    x_BTD = layer_norm(params["embed_norm"], embed(params["embed"], tokens_BT, cfg.dtype), cfg.norm_eps)
    ropes = {t: rope_for(cfg.attention(t), positions_BT) for t in set(cfg.types)}
    is_global_L = jnp.array([t == "global" for t in cfg.types])
    is_first_L = jnp.arange(cfg.n_layers) == 0

    def body(x_BTD, xs):
        layer_params, is_global, is_first = xs
        return _layer(cfg, x_BTD, layer_params, is_global, is_first, ropes=ropes,
                      segment_ids_BT=segment_ids_BT), None

    x_BTD, _ = jax.lax.scan(body, x_BTD, (params["layers"], is_global_L, is_first_L))
    return layer_norm(params["final_norm"], x_BTD, cfg.norm_eps)


def _head(head: dict, h_BTD: jax.Array, cfg: EncoderConfig) -> jax.Array:
    z = dense(head["dense"], h_BTD, "...d,de->...e")
    return layer_norm(head["norm"], HEAD_ACTIVATIONS[cfg.head_activation](z), cfg.norm_eps)


def _need(params: dict, key: str, what: str) -> dict:
    if key not in params:
        raise KeyError(f"params have no {key!r} head ({what}); keys: {', '.join(sorted(params))}")
    return params[key]


def mlm_logits(params: dict, h_BTD: jax.Array, cfg: EncoderConfig) -> jax.Array:
    """logits_BTV = LayerNorm(act(h W_d)) E^T + b, float32 (module docstring)."""
    head = _need(params, "mlm", "init builds it")
    logits_BTV = unembed(params["embed"], _head(head, h_BTD, cfg), tied=True)
    return logits_BTV + head["bias"].astype(jnp.float32) if "bias" in head else logits_BTV


def token_logits(params: dict, h_BTD: jax.Array, cfg: EncoderConfig) -> jax.Array:
    """logits_BTN of the token classifier at ``params["classifier"]``, float32."""
    head = _need(params, "classifier", "init_classifier builds it")
    return dense(head["out"], _head(head, h_BTD, cfg), "btd,dn->btn", out_dtype=jnp.float32)


def pool(h_BTD: jax.Array, cfg: EncoderConfig, segment_ids_BT: jax.Array | None = None) -> jax.Array:
    """h_BD of each row: its first token (``cls``) or the mean over its tokens with a non-zero
    segment id (``mean``; all tokens without segment ids). One sequence per row."""
    if cfg.pooling == "cls":
        return h_BTD[:, 0]
    mask_BT = jnp.ones(h_BTD.shape[:2], bool) if segment_ids_BT is None else segment_ids_BT != 0
    mask_BT1 = mask_BT[..., None].astype(jnp.float32)
    total_BD = jnp.sum(h_BTD.astype(jnp.float32) * mask_BT1, axis=1)
    return (total_BD / jnp.maximum(jnp.sum(mask_BT1, axis=1), 1.0)).astype(h_BTD.dtype)


def sequence_logits(params: dict, h_BTD: jax.Array, cfg: EncoderConfig,
                    segment_ids_BT: jax.Array | None = None) -> jax.Array:
    """logits_BN of the sequence classifier at ``params["classifier"]`` on :func:`pool`, float32."""
    head = _need(params, "classifier", "init_classifier builds it")
    return dense(head["out"], _head(head, pool(h_BTD, cfg, segment_ids_BT), cfg), "bd,dn->bn",
                 out_dtype=jnp.float32)


def apply(params: dict, tokens_BT: jax.Array, cfg: EncoderConfig, *, segment_ids_BT: jax.Array | None = None,
          positions_BT: jax.Array | None = None) -> jax.Array:
    """MLM logits [B, T, V] (float32) of a batch of token rows (see :func:`encode`)."""
    h_BTD = encode(params, tokens_BT, cfg, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT)
    return mlm_logits(params, h_BTD, cfg)


# Logical axes (``jaxlab.train.sharding``) of the encoder's own params; the layer params are the
# decoder's (``transformer.PARAM_AXES``) under a leading ``layers`` axis.
_HEAD_AXES = {
    "dense/kernel": ("embed", None),
    "dense/bias": (None,),
    "norm/scale": ("norm",),
    "norm/bias": ("norm",),
    "out/kernel": ("embed", None),
    "out/bias": (None,),
}
PARAM_AXES = {
    "embed/embedding": ("vocab", "embed"),
    "embed_norm/scale": ("norm",),
    "embed_norm/bias": ("norm",),
    "final_norm/scale": ("norm",),
    "final_norm/bias": ("norm",),
    "mlm/bias": ("vocab",),
    **{f"mlm/{k}": v for k, v in _HEAD_AXES.items()},
    **{f"classifier/{k}": v for k, v in _HEAD_AXES.items()},
}


def param_axes(path: str) -> tuple[str, ...]:
    """Logical axis names of the encoder param at ``path`` (e.g. ``layers/attn/q/kernel``,
    ``classifier/out/kernel``), for ``jaxlab.train.fit`` and the sharding rules."""
    if path.startswith("layers/"):
        return ("layers",) + transformer.PARAM_AXES[path[len("layers/"):]]
    if path not in PARAM_AXES:
        raise KeyError(f"no logical axes known for encoder param {path!r}")
    return PARAM_AXES[path]


def count_params(params: dict) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
