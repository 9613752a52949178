"""The hidden attention of a Mamba reproduces its selective scan: alpha u + D u, gated, equals
the scan's output in every layer (selective and time-invariant), and alpha is causal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.analysis.hidden_attention import attention_output, layer_hidden_attention, model_hidden_attention
from jaxlab.kernels import selective_scan
from jaxlab.models import mamba


@pytest.mark.parametrize("selective", [True, False])
def test_alpha_reproduces_every_layers_scan_output(selective):
    cfg = mamba.Config(vocab_size=32, d_model=16, n_layers=2, d_state=4, selective=selective)
    params = mamba.init(cfg, jax.random.key(0))
    # larger step sizes than at init, so that the decays between positions matter
    params["layers"]["dt_proj"]["bias"] = params["layers"]["dt_proj"]["bias"] + 2.0
    tokens = jax.random.randint(jax.random.key(1), (2, 12), 0, cfg.vocab_size)

    @jax.jit
    def per_layer(params, tokens):  # (alpha's output, the scan's, alpha's residual update, the next stream)
        _, hidden = mamba.apply(params, tokens, cfg, return_hidden=True)
        out = []
        for l in range(cfg.n_layers):
            layer = jax.tree.map(lambda p: p[l], params["layers"])
            alpha, s = layer_hidden_attention(layer, hidden[l], cfg)
            scan = selective_scan(s["u"], s["dt"], s["A"], s["B"], s["C"], s["D"], z_BTD=s["z"],
                                  delta_bias_D=s["dt_bias"], delta_softplus=True, impl="xla")
            y = attention_output(alpha, s)
            update = hidden[l] + jnp.einsum("bte,ed->btd", y, layer["out_proj"]["kernel"])
            out.append((y, scan, update, hidden[l + 1]))
        return out

    for y, scan, update, next_stream in per_layer(params, tokens):
        np.testing.assert_allclose(y, scan, rtol=1e-5, atol=1e-6)
        assert np.abs(np.asarray(scan)).max() > 1e-3  # a non-trivial output
        np.testing.assert_allclose(update, next_stream, rtol=1e-5, atol=1e-5)
    alpha_all = jax.jit(model_hidden_attention, static_argnums=2)(params, tokens, cfg)
    assert alpha_all.shape == (2, 2, cfg.d_inner, 12, 12)
    assert float(jnp.abs(jnp.triu(alpha_all, k=1)).max()) == 0.0  # causal
    assert float(jnp.abs(jnp.tril(alpha_all, k=-1)).max()) > 0.0
