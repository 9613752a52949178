"""The Mamba language model: the extended selective scan (state in and out, gate, delta bias),
decoding step by step equals the full forward pass, training lowers the loss, and Hugging Face
``MambaForCausalLM`` parity in both directions (random small config, no downloads)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.kernels import UnsupportedError, selective_scan
from jaxlab.models import mamba

CFG = mamba.Config(vocab_size=64, d_model=32, n_layers=2, d_state=8, d_conv=4)


def test_scan_state_chains_and_options_follow_their_formulas():
    keys = jax.random.split(jax.random.key(0), 6)
    B, T, D, N = 2, 10, 6, 4
    x = jax.random.normal(keys[0], (B, T, D))
    dt = jax.random.normal(keys[1], (B, T, D))
    A = -jnp.exp(jax.random.normal(keys[2], (D, N)))
    Bm, Cm = jax.random.normal(keys[3], (B, T, N)), jax.random.normal(keys[4], (B, T, N))
    z = jax.random.normal(keys[5], (B, T, D))
    bias = jnp.linspace(-1, 1, D)
    kw = dict(z_BTD=None, delta_bias_D=bias, delta_softplus=True, impl="xla")
    full, h_full = selective_scan(x, dt, A, Bm, Cm, None, return_state=True, **kw)
    first, h = selective_scan(x[:, :4], dt[:, :4], A, Bm[:, :4], Cm[:, :4], None, return_state=True, **kw)
    second, h2 = selective_scan(x[:, 4:], dt[:, 4:], A, Bm[:, 4:], Cm[:, 4:], None, h0_BDN=h, return_state=True, **kw)
    np.testing.assert_allclose(jnp.concatenate([first, second], 1), full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h2, h_full, rtol=1e-5, atol=1e-6)
    plain = selective_scan(x, jax.nn.softplus(dt + bias), A, Bm, Cm, jnp.ones(D), impl="xla")
    gated = selective_scan(x, dt, A, Bm, Cm, jnp.ones(D), z_BTD=z, delta_bias_D=bias, delta_softplus=True, impl="xla")
    np.testing.assert_allclose(gated, plain * jax.nn.silu(z), rtol=1e-5, atol=1e-6)
    with pytest.raises(UnsupportedError, match="no gate"):
        selective_scan(x, dt, A, Bm, Cm, z_BTD=z, impl="pallas")


def test_decoding_token_by_token_equals_the_full_forward():
    params = mamba.init(CFG, jax.random.key(1))
    tokens = jax.random.randint(jax.random.key(2), (2, 9), 0, CFG.vocab_size)
    full = jax.jit(mamba.apply, static_argnums=2)(params, tokens, CFG)
    logits, cache = mamba.prefill(params, tokens[:, :4], CFG)
    np.testing.assert_allclose(logits, full[:, :4], rtol=1e-5, atol=1e-5)
    step = jax.jit(mamba.decode_step, static_argnums=2)
    for t in range(4, 9):
        out, cache = step(params, tokens[:, t], CFG, cache)
        np.testing.assert_allclose(out, full[:, t], rtol=1e-4, atol=1e-5)


def test_training_lowers_the_loss():
    params = mamba.init(CFG, jax.random.key(3))
    tokens = jnp.tile(jnp.arange(8), (4, 3))  # a repeating pattern the model can learn

    @jax.jit
    def loss(p):
        logits = mamba.apply(p, tokens[:, :-1], CFG)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    opt = optax.adam(3e-3)
    state = opt.init(params)
    first = float(loss(params))
    grad = jax.jit(jax.grad(loss))
    for _ in range(40):
        updates, state = opt.update(grad(params), state)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < 0.5 * first


torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[torch]')")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")


@pytest.mark.parametrize("tied", [True, False])
def test_hugging_face_parity_both_ways(tmp_path, tied):
    from jaxlab.interop import hf_mamba

    config = transformers.MambaConfig(vocab_size=64, hidden_size=32, state_size=8, num_hidden_layers=2,
                                      expand=2, conv_kernel=4, tie_word_embeddings=tied)
    torch.manual_seed(0)
    model = transformers.MambaForCausalLM(config).eval()
    with torch.no_grad():  # every tensor random, so that a mix-up between them shows
        for p in model.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "hf")
    ids = np.array([[1, 5, 9, 2, 33, 17, 60, 4, 8, 8]])
    with torch.no_grad():
        theirs = model(torch.tensor(ids)).logits.numpy()
    cfg, params = hf_mamba.load(tmp_path / "hf")
    assert cfg.tie_embeddings == tied and cfg.d_inner == 64 and cfg.rank == 2
    ours = np.asarray(mamba.apply(params, jnp.asarray(ids), cfg))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    hf_mamba.save(tmp_path / "back", cfg, params)
    again = transformers.MambaForCausalLM.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        np.testing.assert_allclose(again(torch.tensor(ids)).logits.numpy(), theirs, rtol=1e-4, atol=1e-4)


def test_unexpressible_configs_are_refused():
    from jaxlab.interop import hf_mamba
    with pytest.raises(hf_mamba.HFMambaError, match="use_bias"):
        hf_mamba.config_from_hf({"model_type": "mamba", "use_bias": True, "hidden_size": 8, "vocab_size": 8,
                                 "num_hidden_layers": 1})
