"""Models as modules of pure functions: ``init(cfg, key)`` and ``apply(params, tokens, cfg)``.

A model config names its family (``cfg.family``); :func:`module` is the one place a config
picks its module, and every family module has the same functions:

    init(cfg, key) -> params            apply(params, tokens_BT, cfg, *, positions_BT,
    param_axes(path) -> logical axes          segment_ids_BT, return_hidden) -> logits
    count_params(params) -> int         init_cache(cfg, B, max_len), CACHE_ROW_AXIS, prefill(params, tokens_BT,
                                              cfg, cache, *, mask_BT, last_only), decode_step

Families: "transformer" (:mod:`jaxlab.models.transformer`), "mamba" (:mod:`jaxlab.models.mamba`),
"blt" (the Byte Latent Transformer, :mod:`jaxlab.models.blt`).
An experiment switches with ``--set model.family=mamba`` (:func:`jaxlab.config.apply_overrides`).
"""

from __future__ import annotations

import functools
from types import ModuleType

import jax

from jaxlab.models import blt, mamba, transformer

FAMILIES: dict[str, ModuleType] = {"transformer": transformer, "mamba": mamba, "blt": blt}
ModelConfig = transformer.Config | mamba.Config | blt.Config


def module(cfg) -> ModuleType:
    """The module of ``cfg``'s model family; ValueError for an unknown family."""
    family = getattr(cfg, "family", None)
    if family not in FAMILIES:
        raise ValueError(f"model.family={family!r} is not one of {sorted(FAMILIES)}")
    return FAMILIES[family]


def init(cfg, key: jax.Array) -> dict:
    return module(cfg).init(cfg, key)


def init_fn(cfg):
    """``key -> params`` of ``cfg``'s model (what trainers take as ``init_params``)."""
    return functools.partial(module(cfg).init, cfg)


def param_axes(cfg):
    """The ``path -> logical axes`` rule of ``cfg``'s model family."""
    return module(cfg).param_axes


def apply(params: dict, tokens_BT: jax.Array, cfg, **kwargs):
    return module(cfg).apply(params, tokens_BT, cfg, **kwargs)


def count_params(params: dict) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))


def describe(cfg) -> str:
    """One line of the architecture, for reports."""
    if cfg.family == "mamba":
        kind = "selective" if cfg.selective else "time-invariant"
        return (f"Mamba ({kind} SSM), {cfg.n_layers} layers, d_model {cfg.d_model}, "
                f"d_inner {cfg.d_inner}, d_state {cfg.d_state}, conv {cfg.d_conv}")
    if cfg.family == "blt":
        return (f"Byte Latent Transformer ({cfg.patching} patching), latent {cfg.n_layers} layers d_model "
                f"{cfg.d_model}, local {cfg.encoder_layers}+{cfg.decoder_layers} layers d_local {cfg.d_local}, "
                f"n-grams {','.join(map(str, cfg.ngram_sizes))}")
    return (f"{cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads ({cfg.n_kv_heads} kv), "
            f"mlp {cfg.mlp_dim}")


__all__ = ["transformer", "mamba", "blt", "FAMILIES", "ModelConfig", "module", "init", "init_fn", "param_axes",
           "apply", "count_params", "describe"]
