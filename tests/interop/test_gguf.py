"""GGUF in and out of jaxlab on tiny random models: each dequantizer against the gguf package's
reference, the q/k row permutation, refusals, and save -> load round trips."""

import dataclasses
import struct

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'gguf>=0.17')")
tokenizers = pytest.importorskip("tokenizers", reason="the tokenizers package is not installed")

import jax.numpy as jnp  # noqa: E402

from jaxlab.interop import gguf as jgguf  # noqa: E402
from jaxlab.interop.tokenizer import HFTokenizer  # noqa: E402
from jaxlab.models import transformer  # noqa: E402
from jaxlab.nn.rope import RopeScaling  # noqa: E402
from tree_checks import random_params  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
TEXTS = ["hello world", "  two  spaces\n\nand\ttabs  ", "x = 12345 + 67", "héllo 日本 🙂",
         "<|im_start|>user\nhi<|im_end|>\n", "it's the end"]


def _byte_level_tokenizer(digits: bool) -> HFTokenizer:
    """A byte-level BPE of specials + 256 bytes + a few merges, with Hugging Face's GPT-2
    pre-tokenizer (or SmolLM2's: single digits first)."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_chars = sorted(alphabet)
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "w"), ("o", "r"), ("Ġ", "t"), ("1", "2")]
    vocab = {t: i for i, t in enumerate(SPECIALS + byte_chars + ["".join(m) for m in merges])}
    tok = tokenizers.Tokenizer(models.BPE(vocab, merges))
    level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), level])
                         if digits else level)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    return HFTokenizer(tok, bos_id=1, eos_ids=(2, 0), pad_id=0, chat_template=TEMPLATE, add_bos=True)


TOKENIZER = _byte_level_tokenizer(digits=True)
CFG = transformer.Config(vocab_size=TOKENIZER.vocab_size, d_model=64, n_layers=2, n_heads=4,
                         n_kv_heads=2, head_dim=16, mlp_dim=96, norm_eps=1e-5, rope_base=1e5,
                         tie_embeddings=True)


# ----------------------------------------------------------------------------- block formats

def _random_blocks(type_name: str, n_blocks: int, rng) -> np.ndarray:
    """Random bytes of ``n_blocks`` blocks whose float16 fields are finite, moderate numbers."""
    qk, block_bytes, _ = jgguf.DEQUANTIZERS[type_name]
    raw = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint8)
    halves = {"Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q4_K": [0, 2], "Q6_K": [208]}[type_name]
    for start in halves:
        raw[:, start:start + 2] = rng.uniform(-2, 2, (n_blocks, 1)).astype(np.float16).view(np.uint8)
    return raw


@pytest.mark.parametrize("type_name", ["Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"])
def test_block_dequantizers_match_the_gguf_reference(type_name):
    rng = np.random.default_rng(0)
    qk, _, _ = jgguf.DEQUANTIZERS[type_name]
    raw = _random_blocks(type_name, 64, rng)
    rows = raw.reshape(8, -1)  # 8 rows of 8 blocks
    ours = jgguf.dequantize(rows, type_name, (8, 8 * qk))
    ref = gguf.quants.dequantize(rows, gguf.GGMLQuantizationType[type_name])
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (8, 8 * qk)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("type_name,dtype", [("F32", np.float32), ("F16", np.float16)])
def test_plain_float_tensors_are_read_exactly(type_name, dtype):
    x = np.random.default_rng(1).standard_normal((3, 32)).astype(dtype)
    np.testing.assert_array_equal(jgguf.dequantize(x.view(np.uint8), type_name, (3, 32)), x.astype(np.float32))


def test_bf16_is_the_top_half_of_float32():
    x = np.random.default_rng(2).standard_normal(64).astype(np.float32)
    bits = (x.view(np.uint32) >> 16).astype(np.uint16)
    ref = gguf.quants.dequantize(bits.view(np.uint8).reshape(2, 64), gguf.GGMLQuantizationType.BF16)
    np.testing.assert_array_equal(jgguf.dequantize(bits.view(np.uint8), "BF16", (2, 32)), ref.reshape(2, 32))


def test_q8_0_quantizer_is_bitwise_llama_cpp_and_within_its_bound():
    x = np.random.default_rng(3).standard_normal((16, 96)).astype(np.float32) * 3
    x[0, :32] = 0.0  # an all-zero block
    x[1, :4] = [0.5, -0.5, 1.5, 127.0]  # ties round away from zero
    ours = jgguf.quantize_q8_0(x)
    assert ours.shape == (16, 3 * 34) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0))
    back = jgguf.dequantize(ours, "Q8_0", x.shape)
    # per block: |x - d16 q| <= d/2 + 127 |d - d16|  (module docstring)
    d = np.abs(x.reshape(-1, 32)).max(axis=1) / 127
    d16 = d.astype(np.float16).astype(np.float32)
    bound = (d / 2 + 127 * np.abs(d - d16))[:, None] * (1 + 1e-6)
    assert np.all(np.abs(back - x).reshape(-1, 32) <= bound)
    assert np.all(bound <= 0.563 * (np.abs(x.reshape(-1, 32)).max(axis=1, keepdims=True) / 127) + 1e-12)
    np.testing.assert_array_equal(back[0, :32], 0.0)
    with pytest.raises(jgguf.GGUFError, match="multiple of 32"):
        jgguf.quantize_q8_0(np.ones((2, 40), np.float32))


def test_dequantize_refuses_wrong_sizes_and_unknown_types():
    with pytest.raises(jgguf.GGUFError, match="blk.0.attn_q.weight.*expected 68"):
        jgguf.dequantize(np.zeros(60, np.uint8), "Q8_0", (2, 32), name="blk.0.attn_q.weight")
    with pytest.raises(jgguf.GGUFError, match="Q5_K"):
        jgguf.dequantize(np.zeros(8, np.uint8), "Q5_K", (256,))
    with pytest.raises(jgguf.GGUFError, match="multiple of the Q4_K block"):
        jgguf.dequantize(np.zeros(144, np.uint8), "Q4_K", (2, 128))


# ----------------------------------------------------------------------------- q/k rows

def test_rotary_permutation_round_trip_and_pair_order():
    n_heads, head_dim = 3, 8
    w = np.arange(n_heads * head_dim * 2, dtype=np.float32).reshape(n_heads * head_dim, 2)
    p = jgguf.permute_rotary_rows(w, n_heads)
    np.testing.assert_array_equal(jgguf.unpermute_rotary_rows(p, n_heads), w)
    # llama.cpp's pair (2i, 2i+1) of head h is rotate-half's (i, i + Dh/2)
    for h in range(n_heads):
        for i in range(head_dim // 2):
            np.testing.assert_array_equal(p[h * head_dim + 2 * i], w[h * head_dim + i])
            np.testing.assert_array_equal(p[h * head_dim + 2 * i + 1], w[h * head_dim + head_dim // 2 + i])


# ----------------------------------------------------------------------------- save / load

@pytest.fixture(scope="module")
def params():
    return random_params(CFG, seed=4)


def _f16_rounded(params):
    """``params`` as an f16 GGUF holds them: matrices rounded to float16, norm scales float32."""
    import jax

    def rounded(path, x):
        if path[-1].key == "scale":
            return x
        return jnp.asarray(np.asarray(x).astype(np.float16).astype(np.float32))

    return jax.tree_util.tree_map_with_path(rounded, params)


def test_f16_save_load_is_exact_against_f16_rounded_params(tmp_path, params):
    path = jgguf.save(tmp_path / "m.gguf", CFG, params, TOKENIZER, dtype="f16", context_length=512)
    cfg, loaded, tok = jgguf.load(path)
    assert cfg == CFG
    expect = _f16_rounded(params)
    for name in ("attn_norm", "mlp_norm"):  # norms are stored as float32: exact
        np.testing.assert_array_equal(loaded["layers"][name]["scale"], params["layers"][name]["scale"])
    np.testing.assert_array_equal(loaded["final_norm"]["scale"], params["final_norm"]["scale"])
    for key in ("q", "k", "v", "o"):
        np.testing.assert_array_equal(loaded["layers"]["attn"][key]["kernel"], expect["layers"]["attn"][key]["kernel"])
    for key in ("gate", "up", "down"):
        np.testing.assert_array_equal(loaded["layers"]["mlp"][key]["kernel"], expect["layers"]["mlp"][key]["kernel"])
    np.testing.assert_array_equal(loaded["embed"]["embedding"], expect["embed"]["embedding"])
    assert "unembed" not in loaded
    assert (tok.bos_id, tok.eos_ids, tok.pad_id, tok.add_bos) == (1, (2, 0), 0, True)
    assert tok.chat_template_source == TEMPLATE
    for text in TEXTS:  # Hugging Face's Digits + ByteLevel becomes llama.cpp's "smollm" splits
        np.testing.assert_array_equal(tok.encode(text), TOKENIZER.encode(text))
        assert tok.decode(tok.encode(text)) == TOKENIZER.decode(TOKENIZER.encode(text))
    meta = jgguf.read_metadata(path)
    assert meta["tokenizer.ggml.pre"] == "smollm" and meta["llama.context_length"] == 512
    assert meta["tokenizer.ggml.token_type"][:4] == [3, 3, 3, 1]


def test_q8_0_save_load_is_within_the_quantization_bound(tmp_path, params):
    cfg = dataclasses.replace(CFG, tie_embeddings=False, rope_scaling=RopeScaling("linear", 2.0))
    p = random_params(cfg, seed=5)
    path = jgguf.save(tmp_path / "m.gguf", cfg, p, _byte_level_tokenizer(digits=False), dtype="q8_0")
    loaded_cfg, loaded, tok = jgguf.load(path)
    assert loaded_cfg == cfg
    assert jgguf.read_metadata(path)["tokenizer.ggml.pre"] == "gpt2"
    _, tensors = jgguf._read(path)
    assert tensors["blk.0.attn_q.weight"].type_name == "Q8_0"
    assert tensors["blk.0.attn_norm.weight"].type_name == "F32"
    for path_, (a, b) in {"q": (loaded["layers"]["attn"]["q"]["kernel"], p["layers"]["attn"]["q"]["kernel"]),
                          "unembed": (loaded["unembed"]["kernel"], p["unembed"]["kernel"]),
                          "down": (loaded["layers"]["mlp"]["down"]["kernel"], p["layers"]["mlp"]["down"]["kernel"])}.items():
        err = np.abs(np.asarray(a) - np.asarray(b)).max()
        assert 0 < err <= 0.563 * np.abs(np.asarray(b)).max() / 127, path_
    for text in TEXTS:
        np.testing.assert_array_equal(tok.encode(text), _byte_level_tokenizer(digits=False).encode(text))


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_saved_file_loads_in_transformers_with_the_same_logits(tmp_path, params, dtype):
    """transformers' GGUF loader reads what save writes (q/k order, Q8_0 blocks, tied head) as
    jaxlab does: the same logits as jaxlab's model of the loaded file."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    jgguf.save(tmp_path / "m.gguf", CFG, params, TOKENIZER, dtype=dtype)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf",
                                                              dtype=torch.float32).eval()
    tokens = np.array([[5, 70, 200, 9, 31, 260, 4, 100]])
    with torch.no_grad():
        ref = model(torch.tensor(tokens)).logits.numpy()
    cfg, loaded, _ = jgguf.load(tmp_path / "m.gguf")
    if dtype == "f16":
        assert_trees_equal(loaded, _f16_rounded(params))
    ours = np.asarray(transformer.apply(loaded, jnp.asarray(tokens), cfg))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def assert_trees_equal(a, b):
    import jax
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------- refusals

def _metadata(**changes):
    meta = {"general.architecture": "llama", "general.name": "tiny", "llama.block_count": 2,
            "llama.embedding_length": 64, "llama.feed_forward_length": 96,
            "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
            "llama.context_length": 256, "llama.vocab_size": 300}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


@pytest.mark.parametrize("changes,match", [
    ({"general.architecture": "qwen2"}, "general.architecture is 'qwen2'"),
    ({"llama.rope.scaling.type": "yarn"}, "llama.rope.scaling.type='yarn'"),
    ({"llama.expert_count": 8}, "llama.expert_count=8"),
    ({"llama.rope.scaling.type": "none", "llama.rope.scaling.factor": 4.0}, "rope.scaling.factor=4.0"),
    ({"llama.attention.sliding_window": 128}, "llama.attention.sliding_window"),
    ({"llama.rope.dimension_count": 8}, "llama.rope.dimension_count=8"),
    ({"llama.attention.head_count": [4, 4]}, "llama.attention.head_count must be one integer"),
    ({"llama.attention.value_length": 32, "llama.attention.key_length": 16}, "value_length=32"),
    ({"tokenizer.ggml.add_eos_token": True}, "tokenizer.ggml.add_eos_token=True"),
    ({"split.count": 2}, "split.count=2"),
    ({"llama.block_count": None}, "lacks llama.block_count"),
    ({"llama.vocab_size": None}, "lacks llama.vocab_size and tokenizer.ggml.tokens"),
])
def test_metadata_jaxlab_cannot_express_is_refused_by_name(changes, match):
    with pytest.raises(jgguf.GGUFError, match=match):
        jgguf.config_from_gguf(_metadata(**changes), tied=True)


def test_harmless_metadata_is_accepted():
    cfg = jgguf.config_from_gguf(_metadata(**{"general.license": "mit", "quantize.imatrix.file": "x",
                                              "llama.rope.freq_base": 5e5}), tied=False)
    assert (cfg.n_layers, cfg.head_dim, cfg.n_kv_heads, cfg.rope_base, cfg.tie_embeddings) == (2, 16, 2, 5e5, False)
    assert cfg.rope_scaling == RopeScaling()
    # llama.cpp applies a factor without a type as linear scaling
    assert jgguf.config_from_gguf(_metadata(**{"llama.rope.scaling.factor": 4.0}),
                                  tied=True).rope_scaling == RopeScaling("linear", 4.0)
    assert jgguf.config_from_gguf(_metadata(**{"llama.rope.scale_linear": 2.0}),
                                  tied=True).rope_scaling == RopeScaling("linear", 2.0)


def test_unsupported_tokenizers_are_refused_by_name():
    meta = jgguf.tokenizer_metadata(TOKENIZER)
    with pytest.raises(jgguf.GGUFError, match="tokenizer.ggml.model='llama'"):
        jgguf.tokenizer_from_gguf({**meta, "tokenizer.ggml.model": "llama"})
    with pytest.raises(jgguf.GGUFError, match="tokenizer.ggml.pre='qwen2'"):
        jgguf.tokenizer_from_gguf({**meta, "tokenizer.ggml.pre": "qwen2"})


@pytest.fixture(scope="module")
def saved(tmp_path_factory, params):
    return jgguf.save(tmp_path_factory.mktemp("gguf") / "m.gguf", CFG, params, TOKENIZER)


def test_truncated_and_corrupt_files_are_named(tmp_path, saved):
    data = saved.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[:-100])
    with pytest.raises(jgguf.GGUFError, match="tensor output_norm.weight runs past the end"):
        jgguf.load(tmp_path / "cut.gguf")
    (tmp_path / "head.gguf").write_bytes(data[:5000])
    with pytest.raises(jgguf.GGUFError, match="ends inside"):
        jgguf.load(tmp_path / "head.gguf")
    (tmp_path / "bad.gguf").write_bytes(b"GGML" + data[4:])
    with pytest.raises(jgguf.GGUFError, match="not a GGUF file"):
        jgguf.load(tmp_path / "bad.gguf")
    with pytest.raises(jgguf.GGUFError, match="no GGUF file"):
        jgguf.load(tmp_path / "absent.gguf")


def _rewrite(src, dst, *, drop=(), reshape=None, extra_key=None):
    """A copy of GGUF ``src`` without the tensors in ``drop`` / with one tensor's data cut."""
    meta, tensors = jgguf._read(src)
    writer = gguf.GGUFWriter(dst, "llama")
    for key, value in meta.items():
        if key not in ("general.architecture",):
            jgguf._add(writer, gguf, key, value)
    if extra_key:
        writer.add_string(*extra_key)
    for name, t in tensors.items():
        if name in drop:
            continue
        w = jgguf.dequantize(t.data, t.type_name, t.shape)
        if reshape and name == reshape:
            w = w[:-1]
        writer.add_tensor(name, w.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_missing_and_misshapen_tensors_are_named(tmp_path, saved):
    _rewrite(saved, tmp_path / "a.gguf", drop=("blk.1.ffn_up.weight",))
    with pytest.raises(jgguf.GGUFError, match="lacks tensor.*blk.1.ffn_up.weight"):
        jgguf.load(tmp_path / "a.gguf")
    _rewrite(saved, tmp_path / "b.gguf", reshape="blk.0.attn_k.weight")
    with pytest.raises(jgguf.GGUFError, match=r"tensor blk.0.attn_k.weight has shape \(31, 64\)"):
        jgguf.load(tmp_path / "b.gguf")
    _rewrite(saved, tmp_path / "c.gguf", extra_key=("llama.attention.layer_norm_epsilon", "x"))
    with pytest.raises(jgguf.GGUFError, match="llama.attention.layer_norm_epsilon"):
        jgguf.load(tmp_path / "c.gguf")


def test_models_gguf_cannot_hold_are_refused_on_save(tmp_path, params):
    with pytest.raises(jgguf.GGUFError, match="qk_norm=True"):
        jgguf.save(tmp_path / "x.gguf", dataclasses.replace(CFG, qk_norm=True), params, TOKENIZER)
    with pytest.raises(jgguf.GGUFError, match="dtype must be one of"):
        jgguf.save(tmp_path / "x.gguf", CFG, params, TOKENIZER, dtype="q4_0")
    assert not list(tmp_path.iterdir())


def test_header_parse_of_a_minimal_file(tmp_path):
    """A file with metadata and no tensors parses; an unknown value type is named."""
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 3) + b"k.x" + struct.pack("<I", 99)
    (tmp_path / "t.gguf").write_bytes(body)
    with pytest.raises(jgguf.GGUFError, match="metadata k.x has unknown value type 99"):
        jgguf.read_metadata(tmp_path / "t.gguf")
    ok = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 3) + b"k.x" + struct.pack("<II", 4, 7)
    (tmp_path / "u.gguf").write_bytes(ok)
    assert jgguf.read_metadata(tmp_path / "u.gguf") == {"k.x": 7}
