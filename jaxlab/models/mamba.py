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
"""

from __future__ import annotations

import dataclasses
import functools
import math

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


def _conv(layer: dict, u_BTE: jax.Array, history_BKE: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Depthwise causal conv over time: out_t = sum_k w_k u_{t - K + 1 + k} (+ b), with the K - 1
    inputs before the chunk in ``history``. Returns (out [B, T, E], the new history)."""
    w_KE = layer["conv"]["kernel"].astype(u_BTE.dtype)
    K = w_KE.shape[0]
    full_BSE = jnp.concatenate([history_BKE.astype(u_BTE.dtype), u_BTE], axis=1)  # S = K - 1 + T
    T = u_BTE.shape[1]
    out = sum(w_KE[k] * full_BSE[:, k:k + T] for k in range(K))
    if "bias" in layer["conv"]:
        out = out + layer["conv"]["bias"].astype(out.dtype)
    return out, full_BSE[:, -(K - 1):] if K > 1 else full_BSE[:, :0]


def _mixer(layer: dict, x_BTD: jax.Array, cfg: Config, conv_BKE, ssm_BEN):
    E, N, R = cfg.d_inner, cfg.d_state, cfg.rank
    h_BTD = rms_norm(layer["norm"], x_BTD, cfg.norm_eps)
    uz_BT2E = dense(layer["in_proj"], h_BTD, "btd,de->bte")
    u_BTE, z_BTE = uz_BT2E[..., :E], uz_BT2E[..., E:]
    u_BTE, conv_BKE = _conv(layer, u_BTE, conv_BKE)
    u_BTE = jax.nn.silu(u_BTE)
    proj = dense(layer["x_proj"], u_BTE, "bte,ef->btf")
    dt_BTR, b_BTN, c_BTN = proj[..., :R], proj[..., R:R + N], proj[..., R + N:]
    dt_BTE = jnp.einsum("btr,re->bte", dt_BTR, layer["dt_proj"]["kernel"].astype(dt_BTR.dtype))
    A_EN = -jnp.exp(layer["A_log"].astype(jnp.float32))
    y_BTE, ssm_BEN = selective_scan(u_BTE, dt_BTE, A_EN, b_BTN, c_BTN, layer["D"], z_BTD=z_BTE,
                                    delta_bias_D=layer["dt_proj"]["bias"], delta_softplus=True,
                                    h0_BDN=ssm_BEN, return_state=True, impl=cfg.scan_impl)
    return x_BTD + dense(layer["out_proj"], y_BTE, "bte,ed->btd"), conv_BKE, ssm_BEN


def init_cache(cfg: Config, batch_size: int) -> dict:
    """Zero recurrent state: ``conv`` [L, B, K - 1, E] and ``ssm`` [L, B, E, N] (float32)."""
    L, E = cfg.n_layers, cfg.d_inner
    return {"conv": jnp.zeros((L, batch_size, cfg.d_conv - 1, E), jnp.float32),
            "ssm": jnp.zeros((L, batch_size, E, cfg.d_state), jnp.float32)}


def _forward(params: dict, tokens_BT: jax.Array, cfg: Config, cache: dict):
    x_BTD = params["embed"]["embedding"][tokens_BT].astype(jnp.dtype(cfg.compute_dtype))

    def body(x_BTD, xs):
        layer, conv_BKE, ssm_BEN = xs
        x_BTD, conv_BKE, ssm_BEN = _mixer(layer, x_BTD, cfg, conv_BKE, ssm_BEN)
        return x_BTD, (conv_BKE.astype(jnp.float32), ssm_BEN)

    x_BTD, (conv, ssm) = jax.lax.scan(body, x_BTD, (params["layers"], cache["conv"], cache["ssm"]))
    x_BTD = rms_norm(params["final_norm"], x_BTD, cfg.norm_eps)
    if cfg.tie_embeddings:
        logits = jnp.einsum("btd,vd->btv", x_BTD, params["embed"]["embedding"].astype(x_BTD.dtype))
    else:
        logits = dense(params["unembed"], x_BTD, "btd,dv->btv")
    return logits.astype(jnp.float32), {"conv": conv, "ssm": ssm}


def apply(params: dict, tokens_BT: jax.Array, cfg: Config) -> jax.Array:
    """Logits [B, T, V] (float32) of a batch of sequences from a zero state."""
    return _forward(params, tokens_BT, cfg, init_cache(cfg, tokens_BT.shape[0]))[0]


def prefill(params: dict, tokens_BT: jax.Array, cfg: Config, cache: dict | None = None):
    """(logits [B, T, V], cache after the tokens); continues ``cache`` when given."""
    return _forward(params, tokens_BT, cfg, cache if cache is not None else init_cache(cfg, tokens_BT.shape[0]))


def decode_step(params: dict, tokens_B: jax.Array, cfg: Config, cache: dict):
    """(logits [B, V], cache) after one more token per row."""
    logits_B1V, cache = _forward(params, tokens_B[:, None], cfg, cache)
    return logits_B1V[:, 0], cache


def count_params(params: dict) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
