"""A Mamba-1 language model (Gu and Dao 2023): pure functions on a params pytree, layers stacked
on a leading [L] axis and run with ``lax.scan``.

One block, on the residual stream x [B, T, D] (E = expand * D inner channels, N state size,
R = dt_rank, K = conv width):

    h        = rms_norm(x)
    u, z     = h W_in                        (W_in [D, 2E], split into two [E] halves)
    u        = silu(causal_conv1d(u) + b_c)  (depthwise, width K, over time)
    dt, B, C = u W_x                         ([R], [N], [N])
    delta    = softplus(dt W_dt + b_dt)      ([E]; the bias inside the softplus)
    y        = selective_scan(u, delta, A = -exp(A_log), B, C, D) * silu(z)
    x        = x + y W_out

then a final RMSNorm and the unembedding (tied to the embedding by default). ``prefill`` runs
a prompt and returns the recurrent cache (the last K - 1 conv inputs and the [E, N] SSM state
of every layer); ``decode_step`` advances it one token, giving the same logits as ``apply``
over the whole sequence. The parameter layout follows Hugging Face's ``MambaForCausalLM``
(:mod:`jaxlab.interop.hf_mamba`).

Packed rows (``segment_ids_BT``, 0 = padding) keep sequences apart: the conv taps and the SSM
state do not cross a change of segment id (the state restarts from 0 at a segment's first
token), so a packed sequence's logits equal its logits alone. Left-padded prompts
(``prefill(mask_BT=...)``) use the same rule. There is no position encoding; ``positions_BT``
is accepted for the shared call signature and unused.

``selective=False`` is the time-invariant ablation (an S4D-style SSM inside the same block):
delta = softplus(b_dt) [E], B [N] and C [N] are parameters, not functions of the input
(no ``x_proj`` and no ``dt_proj`` kernel), the rest of the block unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp

from jaxlab.kernels import selective_scan
from jaxlab.nn.linear import dense, init_dense
from jaxlab.nn.norms import rms_norm


@dataclasses.dataclass(frozen=True)
class Config:
    vocab_size: int = 259
    d_model: int = 128
    n_layers: int = 2
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dt_rank: int = 0            # 0: ceil(d_model / 16), as Mamba chooses
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    conv_bias: bool = True
    param_dtype: str = "float32"
    compute_dtype: str = "float32"
    scan_impl: str = "xla"
    selective: bool = True       # False: delta, B, C fixed parameters (the time-invariant ablation)
    family: Literal["mamba"] = "mamba"

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "d_state", "expand", "d_conv"):
            if getattr(self, name) < 1:
                raise ValueError(f"mamba.Config.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def rank(self) -> int:
        return self.dt_rank or math.ceil(self.d_model / 16)


def _init_layer(key: jax.Array, cfg: Config) -> dict:
    k_in, k_conv, k_x, k_dt, k_out = jax.random.split(key, 5)
    E, N, R, dtype = cfg.d_inner, cfg.d_state, cfg.rank, jnp.dtype(cfg.param_dtype)
    # dt initialised so that softplus(b_dt) spans [1e-3, 1e-1] log-uniformly (Mamba's choice)
    dt = jnp.exp(jax.random.uniform(k_dt, (E,), minval=math.log(1e-3), maxval=math.log(1e-1)))
    layer = {
        "norm": {"scale": jnp.ones((cfg.d_model,), dtype)},
        "in_proj": init_dense(k_in, (cfg.d_model,), (2 * E,), dtype=dtype),
        "conv": {"kernel": (jax.random.normal(k_conv, (cfg.d_conv, E)) / math.sqrt(cfg.d_conv)).astype(dtype)},
        "x_proj": init_dense(k_x, (E,), (R + 2 * N,), dtype=dtype),
        "dt_proj": {"kernel": (jax.random.normal(k_dt, (R, E)) * R ** -0.5).astype(dtype),
                    "bias": (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)},  # softplus^-1(dt)
        "A_log": jnp.log(jnp.broadcast_to(jnp.arange(1, N + 1, dtype=jnp.float32), (E, N))).astype(dtype),
        "D": jnp.ones((E,), dtype),
        "out_proj": init_dense(k_out, (E,), (cfg.d_model,), dtype=dtype, scale=(2 * cfg.n_layers) ** -0.5),
    }
    if not cfg.selective:  # fixed B [N] and C [N] replace the input projections
        del layer["x_proj"], layer["dt_proj"]["kernel"]
        layer["B"] = jnp.ones((N,), dtype)
        layer["C"] = (jax.random.normal(k_x, (N,)) * N ** -0.5).astype(dtype)
    if cfg.conv_bias:
        layer["conv"]["bias"] = jnp.zeros((E,), dtype)
    return layer


@functools.partial(jax.jit, static_argnums=0)
def init(cfg: Config, key: jax.Array) -> dict:
    """Params pytree; per-layer params stacked on a leading [L] axis under ``layers``."""
    k_embed, k_layers, k_out = jax.random.split(key, 3)
    dtype = jnp.dtype(cfg.param_dtype)
    params = {
        "embed": {"embedding": (jax.random.normal(k_embed, (cfg.vocab_size, cfg.d_model)) * 0.02).astype(dtype)},
        "layers": jax.vmap(lambda k: _init_layer(k, cfg))(jax.random.split(k_layers, cfg.n_layers)),
        "final_norm": {"scale": jnp.ones((cfg.d_model,), dtype)},
    }
    if not cfg.tie_embeddings:
        params["unembed"] = init_dense(k_out, (cfg.d_model,), (cfg.vocab_size,), dtype=dtype)
    return params


def _conv(layer: dict, u_BTE: jax.Array, history_BKE: jax.Array,
          segment_ids_BT: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Depthwise causal conv over time: out_t = sum_k w_k u_{t - K + 1 + k} (+ b), with the K - 1
    inputs before the chunk in ``history``; with ``segment_ids`` a tap reading another segment's
    input (inside the chunk) reads 0. Returns (out [B, T, E], the new history)."""
    w_KE = layer["conv"]["kernel"].astype(u_BTE.dtype)
    K = w_KE.shape[0]
    full_BSE = jnp.concatenate([history_BKE.astype(u_BTE.dtype), u_BTE], axis=1)  # S = K - 1 + T
    T = u_BTE.shape[1]
    if segment_ids_BT is None:
        out = sum(w_KE[k] * full_BSE[:, k:k + T] for k in range(K))
    else:  # tap k reads lag d = K - 1 - k; the history (t - d < 0) continues the first segment
        seg_BS = jnp.concatenate([jnp.broadcast_to(segment_ids_BT[:, :1], (segment_ids_BT.shape[0], K - 1)),
                                  segment_ids_BT], axis=1)
        out = sum(w_KE[k] * full_BSE[:, k:k + T] * (seg_BS[:, k:k + T] == segment_ids_BT)[..., None]
                  for k in range(K))
        # the history the next chunk reads continues the last token's segment
        full_BSE = full_BSE * (seg_BS == segment_ids_BT[:, -1:])[..., None]
    if "bias" in layer["conv"]:
        out = out + layer["conv"]["bias"].astype(out.dtype)
    return out, full_BSE[:, -(K - 1):] if K > 1 else full_BSE[:, :0]


def ssm_inputs(layer: dict, x_BTD: jax.Array, cfg: Config, conv_BKE: jax.Array,
               segment_ids_BT: jax.Array | None = None) -> dict:
    """The selective scan's inputs in one layer for the residual stream x [B, T, D]: ``u``
    [B, T, E] (after conv and SiLU), ``z`` [B, T, E] (the gate), ``dt`` [B, T, E] (before the
    bias and softplus: delta = softplus(dt + dt_bias)), ``dt_bias`` [E], ``A`` [E, N] = -exp(A_log),
    ``B``, ``C`` [B, T, N], ``D`` [E], and ``conv`` (the new conv history)."""
    E, N, R = cfg.d_inner, cfg.d_state, cfg.rank
    h_BTD = rms_norm(layer["norm"], x_BTD, cfg.norm_eps)
    uz_BT2E = dense(layer["in_proj"], h_BTD, "btd,de->bte")
    u_BTE, z_BTE = uz_BT2E[..., :E], uz_BT2E[..., E:]
    u_BTE, conv_BKE = _conv(layer, u_BTE, conv_BKE, segment_ids_BT)
    u_BTE = jax.nn.silu(u_BTE)
    if cfg.selective:
        proj = dense(layer["x_proj"], u_BTE, "bte,ef->btf")
        dt_BTR, b_BTN, c_BTN = proj[..., :R], proj[..., R:R + N], proj[..., R + N:]
        dt_BTE = jnp.einsum("btr,re->bte", dt_BTR, layer["dt_proj"]["kernel"].astype(dt_BTR.dtype))
    else:  # time-invariant: the same delta, B and C at every step
        shape = u_BTE.shape[:2] + (N,)
        b_BTN = jnp.broadcast_to(layer["B"].astype(u_BTE.dtype), shape)
        c_BTN = jnp.broadcast_to(layer["C"].astype(u_BTE.dtype), shape)
        dt_BTE = jnp.zeros_like(u_BTE)
    return {"u": u_BTE, "z": z_BTE, "dt": dt_BTE, "dt_bias": layer["dt_proj"]["bias"],
            "A": -jnp.exp(layer["A_log"].astype(jnp.float32)), "B": b_BTN, "C": c_BTN, "D": layer["D"],
            "conv": conv_BKE}


def segment_resets(segment_ids_BT: jax.Array | None) -> jax.Array | None:
    """reset [B, T]: true where a token's segment id differs from the previous token's (the
    state restarts there); None without segment ids."""
    if segment_ids_BT is None:
        return None
    changed = segment_ids_BT[:, 1:] != segment_ids_BT[:, :-1]
    return jnp.concatenate([jnp.zeros_like(changed[:, :1]), changed], axis=1)


def _mixer(layer: dict, x_BTD: jax.Array, cfg: Config, conv_BKE, ssm_BEN, segment_ids_BT=None):
    s = ssm_inputs(layer, x_BTD, cfg, conv_BKE, segment_ids_BT)
    y_BTE, ssm_BEN = selective_scan(s["u"], s["dt"], s["A"], s["B"], s["C"], s["D"], z_BTD=s["z"],
                                    delta_bias_D=s["dt_bias"], delta_softplus=True, h0_BDN=ssm_BEN,
                                    return_state=True, reset_BT=segment_resets(segment_ids_BT),
                                    impl=cfg.scan_impl)
    return x_BTD + dense(layer["out_proj"], y_BTE, "bte,ed->btd"), s["conv"], ssm_BEN


def init_cache(cfg: Config, batch_size: int, max_len: int | None = None) -> dict:
    """Zero recurrent state: ``conv`` [L, B, K - 1, E] and ``ssm`` [L, B, E, N] (float32).
    ``max_len`` is accepted for the transformer's signature: the state does not grow."""
    del max_len
    L, E = cfg.n_layers, cfg.d_inner
    return {"conv": jnp.zeros((L, batch_size, cfg.d_conv - 1, E), jnp.float32),
            "ssm": jnp.zeros((L, batch_size, E, cfg.d_state), jnp.float32)}


# The row (batch) axis of each cache entry.
CACHE_ROW_AXIS = {"conv": 1, "ssm": 1}


def _forward(params: dict, tokens_BT: jax.Array, cfg: Config, cache: dict, segment_ids_BT=None,
             return_hidden: bool = False):
    x_BTD = params["embed"]["embedding"][tokens_BT].astype(jnp.dtype(cfg.compute_dtype))

    def body(x_BTD, xs):
        layer, conv_BKE, ssm_BEN = xs
        x_out_BTD, conv_BKE, ssm_BEN = _mixer(layer, x_BTD, cfg, conv_BKE, ssm_BEN, segment_ids_BT)
        return x_out_BTD, (conv_BKE.astype(jnp.float32), ssm_BEN, x_BTD if return_hidden else None)

    x_BTD, (conv, ssm, hidden_LBTD) = jax.lax.scan(body, x_BTD, (params["layers"], cache["conv"], cache["ssm"]))
    if return_hidden:
        hidden_LBTD = jnp.concatenate([hidden_LBTD, x_BTD[None]], axis=0)
    return head_logits(params, x_BTD, cfg), {"conv": conv, "ssm": ssm}, hidden_LBTD


def head_logits(params: dict, x_BTD: jax.Array, cfg: Config) -> jax.Array:
    """Logits [B, T, V] float32 of the residual stream after the last layer: the final RMSNorm,
    then the unembedding (the embedding's transpose when tied)."""
    x_BTD = rms_norm(params["final_norm"], x_BTD, cfg.norm_eps)
    if cfg.tie_embeddings:
        logits = jnp.einsum("btd,vd->btv", x_BTD, params["embed"]["embedding"].astype(x_BTD.dtype))
    else:
        logits = dense(params["unembed"], x_BTD, "btd,dv->btv")
    return logits.astype(jnp.float32)


def apply(params: dict, tokens_BT: jax.Array, cfg: Config, *, positions_BT: jax.Array | None = None,
          segment_ids_BT: jax.Array | None = None, return_hidden: bool = False):
    """Logits [B, T, V] (float32) of a batch of sequences from a zero state.

    ``segment_ids_BT``: packed sequences, kept apart (module docstring); ``positions_BT``
    unused (no position encoding); ``return_hidden`` also returns the residual stream before
    each layer and after the last, [n_layers + 1, B, T, D] (before the final norm)."""
    del positions_BT
    if tokens_BT.ndim != 2:
        raise ValueError(f"tokens must be [B, T], got shape {tokens_BT.shape}")
    logits, _, hidden = _forward(params, tokens_BT, cfg, init_cache(cfg, tokens_BT.shape[0]), segment_ids_BT,
                                 return_hidden)
    return (logits, hidden) if return_hidden else logits


def prefill(params: dict, tokens_BT: jax.Array, cfg: Config, cache: dict | None = None, *,
            mask_BT: jax.Array | None = None, last_only: bool = False):
    """(logits [B, T, V], cache after the tokens); continues ``cache`` when given. ``mask_BT``:
    1 for real tokens, 0 for left padding (the state restarts at a row's first real token, so
    padding leaves no trace); ``last_only`` returns the logits at T - 1 only, [B, 1, V]."""
    cache = cache if cache is not None else init_cache(cfg, tokens_BT.shape[0])
    segment_ids_BT = None if mask_BT is None else mask_BT.astype(jnp.int32)
    logits, cache, _ = _forward(params, tokens_BT, cfg, cache, segment_ids_BT)
    return (logits[:, -1:] if last_only else logits), cache


def decode_step(params: dict, tokens_B: jax.Array, cfg: Config, cache: dict):
    """(logits [B, V], cache) after one more token per row."""
    logits_B1V, cache, _ = _forward(params, tokens_B[:, None], cfg, cache)
    return logits_B1V[:, 0], cache


# Logical axis names of every param, by path (the ``layers/`` prefix adds a leading "layers");
# the E inner channels are the "mlp" axis (split by tensor parallelism).
PARAM_AXES = {
    "embed/embedding": ("vocab", "embed"),
    "unembed/kernel": ("embed", "vocab"),
    "final_norm/scale": ("norm",),
    "norm/scale": ("norm",),
    "in_proj/kernel": ("embed", "mlp"),
    "conv/kernel": (None, "mlp"),
    "conv/bias": ("mlp",),
    "x_proj/kernel": ("mlp", None),
    "dt_proj/kernel": (None, "mlp"),
    "dt_proj/bias": ("mlp",),
    "A_log": ("mlp", None),
    "D": ("mlp",),
    "B": (None,),
    "C": (None,),
    "out_proj/kernel": ("mlp", "embed"),
}


def param_axes(path: str) -> tuple[str | None, ...]:
    """Logical axis names of the param at ``path`` (e.g. ``layers/in_proj/kernel``)."""
    if path.startswith("layers/"):
        return ("layers",) + param_axes(path[len("layers/"):])
    if path not in PARAM_AXES:
        raise KeyError(f"no logical axes known for Mamba param {path!r}")
    return PARAM_AXES[path]


def count_params(params: dict) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
