"""SmolLM2 loaded with its Q4_1 layer kernels kept in their GGUF blocks: the same logits as the
dequantized load, at a fraction of the memory, and LoRA trains on top of it."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.interop import gguf
from jaxlab.models import transformer
from jaxlab.nn.quant import QuantizedKernel, nbytes
from jaxlab.peft import AdapterSpec, attach, inline


def test_kept_blocks_give_the_dequantized_logits(smollm2_path, smollm2):
    cfg, params, tok = smollm2
    qcfg, qparams, _ = gguf.load(smollm2_path, keep_quantized=True)
    assert qcfg == cfg
    kept = [p for p in ("q", "k", "v", "o") if isinstance(qparams["layers"]["attn"][p]["kernel"], QuantizedKernel)]
    kept += [p for p in ("gate", "up", "down") if isinstance(qparams["layers"]["mlp"][p]["kernel"], QuantizedKernel)]
    assert len(kept) >= 5  # the file stores (nearly) all layer kernels as Q4_1
    layer_bytes = nbytes(params["layers"])
    assert nbytes(qparams["layers"]) < 0.35 * layer_bytes
    ids = jnp.asarray(tok.encode("The capital of France is", bos=tok.add_bos))[None]
    apply = jax.jit(transformer.apply, static_argnums=2)
    np.testing.assert_allclose(apply(qparams, ids, cfg), apply(params, ids, cfg), rtol=1e-4, atol=1e-4)

    spec = AdapterSpec(targets="qv", rank=4, alpha=8.0)
    _, trainable = attach(params, spec, jax.random.key(0))

    def loss(t):
        logits = transformer.apply(inline(qparams, t, spec), ids[:, :-1], cfg)
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), ids[:, 1:, None], -1).mean()
    grads = jax.jit(jax.grad(loss))(trainable)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads["layers"]["attn"]["q"]["lora_b"]))
