"""A PyTorch twin of ``jaxlab.models.transformer`` and its training step (for benchmarks).

The twin computes the same function as the jaxlab model, written the way a PyTorch user would
write it (one ``nn.Module`` per layer, ``nn.Linear``-style weights, ``scaled_dot_product_attention``):

    x_0 = E[tokens]
    x_l' = x_l + attn(rms(x_l)),   x_{l+1} = x_l' + mlp(rms(x_l'))     (pre-norm, norms in float32)
    logits = rms(x_L) E^T                                               (tied; float32)

RoPE uses the "rotate half" layout on the first R = 2 floor(fraction Dh / 2) dims of each head
(``jaxlab.nn.rope``); attention is GQA (query head h reads kv head h // G), causal, optionally
sliding-window and segment-masked; QK-norm is RMSNorm over Dh.

This module imports no JAX: the benchmark runs the PyTorch variants in processes of their own.
Params move between the two as a nested dict of numpy arrays in jaxlab's layout
(:func:`load_jaxlab_params`, :func:`to_jaxlab_layout`):

    embed/embedding [V, D]      layers/attn/q/kernel [L, D, H, Dh]   layers/attn/o/kernel [L, H, Dh, D]
    layers/attn/{k,v}/kernel [L, D, K, Dh]    layers/mlp/{gate,up}/kernel [L, D, F]
    layers/mlp/down/kernel [L, F, D]          layers/*_norm/scale [L, D]   final_norm/scale [D]

Notation: B batch, T time, S key length, D model, H heads, K kv heads, Dh head dim, F mlp, V vocab.
"""

from __future__ import annotations

import dataclasses
import inspect
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_SDPA_HAS_GQA = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")
try:
    _SDPA_HAS_GQA = _SDPA_HAS_GQA or "enable_gqa" in str(inspect.signature(F.scaled_dot_product_attention))
except (TypeError, ValueError):  # builtins may have no introspectable signature
    pass

MODEL_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "mlp_dim",
                "mlp_type", "norm_type", "norm_eps", "qk_norm", "rope_base", "rope_fraction", "causal",
                "window", "tie_embeddings", "attention_bias", "mlp_bias", "param_dtype",
                "compute_dtype")


@dataclasses.dataclass(frozen=True)
class TwinConfig:
    """The fields of ``jaxlab.models.transformer.Config`` the twin needs (no JAX import)."""

    vocab_size: int = 264
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 4
    head_dim: int = 64
    mlp_dim: int = 768
    mlp_type: str = "swiglu"
    norm_type: str = "rms"
    norm_eps: float = 1e-6
    qk_norm: bool = False
    rope_base: float = 10000.0
    rope_fraction: float = 1.0
    causal: bool = True
    window: int | None = None
    tie_embeddings: bool = True
    attention_bias: bool = False
    mlp_bias: bool = False
    param_dtype: str = "float32"
    compute_dtype: str = "float32"

    @classmethod
    def from_any(cls, cfg) -> "TwinConfig":
        """From a jaxlab ``transformer.Config``, a dict or a TwinConfig."""
        if isinstance(cfg, cls):
            return cfg
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        defaults = cls()
        return cls(**{k: get(k, getattr(defaults, k)) for k in MODEL_FIELDS})


# --------------------------------------------------------------------------- building blocks


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * scale over the last axis, in float32, cast back."""
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (y * scale.float()).to(x.dtype)


def layer_norm(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    centred = x32 - x32.mean(-1, keepdim=True)
    var = centred.pow(2).mean(-1, keepdim=True)
    return (centred * torch.rsqrt(var + eps) * scale.float() + bias.float()).to(x.dtype)


class Norm(nn.Module):
    def __init__(self, dim: int, kind: str, eps: float):
        super().__init__()
        if kind not in ("rms", "layer"):
            raise ValueError(f"unknown norm {kind!r}")
        self.kind, self.eps = kind, eps
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if kind == "layer" else None

    def forward(self, x):
        if self.kind == "rms":
            return rms_norm(x, self.scale, self.eps)
        return layer_norm(x, self.scale, self.bias, self.eps)


def rotary_dim(head_dim: int, fraction: float) -> int:
    return 2 * int(fraction * head_dim // 2)


def rope_tables(positions_BT: torch.Tensor, rot: int, base: float):
    """cos, sin [B, T, 1, R/2] (float32) of angle p * base^(-2i/R)."""
    inv_freq = 1.0 / (torch.tensor(base, dtype=torch.float32)
                      ** (torch.arange(0, rot, 2, dtype=torch.float32) / rot))
    angles_BTR = positions_BT[..., None].float() * inv_freq
    return torch.cos(angles_BTR)[:, :, None, :], torch.sin(angles_BTR)[:, :, None, :]


def apply_rope(x_BTHD: torch.Tensor, cos, sin, rot: int) -> torch.Tensor:
    """Rotate-half RoPE on the first ``rot`` dims; the rest pass through."""
    if rot == 0:
        return x_BTHD
    x32 = x_BTHD.float()
    x1, x2, rest = x32[..., : rot // 2], x32[..., rot // 2: rot], x32[..., rot:]
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)
    return out.to(x_BTHD.dtype)


def _linear_weight(out_features: int, in_features: int, std: float) -> nn.Parameter:
    return nn.Parameter(torch.randn(out_features, in_features) * std)


class Attention(nn.Module):
    def __init__(self, cfg: TwinConfig, out_scale: float):
        super().__init__()
        D, H, K, Dh = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.cfg = cfg
        self.q = nn.Linear(D, H * Dh, bias=cfg.attention_bias)
        self.k = nn.Linear(D, K * Dh, bias=cfg.attention_bias)
        self.v = nn.Linear(D, K * Dh, bias=cfg.attention_bias)
        self.o = nn.Linear(H * Dh, D, bias=False)  # jaxlab's o projection never has a bias
        for lin, fan_in, scale in ((self.q, D, 1.0), (self.k, D, 1.0), (self.v, D, 1.0),
                                   (self.o, H * Dh, out_scale)):
            nn.init.normal_(lin.weight, std=scale / math.sqrt(fan_in))
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        if cfg.qk_norm:
            self.q_norm = nn.Parameter(torch.ones(Dh))
            self.k_norm = nn.Parameter(torch.ones(Dh))

    def forward(self, x_BTD, cos, sin, attn_mask_B1TS):
        cfg = self.cfg
        B, T, _ = x_BTD.shape
        H, K, Dh = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        q_BTHD = self.q(x_BTD).view(B, T, H, Dh)
        k_BTKD = self.k(x_BTD).view(B, T, K, Dh)
        v_BTKD = self.v(x_BTD).view(B, T, K, Dh)
        if cfg.qk_norm:
            q_BTHD = rms_norm(q_BTHD, self.q_norm, cfg.norm_eps)
            k_BTKD = rms_norm(k_BTKD, self.k_norm, cfg.norm_eps)
        rot = rotary_dim(Dh, cfg.rope_fraction)
        q_BTHD = apply_rope(q_BTHD, cos, sin, rot)
        k_BTKD = apply_rope(k_BTKD, cos, sin, rot)
        q_BHTD, k_BKTD, v_BKTD = (t.transpose(1, 2) for t in (q_BTHD, k_BTKD, v_BTKD))
        if H != K and not _SDPA_HAS_GQA:
            k_BKTD = k_BKTD.repeat_interleave(H // K, dim=1)
            v_BKTD = v_BKTD.repeat_interleave(H // K, dim=1)
        extra = {"enable_gqa": True} if (H != K and _SDPA_HAS_GQA) else {}
        if attn_mask_B1TS is None:
            out_BHTD = F.scaled_dot_product_attention(q_BHTD, k_BKTD, v_BKTD, is_causal=cfg.causal,
                                                      **extra)
        else:
            out_BHTD = F.scaled_dot_product_attention(q_BHTD, k_BKTD, v_BKTD,
                                                      attn_mask=attn_mask_B1TS, **extra)
        return self.o(out_BHTD.transpose(1, 2).reshape(B, T, H * Dh))


class Mlp(nn.Module):
    def __init__(self, cfg: TwinConfig, out_scale: float):
        super().__init__()
        D, Fd = cfg.d_model, cfg.mlp_dim
        if cfg.mlp_type not in ("swiglu", "geglu"):
            raise ValueError(f"unknown mlp type {cfg.mlp_type!r}")
        self.kind = cfg.mlp_type
        self.gate = nn.Linear(D, Fd, bias=cfg.mlp_bias)
        self.up = nn.Linear(D, Fd, bias=cfg.mlp_bias)
        self.down = nn.Linear(Fd, D, bias=cfg.mlp_bias)
        for lin, fan_in, scale in ((self.gate, D, 1.0), (self.up, D, 1.0), (self.down, Fd, out_scale)):
            nn.init.normal_(lin.weight, std=scale / math.sqrt(fan_in))
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(self, x_BTD):
        gate_BTF = self.gate(x_BTD)
        act = F.silu(gate_BTF) if self.kind == "swiglu" else F.gelu(gate_BTF, approximate="tanh")
        return self.down(act * self.up(x_BTD))


class Block(nn.Module):
    def __init__(self, cfg: TwinConfig):
        super().__init__()
        out_scale = (2 * cfg.n_layers) ** -0.5
        self.attn_norm = Norm(cfg.d_model, cfg.norm_type, cfg.norm_eps)
        self.attn = Attention(cfg, out_scale)
        self.mlp_norm = Norm(cfg.d_model, cfg.norm_type, cfg.norm_eps)
        self.mlp = Mlp(cfg, out_scale)

    def forward(self, x_BTD, cos, sin, attn_mask_B1TS):
        x_BTD = x_BTD + self.attn(self.attn_norm(x_BTD), cos, sin, attn_mask_B1TS)
        return x_BTD + self.mlp(self.mlp_norm(x_BTD))


class TorchTransformer(nn.Module):
    """The decoder LM; ``forward(tokens_BT, positions_BT=None, segment_ids_BT=None)`` -> float32
    logits [B, T, V]."""

    def __init__(self, cfg):
        super().__init__()
        cfg = TwinConfig.from_any(cfg)
        if cfg.param_dtype != "float32" or cfg.compute_dtype != "float32":
            raise NotImplementedError("the torch twin is float32 only")
        self.cfg = cfg
        self.embedding = nn.Parameter(torch.randn(cfg.vocab_size, cfg.d_model) / math.sqrt(cfg.d_model))
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = Norm(cfg.d_model, cfg.norm_type, cfg.norm_eps)
        self.unembed = None
        if not cfg.tie_embeddings:
            self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
            nn.init.normal_(self.unembed.weight, std=1 / math.sqrt(cfg.d_model))

    def attention_mask(self, T: int, segment_ids_BT):
        """Bool mask [B or 1, 1, T, T] (True: may attend), or None for the plain causal case."""
        cfg = self.cfg
        if segment_ids_BT is None and cfg.window is None and cfg.causal:
            return None  # SDPA's is_causal path
        idx = torch.arange(T, device=self.embedding.device)
        mask_TS = torch.ones(T, T, dtype=torch.bool, device=idx.device)
        dist = idx[:, None] - idx[None, :]
        if cfg.causal:
            mask_TS &= dist >= 0
        if cfg.window is not None:
            mask_TS &= (dist < cfg.window) if cfg.causal else (dist.abs() < cfg.window)
        mask = mask_TS[None, None]
        if segment_ids_BT is not None:
            mask = mask & (segment_ids_BT[:, None, :, None] == segment_ids_BT[:, None, None, :])
        return mask

    def forward(self, tokens_BT, positions_BT=None, segment_ids_BT=None):
        cfg = self.cfg
        B, T = tokens_BT.shape
        if positions_BT is None:
            positions_BT = torch.arange(T, device=tokens_BT.device).expand(B, T)
        rot = rotary_dim(cfg.head_dim, cfg.rope_fraction)
        cos, sin = rope_tables(positions_BT, rot, cfg.rope_base) if rot else (None, None)
        mask = self.attention_mask(T, segment_ids_BT)
        x_BTD = F.embedding(tokens_BT, self.embedding)
        for layer in self.layers:
            x_BTD = layer(x_BTD, cos, sin, mask)
        h_BTD = self.final_norm(x_BTD)
        if self.unembed is None:
            return (h_BTD @ self.embedding.t()).float()
        return self.unembed(h_BTD).float()


# --------------------------------------------------------------------------- params in and out


def _np(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _mapping(cfg: TwinConfig):
    """(jaxlab path, torch attribute path under layers[l] or the model, to_torch, to_jaxlab).

    ``to_torch`` takes one layer's jaxlab array; ``to_jaxlab`` inverts it."""
    D, H, K, Dh = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    ident = (lambda a: a, lambda a: a)

    def flat_in(out_shape):  # [D, *out] -> linear weight [prod(out), D]
        return (lambda a: a.reshape(D, -1).T, lambda w: w.T.reshape(D, *out_shape))

    tr = (lambda a: a.T, lambda w: w.T)
    rows = [
        ("attn_norm/scale", "attn_norm.scale", ident),
        ("mlp_norm/scale", "mlp_norm.scale", ident),
        ("attn/q/kernel", "attn.q.weight", flat_in((H, Dh))),
        ("attn/k/kernel", "attn.k.weight", flat_in((K, Dh))),
        ("attn/v/kernel", "attn.v.weight", flat_in((K, Dh))),
        ("attn/o/kernel", "attn.o.weight", (lambda a: a.reshape(H * Dh, D).T,
                                            lambda w: w.T.reshape(H, Dh, D))),
        ("mlp/gate/kernel", "mlp.gate.weight", tr),
        ("mlp/up/kernel", "mlp.up.weight", tr),
        ("mlp/down/kernel", "mlp.down.weight", tr),
    ]
    if cfg.norm_type == "layer":
        rows += [("attn_norm/bias", "attn_norm.bias", ident), ("mlp_norm/bias", "mlp_norm.bias", ident)]
    if cfg.qk_norm:
        rows += [("attn/q_norm/scale", "attn.q_norm", ident), ("attn/k_norm/scale", "attn.k_norm", ident)]
    if cfg.attention_bias:
        rows += [("attn/q/bias", "attn.q.bias", (lambda a: a.reshape(-1), lambda w: w.reshape(H, Dh))),
                 ("attn/k/bias", "attn.k.bias", (lambda a: a.reshape(-1), lambda w: w.reshape(K, Dh))),
                 ("attn/v/bias", "attn.v.bias", (lambda a: a.reshape(-1), lambda w: w.reshape(K, Dh)))]
    if cfg.mlp_bias:
        rows += [("mlp/gate/bias", "mlp.gate.bias", ident), ("mlp/up/bias", "mlp.up.bias", ident),
                 ("mlp/down/bias", "mlp.down.bias", ident)]
    return rows


def _get(tree: dict, path: str):
    for part in path.split("/"):
        tree = tree[part]
    return tree


def _set(tree: dict, path: str, value) -> None:
    parts = path.split("/")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = value


def _attr(module: nn.Module, dotted: str) -> torch.Tensor:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _top_level(cfg: TwinConfig):
    rows = [("embed/embedding", "embedding"), ("final_norm/scale", "final_norm.scale")]
    if cfg.norm_type == "layer":
        rows.append(("final_norm/bias", "final_norm.bias"))
    return rows


@torch.no_grad()
def load_jaxlab_params(model: TorchTransformer, params: dict) -> TorchTransformer:
    """Copies a jaxlab params pytree (nested dict of arrays; layers stacked on [L]) into ``model``."""
    cfg = model.cfg
    expected = {p for p, _ in _top_level(cfg)} | {"layers/" + p for p, _, _ in _mapping(cfg)}
    if not cfg.tie_embeddings:
        expected.add("unembed/kernel")
    given = set()

    def walk(tree, prefix=""):
        for k, v in tree.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}/")
            else:
                given.add(prefix + k)
    walk(params)
    if given != expected:
        raise ValueError(f"params do not match the twin's config: missing {sorted(expected - given)}, "
                         f"unexpected {sorted(given - expected)}")

    def copy(dst: torch.Tensor, src: np.ndarray, path: str):
        src = np.array(src, dtype=np.float32, order="C")  # a writable copy
        if tuple(dst.shape) != src.shape:
            raise ValueError(f"{path}: jaxlab shape {src.shape} does not fit torch shape {tuple(dst.shape)}")
        dst.copy_(torch.from_numpy(src))

    for jpath, tpath in _top_level(cfg):
        copy(_attr(model, tpath), _np(_get(params, jpath)), jpath)
    if not cfg.tie_embeddings:
        copy(model.unembed.weight, _np(_get(params, "unembed/kernel")).T, "unembed/kernel")
    for jpath, tpath, (to_torch, _) in _mapping(cfg):
        stacked = _np(_get(params["layers"], jpath))
        if stacked.shape[0] != cfg.n_layers:
            raise ValueError(f"layers/{jpath}: leading axis {stacked.shape[0]} != n_layers {cfg.n_layers}")
        for layer, arr in zip(model.layers, stacked):
            copy(_attr(layer, tpath), to_torch(arr), "layers/" + jpath)
    return model


def to_jaxlab_layout(model: TorchTransformer, *, grads: bool = False) -> dict:
    """The model's params (or their ``.grad``) as a jaxlab-layout nested dict of numpy arrays."""
    cfg = model.cfg

    def value(t: torch.Tensor) -> np.ndarray:
        t = t.grad if grads else t
        if t is None:
            raise ValueError("no gradient: run backward first")
        return t.detach().cpu().numpy()

    out: dict = {}
    for jpath, tpath in _top_level(cfg):
        _set(out, jpath, value(_attr(model, tpath)))
    if not cfg.tie_embeddings:
        _set(out, "unembed/kernel", value(model.unembed.weight).T)
    for jpath, tpath, (_, to_jaxlab) in _mapping(cfg):
        _set(out, "layers/" + jpath,
             np.stack([to_jaxlab(value(_attr(layer, tpath))) for layer in model.layers]))
    return out


# --------------------------------------------------------------------------- the training step


@dataclasses.dataclass(frozen=True)
class TwinOptim:
    """The fields of ``jaxlab.train.optim.OptimConfig`` the step needs (lr: the schedule's value)."""

    lr: float = 3e-3
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    decay_embeddings: bool = True
    clip_norm: float | None = 1.0

    @classmethod
    def from_any(cls, cfg, lr: float | None = None) -> "TwinOptim":
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        d = cls()
        kw = {f.name: get(f.name, getattr(d, f.name)) for f in dataclasses.fields(cls)}
        if lr is not None:
            kw["lr"] = lr
        return cls(**kw)


def param_groups(model: TorchTransformer, opt: TwinOptim) -> list[dict]:
    """jaxlab's weight-decay mask: kernels (Linear weights) and the embedding decay; norms,
    QK-norm scales and biases do not."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        is_kernel = leaf == "weight"  # nn.Linear weights are jaxlab's kernels
        is_embedding = name == "embedding"
        (decay if is_kernel or (opt.decay_embeddings and is_embedding) else no_decay).append(p)
    return [{"params": decay, "weight_decay": opt.weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: TorchTransformer, opt: TwinOptim, *, impl: str = "auto") -> torch.optim.AdamW:
    """AdamW with jaxlab's hyper-parameters. ``impl``: "fused" | "foreach" | "loop" | "auto"
    (fused where this torch supports it on CPU, else foreach)."""
    kw = dict(lr=opt.lr, betas=(opt.b1, opt.b2), eps=opt.eps)
    groups = param_groups(model, opt)
    if impl in ("auto", "fused"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            if impl == "fused":
                raise
            impl = "foreach"
    return torch.optim.AdamW(groups, foreach=(impl == "foreach"), **kw)


def loss_fn(model: nn.Module, batch: dict) -> torch.Tensor:
    """Masked token-mean next-token cross-entropy (the same as jaxlab's sum / count)."""
    logits_BTV = model(batch["inputs"], batch.get("positions"), batch.get("segment_ids"))
    nll_BT = F.cross_entropy(logits_BTV.flatten(0, 1), batch["targets"].flatten(),
                             reduction="none").view_as(batch["mask"])
    mask_BT = batch["mask"].float()
    return (nll_BT * mask_BT).sum() / mask_BT.sum().clamp_min(1.0)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, clip_norm: float | None,
               forward_loss=loss_fn) -> torch.Tensor:
    """Forward, loss, backward, clip by global norm, AdamW. Returns the (detached) loss."""
    optimizer.zero_grad(set_to_none=True)
    loss = forward_loss(model, batch)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    optimizer.step()
    return loss.detach()


def to_torch_batch(batch: dict, *, use_segments: bool = True) -> dict:
    """numpy batch (inputs, targets, positions, segment_ids, mask) -> torch tensors. With
    ``use_segments=False`` the segment ids are dropped (plain causal attention: only valid when
    every row is one segment)."""
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    for k in ("inputs", "targets", "positions", "segment_ids"):
        if k in out:
            out[k] = out[k].long()
    if not use_segments:
        out.pop("segment_ids", None)
    return out
