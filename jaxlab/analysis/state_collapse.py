"""State collapse of a Mamba beyond its training length, and three training-free fixes
(Stuffed Mamba, Chen et al. 2024).

A Mamba layer's state is a decayed sum of its inputs (:mod:`jaxlab.models.mamba`, per inner
channel e and state dim n; the decay alpha_t = exp(delta_t A) in (0, 1)):

    h_t = alpha_t h_{t-1} + delta_t B_t u_t = sum_{i <= t} alpha_{i+1:t} delta_i B_i u_i,
    y_t = C_t . h_t + D u_t   (then gated by silu(z_t)),      alpha_{i:t} = prod_{j=i..t} alpha_j

Trained on sequences of T_train tokens, a model may learn decays that never forget within
T_train; run longer, some channels' states keep growing ("variance explosion") and the loss
rises. :func:`run_with_fix` runs the model with the recurrence written out (a ``lax.scan``
over time, every state kept), optionally changed at inference:

    "forget"     stronger decay: alpha_t -> alpha_t ** decay_scale (delta A scaled in the decay
                 only; decay_scale >= 1)
    "normalize"  state normalisation: h_t -> h_t * max_norm / ||h_t|| where ||h_t|| > max_norm,
                 the norm of each channel's N-dim state (non-linear: it is applied in the
                 recurrence, so later states see the clipped one)
    "window"     sliding-window state: the output reads h_t^(r) = h_t - alpha_{t-r+1:t} h_{t-r},
                 exactly the state of the last r inputs (h_{t-r} = 0 for t < r), while the
                 recurrence carries h_t

and returns the logits with each layer's per-channel state norms ||h_t[e]|| (of the state the
output reads), from which :func:`position_nll` and the collapse plots are made.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args

import jax
import jax.numpy as jnp

from jaxlab.losses.lm import token_nll
from jaxlab.models import mamba
from jaxlab.nn.linear import dense

FixKind = Literal["none", "forget", "normalize", "window"]
FIX_KINDS = get_args(FixKind)


@dataclasses.dataclass(frozen=True)
class StateFix:
    """An inference-time change to the recurrence (module docstring)."""
    kind: FixKind = "none"
    decay_scale: float = 1.0       # "forget": alpha -> alpha ** decay_scale
    max_norm: float = float("inf")  # "normalize": per-channel state norm cap
    window: int = 0                 # "window": r, the inputs a state keeps

    def __post_init__(self):
        if self.kind not in FIX_KINDS:
            raise ValueError(f"fix kind {self.kind!r} is not one of {FIX_KINDS}")
        if self.kind == "forget" and not self.decay_scale >= 1.0:
            raise ValueError(f"decay_scale must be >= 1 (stronger forgetting), got {self.decay_scale}")
        if self.kind == "normalize" and not self.max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got {self.max_norm}")
        if self.kind == "window" and self.window < 1:
            raise ValueError(f"window must be >= 1 token, got {self.window}")


def scan_states(u_BTE, delta_BTE, A_EN, B_BTN, fix: StateFix = StateFix()):
    """The states of one layer's recurrence under ``fix``: (carried h [B, T, E, N], the state
    the output reads [B, T, E, N]); both equal without a fix or with "forget"/"normalize"."""
    scale = fix.decay_scale if fix.kind == "forget" else 1.0
    logdecay_BTEN = delta_BTE[..., None] * A_EN * scale           # log alpha_t <= 0
    insert_BTEN = (delta_BTE * u_BTE)[..., None] * B_BTN[:, :, None, :]
    cap = fix.max_norm if fix.kind == "normalize" else None

    def step(h_BEN, xs):
        logdecay_BEN, insert_BEN = xs
        h_BEN = jnp.exp(logdecay_BEN) * h_BEN + insert_BEN
        if cap is not None:
            norm_BE1 = jnp.linalg.norm(h_BEN, axis=-1, keepdims=True)
            h_BEN = h_BEN * jnp.minimum(1.0, cap / jnp.maximum(norm_BE1, 1e-30))
        return h_BEN, h_BEN

    Bsz, T, E = u_BTE.shape
    h0 = jnp.zeros((Bsz, E, A_EN.shape[1]), jnp.float32)
    _, h_TBEN = jax.lax.scan(step, h0, (jnp.swapaxes(logdecay_BTEN, 0, 1), jnp.swapaxes(insert_BTEN, 0, 1)))
    h_BTEN = jnp.swapaxes(h_TBEN, 0, 1)
    if fix.kind != "window" or fix.window >= T:
        return h_BTEN, h_BTEN
    r = fix.window
    # alpha_{t-r+1:t} = exp(L_t - L_{t-r}), L_t = sum_{j <= t} log alpha_j; h_{t-r} = 0 for t < r
    cum_BTEN = jnp.cumsum(logdecay_BTEN, axis=1)
    pad = lambda x: jnp.concatenate([jnp.zeros_like(x[:, :r]), x[:, :-r]], axis=1)  # noqa: E731
    window_BTEN = h_BTEN - jnp.exp(cum_BTEN - pad(cum_BTEN)) * pad(h_BTEN)
    return h_BTEN, window_BTEN


def run_with_fix(params: dict, tokens_BT: jax.Array, cfg: mamba.Config, fix: StateFix = StateFix()):
    """(logits [B, T, V] float32, state norms [L, B, T, E]) of a Mamba over ``tokens_BT`` from
    a zero state, with the recurrence changed by ``fix``. Without a fix the logits are
    :func:`jaxlab.models.mamba.apply`'s (to float rounding)."""
    x_BTD = params["embed"]["embedding"][tokens_BT].astype(jnp.float32)
    Bsz = tokens_BT.shape[0]
    norms = []
    for layer_index in range(cfg.n_layers):
        layer = jax.tree.map(lambda p: p[layer_index], params["layers"])
        conv0 = jnp.zeros((Bsz, cfg.d_conv - 1, cfg.d_inner), jnp.float32)
        s = mamba.ssm_inputs(layer, x_BTD, cfg, conv0)
        delta_BTE = jax.nn.softplus(s["dt"].astype(jnp.float32) + s["dt_bias"].astype(jnp.float32))
        u_BTE = s["u"].astype(jnp.float32)
        _, read_BTEN = scan_states(u_BTE, delta_BTE, s["A"], s["B"].astype(jnp.float32), fix)
        y_BTE = jnp.einsum("bten,btn->bte", read_BTEN, s["C"].astype(jnp.float32)) + s["D"] * u_BTE
        y_BTE = y_BTE * jax.nn.silu(s["z"].astype(jnp.float32))
        x_BTD = x_BTD + dense(layer["out_proj"], y_BTE, "bte,ed->btd")
        norms.append(jnp.linalg.norm(read_BTEN, axis=-1))
    return mamba.head_logits(params, x_BTD, cfg), jnp.stack(norms)


def position_nll(logits_BTV: jax.Array, tokens_BT: jax.Array) -> jax.Array:
    """-log p(token_{t+1} | tokens_{<=t}) at every position t < T - 1, [B, T - 1]
    (:func:`jaxlab.losses.lm.token_nll` of the shifted targets)."""
    return token_nll(logits_BTV[:, :-1], tokens_BT[:, 1:])[0]
