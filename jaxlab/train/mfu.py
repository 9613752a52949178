"""Model FLOPs utilisation: the model's FLOP count per token against the device's peak.

Matmul FLOPs of one forward pass per token of the decoder (``jaxlab.models.transformer``),
with D model width, H heads, K kv heads, Dh head dim, F MLP width, V vocab, T sequence length:

    per layer   2 * D * Dh * (2 H + 2 K)              q, k, v, o projections
              + 2 * D * F * (3 if gated else 2)       MLP (SwiGLU / GeGLU have three matrices)
              + 2 * 2 * T * H * Dh                    scores q k^T and weights @ v
    once        2 * D * V                             unembedding

Training counts 3x the forward (backward = 2x forward), as in the PaLM paper's MFU (appendix B,
6N + 12 L H Dh T per token). Attention is counted over the full T x T square even for causal
models, which is that paper's convention; recomputation (remat) is not counted, so MFU measures
useful work. Norms, softmax and the optimizer are left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: this module imports without JAX (scripts' parent processes)
    from jaxlab.models import transformer

# Dense bf16 peak FLOP/s (no sparsity) by ``jax.Device.device_kind`` substring, from vendor sheets.
PEAK_BF16_FLOPS = {
    "H100 80GB HBM3": 989.4e12,  # H100 SXM5
    "H100 PCIe": 756.0e12,
    "H100": 989.4e12,
    "H200": 989.4e12,
    "B200": 2250e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


def forward_flops_per_token(cfg: transformer.Config, seq_len: int) -> float:
    """Matmul FLOPs of one forward pass, per token, at sequence length ``seq_len``."""
    D, H, K, Dh, F = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.mlp_dim
    # gated: gate, up and down [D, F]; fan: periodic [D, F/4], plain [D, F/2], down [F, D]
    mlp_matrices = {"fan": 1.75}.get(cfg.mlp_type, 3)
    per_layer = 2 * D * Dh * (2 * H + 2 * K) + 2 * D * F * mlp_matrices + 4 * seq_len * H * Dh
    return cfg.n_layers * per_layer + 2 * D * cfg.vocab_size


def train_flops_per_token(cfg: transformer.Config, seq_len: int) -> float:
    return 3 * forward_flops_per_token(cfg, seq_len)


def peak_flops(device_kind: str) -> float | None:
    """The dense bf16 peak of a device by its ``device_kind``; None if unknown."""
    for name in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):  # most specific first
        if name.lower() in device_kind.lower():
            return PEAK_BF16_FLOPS[name]
    return None


def mfu(tokens_per_s: float, cfg: transformer.Config, seq_len: int, peak: float) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the peak."""
    return tokens_per_s * train_flops_per_token(cfg, seq_len) / peak


def cpu_model() -> str:
    """The host processor's model name (``/proc/cpuinfo``'s first "model name"; else what
    :func:`platform.processor` says; else "unknown"), printed beside CPU benchmarks."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
