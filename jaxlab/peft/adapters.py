"""Adapters as pytree transforms: LoRA (and rsLoRA), DoRA, SingLoRA, FourierFT.

    frozen, trainable = attach(params, spec, key)      # trainable: the adapters only
    params = merge(frozen, trainable, spec, step=t)     # W0 + dW at every targeted kernel
    params = inline(frozen, trainable, spec)            # LoRA kept beside each kernel, applied
                                                        # by nn.linear.dense (quantized bases)

``frozen`` is the model's params unchanged; ``trainable`` mirrors the paths of the targeted
kernels (``layers/attn/q`` ...) with each method's leaves. ``merge`` is differentiable in
``trainable``, so a trainer differentiates ``loss(merge(frozen, trainable))`` with respect to
``trainable`` alone and the optimizer state covers the adapters only.

Every kernel is read as a matrix W0 [n, m] (n = product of its input axes, m = product of its
output axes; stacked layers keep their leading [L] axis, each layer with its own adapter):

    LoRA        dW = s A B,             A [n, r] ~ N(0, 1/n), B [r, m] = 0,
                s = alpha / r, or alpha / sqrt(r) with ``rslora`` (Kalajdzievski 2023)
    EVA         LoRA's dW with A from the top right singular vectors of the kernel's input
                activations and per-layer ranks by explained variance (:mod:`jaxlab.peft.eva`)
    DoRA        W  = m_c * V / ||V||_c,  V = W0 + s A B, ||.||_c the norm over the input dim
                of each output column, m_c [m] initialised to ||W0||_c (Liu et al. 2024)
    SingLoRA    dW = (alpha / r) u(t) A*[:n] A*[:m]^T,  A* [max(n, m), r] ~ N(0, 1/max(n, m)),
                u(t) = min(t / T, 1) (T = ``ramp_steps``); for a square W0 this is
                (alpha / r) u(t) A A^T, for a rectangular one A's first n (m) rows (Bensaid et al. 2025)
    FourierFT   dW = alpha Re(IDFT2(F)),  F [n, m] zero except F[E] = c, c [n_freq] learned,
                IDFT2(F)[j, k] = 1/(n m) sum_{u, v} F[u, v] exp(2 pi i (u j / n + v k / m));
                the positions E are drawn once from ``spec.seed`` per kernel shape, so layers
                of one shape share them (Gao et al. 2024); ``frequency_bias`` draws them with
                weight exp(-(f_u^2 + f_v^2) / (2 sigma^2)), f the signed frequency (u or u - n)
                and sigma = ``bias_sigma`` x the shorter side, favouring low frequencies

At ``step=0`` LoRA, DoRA and FourierFT (zero-initialised B, c) and SingLoRA (u(0) = 0) leave
the model unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

METHODS = ("lora", "dora", "singlora", "fourierft", "eva")
NO_ADAPTER = "none"  # a spec that attaches nothing (trainers' default: full fine-tuning)
# How many leading axes of each kernel (after the [L] layer axis) are its input axes.
INPUT_AXES = {"attn/q": 1, "attn/k": 1, "attn/v": 1, "attn/o": 2,
              "mlp/gate": 1, "mlp/up": 1, "mlp/down": 1, "unembed": 1}
TARGETS = {
    "attn": r"^layers/attn/(q|k|v|o)$",
    "qv": r"^layers/attn/(q|v)$",
    "mlp": r"^layers/mlp/(gate|up|down)$",
    "all": r"^layers/(attn/(q|k|v|o)|mlp/(gate|up|down))$",
}


class AdapterError(ValueError):
    """An adapter spec or params tree that cannot be used, with what is allowed."""


@dataclasses.dataclass(frozen=True)
class AdapterSpec:
    """Which method, on which kernels, at which size (module docstring for the formulas).

    targets: "attn", "qv", "mlp", "all", or a regular expression matched against the module
    paths (``layers/attn/q``, ``layers/mlp/down``, ``unembed``). method "none" means no
    adapters (full fine-tuning): it is the default of every trainer's ``peft`` field, so that
    ``--set sft.peft.method=lora sft.peft.rank=16`` turns adapters on from the command line."""

    method: Literal["lora", "dora", "singlora", "fourierft", "eva", "none"] = "lora"
    targets: str = "attn"
    rank: int = 8
    alpha: float = 16.0
    rslora: bool = False
    ramp_steps: int = 100          # SingLoRA's T
    n_frequencies: int = 1000      # FourierFT's n
    frequency_bias: bool = False   # FourierFT: low-frequency-biased positions
    bias_sigma: float = 0.1
    seed: int = 0                  # FourierFT positions
    rho: float = 2.0               # EVA: components kept per matrix (ceil(rho r)), the rank cap
    eva_threshold: float = 0.99    # EVA: stop a matrix's SVD once its components' |cos| >= this

    def __post_init__(self):
        if self.method not in METHODS and self.method != NO_ADAPTER:
            raise AdapterError(f"method={self.method!r} is not one of {METHODS + (NO_ADAPTER,)}")
        if self.rank < 1 or self.n_frequencies < 1 or self.ramp_steps < 1:
            raise AdapterError(f"rank, n_frequencies and ramp_steps must be >= 1, got {self.rank}, "
                               f"{self.n_frequencies}, {self.ramp_steps}")
        if not self.rho >= 1.0 or not 0.0 < self.eva_threshold <= 1.0:
            raise AdapterError(f"rho must be >= 1 and eva_threshold in (0, 1], got {self.rho}, "
                               f"{self.eva_threshold}")

    @property
    def enabled(self) -> bool:
        """False for method "none" (no adapters: the trainer trains every parameter)."""
        return self.method != NO_ADAPTER

    @property
    def scale(self) -> float:
        """s = alpha / r (alpha / sqrt(r) with rslora); FourierFT's alpha is used as is."""
        if self.method == "fourierft":
            return self.alpha
        return self.alpha / (math.sqrt(self.rank) if self.rslora else self.rank)


def _kernels(params: dict) -> dict[str, jax.Array]:
    """{module path: kernel} of every dense kernel in ``params``."""
    flat = traverse_util.flatten_dict(params, sep="/")
    return {path[: -len("/kernel")]: w for path, w in flat.items() if path.endswith("/kernel")}


def targeted(params: dict, spec: AdapterSpec) -> dict[str, jax.Array]:
    """{module path: kernel} of the kernels ``spec.targets`` selects (an error if none)."""
    pattern = re.compile(TARGETS.get(spec.targets, spec.targets))
    found = {p: w for p, w in _kernels(params).items() if pattern.search(p)}
    if not found:
        raise AdapterError(f"targets={spec.targets!r} matches no kernel; kernels are "
                           f"{sorted(_kernels(params))}")
    return found


def _layout(path: str, w: jax.Array) -> tuple[tuple[int, ...], int, int]:
    """(leading layer axes, n, m) of a kernel read as a matrix [n, m]."""
    short = path[len("layers/"):] if path.startswith("layers/") else path
    if short not in INPUT_AXES:
        raise AdapterError(f"no input/output layout known for kernel {path!r}")
    lead = 1 if path.startswith("layers/") else 0
    n_in = INPUT_AXES[short]
    shape = w.shape
    n = math.prod(shape[lead: lead + n_in])
    m = math.prod(shape[lead + n_in:])
    return shape[:lead], n, m


def fourier_positions(n: int, m: int, spec: AdapterSpec) -> np.ndarray:
    """The FourierFT positions E for an [n, m] kernel: ``n_frequencies`` distinct flat indices
    into [n, m], drawn from ``spec.seed`` (uniformly, or low-frequency-biased; module
    docstring). The same (n, m, spec) always gives the same positions."""
    count = min(spec.n_frequencies, n * m)
    rng = np.random.default_rng([spec.seed, n, m])
    if not spec.frequency_bias:
        return np.sort(rng.choice(n * m, size=count, replace=False))
    fu = np.minimum(np.arange(n), n - np.arange(n))  # |signed frequency|
    fv = np.minimum(np.arange(m), m - np.arange(m))
    sigma = spec.bias_sigma * min(n, m)
    weight = np.exp(-(fu[:, None] ** 2 + fv[None, :] ** 2) / (2 * sigma ** 2)).reshape(-1)
    return np.sort(rng.choice(n * m, size=count, replace=False, p=weight / weight.sum()))


def attach(params: dict, spec: AdapterSpec, key: jax.Array) -> tuple[dict, dict]:
    """(frozen, trainable): the params unchanged, and each targeted kernel's adapter leaves
    (module docstring), nested by module path."""
    if not spec.enabled:
        raise AdapterError('method "none" attaches no adapter; train the params themselves')
    if spec.method == "eva":
        raise AdapterError("EVA initialises from activations: use jaxlab.peft.eva.eva_init(params, spec, "
                           "batches, model_cfg)")
    trainable = {}
    for i, (path, w) in enumerate(sorted(targeted(params, spec).items())):
        lead, n, m = _layout(path, w)
        k_a = jax.random.fold_in(key, i)
        r = spec.rank
        if spec.method in ("lora", "dora"):
            leaves = {"lora_a": jax.random.normal(k_a, (*lead, n, r), jnp.float32) / math.sqrt(n),
                      "lora_b": jnp.zeros((*lead, r, m), jnp.float32)}
            if spec.method == "dora":
                w_nm = w.reshape(*lead, n, m).astype(jnp.float32)
                leaves["magnitude"] = jnp.linalg.norm(w_nm, axis=-2)
        elif spec.method == "singlora":
            size = max(n, m)
            leaves = {"single_a": jax.random.normal(k_a, (*lead, size, r), jnp.float32) / math.sqrt(size)}
        else:
            count = len(fourier_positions(n, m, spec))
            leaves = {"spectrum": jnp.zeros((*lead, count), jnp.float32)}
        trainable[path] = leaves
    return params, traverse_util.unflatten_dict(
        {f"{p}/{k}": v for p, leaves in trainable.items() for k, v in leaves.items()}, sep="/")


def delta_nm(leaves: dict, spec: AdapterSpec, n: int, m: int, step=None) -> jax.Array:
    """dW [..., n, m] of one kernel's adapter leaves (LoRA, SingLoRA, FourierFT)."""
    if spec.method in ("lora", "dora", "eva"):
        return spec.scale * jnp.einsum("...nr,...rm->...nm", leaves["lora_a"], leaves["lora_b"])
    if spec.method == "singlora":
        a = leaves["single_a"]
        ramp = 1.0 if step is None else jnp.minimum(jnp.asarray(step, jnp.float32) / spec.ramp_steps, 1.0)
        return spec.scale * ramp * jnp.einsum("...nr,...mr->...nm", a[..., :n, :], a[..., :m, :])
    positions = fourier_positions(n, m, spec)
    c = leaves["spectrum"]
    dense_F = jnp.zeros((*c.shape[:-1], n * m), jnp.float32).at[..., positions].set(c)
    return spec.alpha * jnp.real(jnp.fft.ifft2(dense_F.reshape(*c.shape[:-1], n, m)))


def merge(frozen: dict, trainable: dict, spec: AdapterSpec, *, step=None) -> dict:
    """The params with every adapted kernel replaced by its adapted weight (module docstring),
    in the kernel's dtype; ``step`` drives SingLoRA's ramp (None: the ramp is over, u = 1)."""
    flat = traverse_util.flatten_dict(frozen, sep="/")
    adapters = traverse_util.flatten_dict(trainable, sep="/")
    by_module: dict[str, dict] = {}
    for path, leaf in adapters.items():
        module, name = path.rsplit("/", 1)
        by_module.setdefault(module, {})[name] = leaf
    out = dict(flat)
    for module, leaves in by_module.items():
        kernel_path = f"{module}/kernel"
        if kernel_path not in flat:
            raise AdapterError(f"adapter for {module!r} but the params have no {kernel_path!r}")
        w = flat[kernel_path]
        lead, n, m = _layout(module, w)
        w_nm = w.reshape(*lead, n, m).astype(jnp.float32)
        v_nm = w_nm + delta_nm(leaves, spec, n, m, step)
        if spec.method == "dora":
            norm_m = jnp.linalg.norm(v_nm, axis=-2, keepdims=True)
            v_nm = leaves["magnitude"][..., None, :] * v_nm / norm_m
        out[kernel_path] = v_nm.reshape(w.shape).astype(w.dtype)
    return traverse_util.unflatten_dict(out, sep="/")


def inline(frozen: dict, trainable: dict, spec: AdapterSpec) -> dict:
    """The params with each LoRA adapter placed beside its kernel (``lora_a`` = s A,
    ``lora_b`` = B), for :func:`jaxlab.nn.linear.dense` to add s A B to the kernel inside the
    layer scan: the same outputs as :func:`merge`, without materialising every adapted weight
    at once, and the way to train LoRA on a quantized base (:func:`quantize_base`)."""
    if spec.method not in ("lora", "eva"):
        raise AdapterError(f"inline adapters are LoRA (and EVA) only; merge {spec.method!r} adapters instead")
    flat = traverse_util.flatten_dict(frozen, sep="/")
    for path, leaf in traverse_util.flatten_dict(trainable, sep="/").items():
        module, name = path.rsplit("/", 1)
        if f"{module}/kernel" not in flat:
            raise AdapterError(f"adapter for {module!r} but the params have no {module}/kernel")
        flat[f"{module}/{name}"] = spec.scale * leaf if name == "lora_a" else leaf
    return traverse_util.unflatten_dict(flat, sep="/")


def quantize_base(params: dict, fmt: str, targets: str = "all") -> dict:
    """``params`` with the kernels ``targets`` selects block-quantized in ``fmt`` (nf4, int8,
    q8_0, q4_1; :mod:`jaxlab.nn.quant`); a frozen base for :func:`inline` LoRA."""
    from jaxlab.nn.quant import quantize

    selected = targeted(params, AdapterSpec(targets=targets))
    flat = traverse_util.flatten_dict(params, sep="/")
    for module, w in selected.items():
        short = module[len("layers/"):] if module.startswith("layers/") else module
        flat[f"{module}/kernel"] = quantize(np.asarray(w), fmt, n_in=INPUT_AXES[short],
                                            lead=1 if module.startswith("layers/") else 0)
    return traverse_util.unflatten_dict(flat, sep="/")


def count_trainable(trainable: dict) -> int:
    """The number of trainable scalars."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(trainable)))
