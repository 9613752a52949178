"""ModernBERT parity with transformers: f32 logits within 1e-4 in both directions (their
checkpoint in jaxlab, jaxlab's saved folder in transformers), MLM and classification heads."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from jaxlab.interop import hf_encoder  # noqa: E402
from jaxlab.interop.hf import HFCheckpointError  # noqa: E402
from jaxlab.models import encoder  # noqa: E402

T = 20
TOL = 1e-4


def hf_config(**overrides):
    base = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                local_attention=8, global_attn_every_n_layers=3, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                cls_token_id=1, sep_token_id=2, max_position_embeddings=64)
    return transformers.ModernBertConfig(**(base | overrides))


def perturbed(model, seed):
    """Every parameter moved off its init (norm scales off 1, biases off 0)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 101, (2, T))
    mask = np.ones((2, T), np.int64)
    mask[1, 14:] = 0  # row 1 is padded; only its first 14 positions are compared
    return ids, mask


def real(x, mask):
    return [x[0], x[1, : mask[1].sum()]]


def torch_logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()


def max_diff(a, b, mask):
    return max(float(np.abs(x - y).max()) for x, y in zip(real(a, mask), real(b, mask)))


@pytest.fixture(scope="module")
def mlm_folder(tmp_path_factory):
    model = perturbed(transformers.ModernBertForMaskedLM(hf_config()), 0)
    folder = tmp_path_factory.mktemp("modernbert_mlm")
    model.save_pretrained(folder)
    return model, folder


def test_their_masked_lm_loads_with_the_same_logits(mlm_folder):
    model, folder = mlm_folder
    cfg, params, arch = hf_encoder.load(folder)
    assert arch == "ModernBertForMaskedLM"
    assert cfg.types == ("global", "local", "local", "global") and cfg.local_window == 8
    assert (cfg.global_rope_base, cfg.local_rope_base) == (160_000.0, 10_000.0)
    ids, mask = inputs()
    ref = torch_logits(model, ids, mask)
    ours = np.asarray(encoder.apply(params, jnp.asarray(ids), cfg, segment_ids_BT=jnp.asarray(mask)))
    assert ours.shape == ref.shape == (2, T, 101)
    assert max_diff(ours, ref, mask) < TOL
    assert np.abs(ref).max() > 1.0  # logits of a real scale, so the tolerance means something
    # the symmetric window matters here: without it (one global window) the logits differ
    wide = encoder.apply(params, jnp.asarray(ids), cfg.__class__(**{**cfg.__dict__, "local_window": 1000}),
                         segment_ids_BT=jnp.asarray(mask))
    assert max_diff(np.asarray(wide), ref, mask) > 100 * TOL


def test_our_masked_lm_loads_in_transformers_with_the_same_logits(tmp_path):
    cfg = encoder.EncoderConfig(vocab_size=97, d_model=48, n_layers=3, n_heads=3, head_dim=16, mlp_dim=80,
                                global_every=2, local_window=6, norm_bias=True, head_bias=True)
    rng = np.random.default_rng(2)  # random params of init's shapes (numpy: nothing to compile)
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: (rng.normal(0, 0.2, x.shape) + ("scale" in jax.tree_util.keystr(path))).astype(np.float32),
        jax.eval_shape(encoder.init, cfg, jax.random.key(1)))
    folder = hf_encoder.save(tmp_path / "ours", cfg, params, extra_config={"pad_token_id": 0})
    hf = json.loads((folder / "config.json").read_text())
    assert hf["layer_types"] == ["full_attention", "sliding_attention", "full_attention"]
    model = transformers.AutoModelForMaskedLM.from_pretrained(folder).eval()
    assert type(model).__name__ == "ModernBertForMaskedLM"
    ids, mask = inputs()
    ids = ids % 97
    ours = np.asarray(encoder.apply(params, jnp.asarray(ids), cfg, segment_ids_BT=jnp.asarray(mask)))
    assert max_diff(ours, torch_logits(model, ids, mask), mask) < TOL
    # and back: save -> load gives the same params bit for bit
    cfg2, params2, _ = hf_encoder.load(folder)
    assert cfg2.types == cfg.types and cfg2.norm_bias and cfg2.head_bias
    for path, x in jax.tree_util.tree_leaves_with_path(params):
        if "attn_norm" in jax.tree_util.keystr(path):
            continue  # layer 0's attention norm is not stored (ModernBERT has none)
        y = dict(jax.tree_util.tree_leaves_with_path(params2))[path]
        assert np.array_equal(np.asarray(x), np.asarray(y)), path
    assert np.array_equal(params["layers"]["attn_norm"]["scale"][1:], params2["layers"]["attn_norm"]["scale"][1:])


@pytest.mark.parametrize("arch, pooling", [("ModernBertForTokenClassification", "cls"),
                                           ("ModernBertForSequenceClassification", "mean")])
def test_classifiers_both_ways(tmp_path, arch, pooling):
    hf_cls = getattr(transformers, arch)
    model = perturbed(hf_cls(hf_config(num_labels=5, classifier_pooling=pooling, classifier_bias=True)), 3)
    model.save_pretrained(tmp_path / "theirs")
    cfg, params, got = hf_encoder.load(tmp_path / "theirs")
    assert got == arch and cfg.pooling == pooling and params["classifier"]["out"]["kernel"].shape == (64, 5)
    ids, mask = inputs()
    seg = jnp.asarray(mask)
    h = encoder.encode(params, jnp.asarray(ids), cfg, segment_ids_BT=seg)
    if arch == "ModernBertForTokenClassification":
        ours = np.asarray(encoder.token_logits(params, h, cfg))
        assert max_diff(ours, torch_logits(model, ids, mask), mask) < TOL
    else:
        ours = np.asarray(encoder.sequence_logits(params, h, cfg, seg))
        assert np.abs(ours - torch_logits(model, ids, mask)).max() < TOL
    # our save of the same params loads in transformers with the same logits
    hf_encoder.save(tmp_path / "ours", cfg, params, architecture=arch,
                    extra_config={"id2label": {str(i): f"L{i}" for i in range(5)}})
    again = hf_cls.from_pretrained(tmp_path / "ours").eval()
    assert again.config.id2label[3] == "L3"
    theirs = torch_logits(again, ids, mask)
    if arch == "ModernBertForTokenClassification":
        assert max_diff(ours, theirs, mask) < TOL
    else:
        assert np.abs(ours - theirs).max() < TOL


def test_refusals_name_the_field(tmp_path, mlm_folder):
    _, folder = mlm_folder
    hf = json.loads((folder / "config.json").read_text())
    for field, value, match in [("attention_bias", True, "attention_bias=true"),
                                ("hidden_activation", "tanh", "hidden_activation='tanh'"),
                                ("architectures", ["ModernBertModel"], "architectures=.*ModernBertModel"),
                                ("tie_word_embeddings", False, "tie_word_embeddings=false")]:
        with pytest.raises(HFCheckpointError, match=match):
            hf_encoder.config_from_hf(hf | {field: value})
    with pytest.raises(HFCheckpointError, match="rope_type='yarn'"):
        hf_encoder.config_from_hf(hf | {"rope_parameters": {"full_attention": {"rope_type": "yarn"}}})
    cfg, params, _ = hf_encoder.load(folder)
    with pytest.raises(HFCheckpointError, match="already holds a checkpoint"):
        hf_encoder.save(folder, cfg, params)
    with pytest.raises(HFCheckpointError, match="no 'classifier' head"):
        hf_encoder.save(tmp_path / "x", cfg, params, architecture="ModernBertForTokenClassification")
    # a tensor of the wrong shape is named with the config that implies another
    tensors = hf_encoder.to_hf_tensors(cfg, params, "ModernBertForMaskedLM")
    tensors["model.layers.1.mlp.Wo.weight"] = tensors["model.layers.1.mlp.Wo.weight"][:, :10]
    with pytest.raises(HFCheckpointError, match=r"model.layers.1.mlp.Wo.weight has shape \(64, 10\)"):
        hf_encoder.from_hf_tensors(cfg, tensors.__getitem__, set(tensors), "ModernBertForMaskedLM", "x")
    tensors = hf_encoder.to_hf_tensors(cfg, params, "ModernBertForMaskedLM") | {"extra.weight": np.zeros(1)}
    with pytest.raises(HFCheckpointError, match="does not explain: extra.weight"):
        hf_encoder.from_hf_tensors(cfg, tensors.__getitem__, set(tensors), "ModernBertForMaskedLM", "x")
