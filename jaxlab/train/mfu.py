"""Model FLOPs utilisation: the model's FLOP count per token against the device's peak.

Matmul FLOPs of one forward pass per token of the decoder (``jaxlab.models.transformer``),
with D model width, H heads, K kv heads, Dh head dim, F MLP width, V vocab, T sequence length:

    per layer   2 * D * Dh * (2 H + 2 K)              q, k, v, o projections
              + 2 * D * F * (3 if gated else 2)       MLP (SwiGLU / GeGLU have three matrices)
              + 2 * 2 * T * H * Dh                    scores q k^T and weights @ v
    once        2 * D * V                             unembedding

A layer with sliding-window attention (``window``) scores min(T, window) keys per query.

The Byte Latent Transformer (:func:`blt_forward_flops_per_byte`) counts the same way, per byte
with d local width, D latent width, L mean patch length, k = ``decoder_kv_per_patch``, V vocab:

    local encoder and decoder layers   per byte, context min(T, local_window)
    patch cross-attention              q, o per patch 4 d^2; k, v per byte 4 d^2; scores 4 L d
                                       per patch
    to / from the latent               per patch 2 d D + 2 D k d
    latent layers                      per patch, context T / L patches
    byte cross-attention               q, o per byte 4 d^2; k, v per patch 4 k d^2; scores
                                       4 k d per byte
    head                               per byte 2 d V

Hashed n-gram embeddings are lookups (no FLOPs); per-patch terms are divided by L. Training a
BLT with "entropy" patching adds one forward of the frozen entropy model per byte
(:func:`blt_train_flops_per_byte`).

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


def layer_flops_per_token(cfg: transformer.Config, seq_len: int) -> float:
    """Matmul FLOPs of the ``cfg.n_layers`` blocks' forward pass, per token (no unembedding)."""
    D, H, K, Dh, F = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.mlp_dim
    context = min(seq_len, cfg.window) if cfg.window else seq_len
    # gated: gate, up and down [D, F]; fan: periodic [D, F/4], plain [D, F/2], down [F, D]
    mlp_matrices = {"fan": 1.75}.get(cfg.mlp_type, 3)
    per_layer = 2 * D * Dh * (2 * H + 2 * K) + 2 * D * F * mlp_matrices + 4 * context * H * Dh
    return cfg.n_layers * per_layer


def forward_flops_per_token(cfg: transformer.Config, seq_len: int) -> float:
    """Matmul FLOPs of one forward pass, per token, at sequence length ``seq_len``."""
    return layer_flops_per_token(cfg, seq_len) + 2 * cfg.d_model * cfg.vocab_size


def blt_forward_flops_per_byte(cfg, seq_len: int, mean_patch_len: float) -> float:
    """Matmul FLOPs of one BLT (:mod:`jaxlab.models.blt` ``Config``) forward pass per byte, at
    ``seq_len`` bytes with patches of ``mean_patch_len`` bytes on average (module docstring);
    the entropy model is not included (:func:`blt_train_flops_per_byte` adds it)."""
    if mean_patch_len < 1:
        raise ValueError(f"mean_patch_len must be >= 1, got {mean_patch_len}")
    d, D, k, L = cfg.d_local, cfg.d_model, cfg.decoder_kv_per_patch, mean_patch_len
    per_byte = (layer_flops_per_token(cfg.encoder, seq_len) + layer_flops_per_token(cfg.decoder, seq_len)
                + 4 * d * d + 4 * d * d + 4 * k * d + 2 * d * cfg.vocab_size)
    per_patch = (4 * d * d + 4 * L * d + 2 * d * D + 2 * D * k * d + 4 * k * d * d
                 + layer_flops_per_token(cfg.latent, max(1, round(seq_len / L))))
    return per_byte + per_patch / L


def blt_train_flops_per_byte(cfg, seq_len: int, mean_patch_len: float) -> float:
    """3x the BLT's forward, plus one forward of the frozen entropy model per byte ("entropy"
    patching: it places the patches but is not trained with the BLT)."""
    entropy = forward_flops_per_token(cfg.entropy_model, seq_len) if cfg.patching == "entropy" else 0.0
    return 3 * blt_forward_flops_per_byte(cfg, seq_len, mean_patch_len) + entropy


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
