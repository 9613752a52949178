"""Block-quantized kernels: each format's rounding error bound, GGUF blocks read exactly as the
GGUF loader dequantizes them, and a model whose kernels stay quantized (with or without a LoRA
adapter beside them) computes what it computes with the dequantized weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models import transformer
from jaxlab.nn.quant import NF4_LEVELS, QuantError, from_gguf_blocks, nbytes, quantize
from jaxlab.peft import AdapterSpec, attach, inline, merge, quantize_base

CFG = transformer.Config(vocab_size=64, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                         mlp_dim=128)
apply = jax.jit(transformer.apply, static_argnums=2)


@pytest.mark.parametrize("fmt", ["nf4", "int8", "q8_0", "q4_1"])
def test_round_trip_error_is_within_the_format_bound(fmt):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 128, 4, 16)).astype(np.float32)  # [L, in, heads, head_dim]
    q = quantize(w, fmt, n_in=1, lead=1)
    back = np.asarray(q.dequantize())
    assert back.shape == w.shape
    blocks = np.swapaxes(w.reshape(3, 128, 64), -1, -2).reshape(3, 64, -1, q.codes.shape[-1] * (2 if fmt in ("nf4", "q4_1") else 1))
    absmax = np.abs(blocks).max(-1)
    err = np.abs(np.swapaxes((back - w).reshape(3, 128, 64), -1, -2)).reshape(blocks.shape).max(-1)
    if fmt == "nf4":
        bound = absmax * np.diff(NF4_LEVELS).max() / 2
    elif fmt in ("int8", "q8_0"):
        bound = absmax / 127 * 0.5 * 1.01 + 1e-6
    else:
        spread = blocks.max(-1) - blocks.min(-1)
        bound = spread / 15 * 0.5 * 1.01 + np.abs(blocks).max(-1) * 1e-3  # float16 d and m
    assert np.all(err <= bound + 1e-6)
    bits = {"nf4": 4, "q4_1": 4, "int8": 8, "q8_0": 8}[fmt]
    assert nbytes(q) < w.nbytes * (bits + 1) / 32 + 1  # codes plus per-block constants


def test_gguf_blocks_dequantize_as_the_gguf_loader_does():
    gguf = pytest.importorskip("gguf", reason="gguf is not installed")
    from jaxlab.interop.gguf import dequantize as loader_dequantize
    rng = np.random.default_rng(1)
    w_MN = rng.standard_normal((48, 64)).astype(np.float32)  # a GGUF tensor: [out, in]
    order = rng.permutation(48)
    for name, qtype in (("Q8_0", gguf.GGMLQuantizationType.Q8_0), ("Q4_1", gguf.GGMLQuantizationType.Q4_1)):
        raw = gguf.quants.quantize(w_MN, qtype)
        expected_MN = loader_dequantize(raw, name, (48, 64))
        q = from_gguf_blocks(raw, name, (64, 48), row_order=order)
        np.testing.assert_array_equal(np.asarray(q.dequantize()), expected_MN[order].T)


def test_a_quantized_base_with_an_inline_lora_equals_the_dequantized_merge():
    params = transformer.init(CFG, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 10), 0, CFG.vocab_size)
    base = quantize_base(params, "nf4", "all")
    assert nbytes(base) < 0.5 * nbytes(params)
    deq = jax.tree.map(lambda x: x.dequantize() if hasattr(x, "dequantize") else x, base,
                       is_leaf=lambda x: hasattr(x, "dequantize"))
    np.testing.assert_allclose(apply(base, tokens, CFG), apply(deq, tokens, CFG), atol=1e-5, rtol=1e-5)
    spec = AdapterSpec(targets="all", rank=4, alpha=8.0)
    _, trainable = attach(params, spec, jax.random.key(2))
    trainable = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(3), x.shape), trainable)
    np.testing.assert_allclose(apply(inline(base, trainable, spec), tokens, CFG),
                               apply(merge(deq, trainable, spec), tokens, CFG), atol=1e-4, rtol=1e-4)

    def loss(t):
        logits = transformer.apply(inline(base, t, spec), tokens[:, :-1], CFG)
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], -1).mean()
    grads = jax.jit(jax.grad(loss))(trainable)
    assert jax.tree.structure(grads) == jax.tree.structure(trainable)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


def test_shapes_a_format_cannot_take_are_refused():
    with pytest.raises(QuantError, match="divisible by 64"):
        quantize(np.zeros((48, 16), np.float32), "nf4")
    with pytest.raises(QuantError, match="format 'q2_k'"):
        quantize(np.zeros((64, 16), np.float32), "q2_k")
