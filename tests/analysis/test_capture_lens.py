"""Capture and interventions through transformer.apply (pure arguments), the logit lens, and
super-weight detection on a planted super weight."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.analysis import lens
from jaxlab.kernels.attention import attention_mask
from jaxlab.models import transformer
from jaxlab.nn.linear import dense
from jaxlab.nn.norms import norm

CFG = transformer.Config(vocab_size=64, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=48)


@pytest.fixture(scope="module")
def params():
    return transformer.init(CFG, jax.random.key(0))


def tokens():
    return jax.random.randint(jax.random.key(1), (2, 7), 0, CFG.vocab_size)


def test_captured_points_add_up_to_the_stream(params):
    logits, hidden, seen = transformer.apply(params, tokens(), CFG, return_hidden=True,
                                             capture=("resid", "attn_out", "mlp_hidden", "mlp_out"))
    np.testing.assert_allclose(logits, transformer.apply(params, tokens(), CFG), atol=1e-6)
    assert seen["mlp_hidden"].shape == (3, 2, 7, 48)
    np.testing.assert_allclose(seen["resid"], hidden[:-1], atol=1e-6)
    np.testing.assert_allclose(seen["resid"] + seen["attn_out"] + seen["mlp_out"], hidden[1:], atol=1e-5)
    with pytest.raises(ValueError, match="unknown capture point"):
        transformer.apply(params, tokens(), CFG, capture=("attn_weights",))


@pytest.mark.parametrize("window", [None, 3])
def test_captured_attention_probabilities_are_the_layers_mixing_weights(params, window):
    """Rows sum to 1 over the allowed keys and are 0 elsewhere (causal, window, segments), and
    probs @ V @ W_o gives back the captured attention output, with GQA (4 query heads, 2 kv)."""
    cfg = transformer.Config(**{**CFG.__dict__, "window": window})
    segs = jnp.array([[1, 1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 1, 1, 1]])
    base = transformer.apply(params, tokens(), cfg, segment_ids_BT=segs)
    logits, seen = transformer.apply(params, tokens(), cfg, segment_ids_BT=segs,
                                     capture=("resid", "attn_out", "attn_probs"))
    np.testing.assert_allclose(logits, base, atol=1e-5)  # the explicit path computes the same layer
    probs = np.asarray(seen["attn_probs"])
    assert probs.shape == (3, 2, 4, 7, 7) and probs.dtype == np.float32
    allowed = np.asarray(attention_mask(7, 7, causal=True, window=window, q_segment_ids_BT=segs,
                                        kv_segment_ids_BS=segs))  # [B, T, S]
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    assert np.all(probs[:, ~np.broadcast_to(allowed[:, None], probs.shape[1:])] == 0.0)
    assert probs[0, 0, 0, 4, 3] == 0.0 and probs[0, 0, 0, 4, 4] == 1.0  # a new segment starts at 4
    for layer in range(3):
        lp = jax.tree.map(lambda a: a[layer], params["layers"])
        h = norm(lp["attn_norm"], seen["resid"][layer], cfg.norm_type, cfg.norm_eps)
        v_BSKD = dense(lp["attn"]["v"], h, "btd,dhk->bthk")
        v_BSHD = jnp.repeat(v_BSKD, 2, axis=2)  # query head h reads kv head h // 2
        mixed = jnp.einsum("bhts,bshd->bthd", seen["attn_probs"][layer], v_BSHD)
        np.testing.assert_allclose(dense(lp["attn"]["o"], mixed, "bthk,hkd->btd"), seen["attn_out"][layer],
                                   atol=1e-5)


def test_interventions_are_pure_and_do_what_they_say(params):
    ones = {"head_scale": jnp.ones((3, 4)), "mlp_hidden_scale": jnp.ones((3, 48)), "resid_add": jnp.zeros((3, 32))}
    base = transformer.apply(params, tokens(), CFG)
    np.testing.assert_allclose(transformer.apply(params, tokens(), CFG, intervention=ones), base, atol=1e-6)
    # zeroing every head of every layer leaves only the MLP path: attn_out is 0
    _, seen = transformer.apply(params, tokens(), CFG, intervention={"head_scale": jnp.zeros((3, 4))},
                                capture=("attn_out",))
    assert float(jnp.abs(seen["attn_out"]).max()) == 0.0
    # ablating one MLP unit zeroes it in the captured hidden, and only it
    scale = jnp.ones((3, 48)).at[1, 5].set(0.0)
    _, seen = transformer.apply(params, tokens(), CFG, intervention={"mlp_hidden_scale": scale}, capture=("mlp_hidden",))
    assert float(jnp.abs(seen["mlp_hidden"][1, :, :, 5]).max()) == 0.0 and float(jnp.abs(seen["mlp_hidden"][0, :, :, 5]).max()) > 0
    # jit-able with the intervention as an argument
    f = jax.jit(lambda iv: transformer.apply(params, tokens(), CFG, intervention=iv))
    assert not np.allclose(f({"resid_add": jnp.ones((3, 32))}), base)
    with pytest.raises(ValueError, match=r"must be \[L, 4\]"):
        transformer.apply(params, tokens(), CFG, intervention={"head_scale": jnp.ones((3, 5))})


def test_logit_lens_ends_at_the_model_output(params, tmp_path):
    lp = lens.logit_lens(params, CFG, tokens())
    assert lp.shape == (4, 2, 7, 64)
    np.testing.assert_allclose(lp[-1], jax.nn.log_softmax(transformer.apply(params, tokens(), CFG)), atol=1e-5)
    answer = jnp.argmax(lp[-1][:, -1], axis=-1)
    ranks = lens.answer_ranks(lp, answer)
    assert ranks.shape == (4, 2) and ranks[-1].tolist() == [0, 0]
    lens.plot_answer_ranks(ranks, tmp_path / "lens.png", labels=["a", "b"])
    assert (tmp_path / "lens.png").read_bytes()[:4] == b"\x89PNG"


def test_a_planted_super_weight_is_found_and_zeroing_it_matters(params):
    planted = lens.set_down_weight(params, 1, 7, 3, 40.0)
    up = planted["layers"]["mlp"]["up"]["kernel"].at[1, :, 7].multiply(20.0)  # a huge hidden unit
    planted = {**planted, "layers": {**planted["layers"], "mlp": {**planted["layers"]["mlp"],
                                                                  "up": {"kernel": up}}}}
    found = lens.find_super_weight(planted, CFG, tokens())
    assert (found["layer"], found["row"], found["col"]) == (1, 7, 3) and found["value"] == 40.0
    zeroed = lens.set_down_weight(planted, 1, 7, 3, 0.0)
    change = jnp.abs(transformer.apply(zeroed, tokens(), CFG) - transformer.apply(planted, tokens(), CFG)).max()
    assert float(change) > 1.0


def test_rtn_holding_out_an_outlier_keeps_the_other_weights_finer():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 64)).astype(np.float32) * 0.1
    w[2, 10] = 30.0
    plain = lens.rtn_quantize(w, 4, 64)
    held = lens.rtn_quantize(w, 4, 64, keep=[(2, 10)])
    others = np.ones_like(w, bool)
    others[2, 10] = False
    assert held[2, 10] == 30.0
    assert np.abs(held - w)[2][others[2]].max() < 0.1 * np.abs(plain - w)[2][others[2]].max()
    with pytest.raises(ValueError, match="multiple of block"):
        lens.rtn_quantize(w, 4, 48)


def test_zeroing_the_largest_down_weights_skips_the_excluded_entry(params):
    planted = lens.set_down_weight(params, 1, 7, 3, 40.0)
    down = np.asarray(planted["layers"]["mlp"]["down"]["kernel"])
    out = np.asarray(lens.zero_largest_down_weights(planted, 5, exclude=[(1, 7, 3)])["layers"]["mlp"]["down"]["kernel"])
    assert out[1, 7, 3] == 40.0
    zeroed = (out == 0) & (down != 0)
    assert zeroed.sum() == 5
    others = np.abs(down).copy()
    others[1, 7, 3] = 0
    assert np.abs(down[zeroed]).min() >= np.sort(others.reshape(-1))[-5]  # the 5 largest others


def test_rtn_of_every_down_projection_holds_out_per_layer(params):
    planted = lens.set_down_weight(params, 1, 7, 3, 40.0)
    q = np.asarray(lens.rtn_quantize_down(planted, 4, 16, keep=[(1, 7, 3)])["layers"]["mlp"]["down"]["kernel"])
    down = np.asarray(planted["layers"]["mlp"]["down"]["kernel"])
    assert q[1, 7, 3] == 40.0
    np.testing.assert_allclose(q[0], lens.rtn_quantize(down[0], 4, 16))
