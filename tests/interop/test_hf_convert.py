"""``jaxlab convert``: Hugging Face -> jaxlab -> Hugging Face gives back the same files, and
jaxlab's own checkpoint format restores the params bitwise."""

import dataclasses
import json

import pytest

pytest.importorskip("safetensors", reason="safetensors is not installed: checkpoint conversion is "
                    "only checked where it is present (pip install safetensors)")

from jaxlab.interop import convert, hf  # noqa: E402
from jaxlab.models import transformer  # noqa: E402
from jaxlab.nn.rope import RopeScaling  # noqa: E402
from tree_checks import random_params, assert_bitwise_equal  # noqa: E402

CFG = transformer.Config(vocab_size=40, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                         mlp_dim=48, attention_bias=True, tie_embeddings=True, rope_base=1e6,
                         rope_scaling=RopeScaling("linear", 2.0))






def test_hf_to_jaxlab_to_hf_gives_back_the_same_files(tmp_path, capsys):
    src = tmp_path / "src"
    params = random_params(CFG)
    hf.save(src, CFG, params, architecture="Qwen2ForCausalLM", max_shard_bytes=10_000,
            extra_config={"bos_token_id": 3, "eos_token_id": [4, 5], "max_position_embeddings": 512})
    (src / "tokenizer.json").write_text('{"copied": "verbatim"}')
    (src / "generation_config.json").write_text('{"eos_token_id": [4, 5]}')

    assert convert.convert_main(["hf-to-jaxlab", str(src), str(tmp_path / "mid")]) == 0
    assert "wrote" in capsys.readouterr().out
    cfg, restored = convert.load_jaxlab(tmp_path / "mid")
    assert cfg == CFG
    assert_bitwise_equal(restored, params)
    info = convert.read_jaxlab_info(tmp_path / "mid")
    assert info["architecture"] == "Qwen2ForCausalLM"
    assert info["hf_config"] == {"bos_token_id": 3, "eos_token_id": [4, 5], "max_position_embeddings": 512}

    assert convert.convert_main(["jaxlab-to-hf", str(tmp_path / "mid"), str(tmp_path / "dst"),
                                 "--max-shard-bytes", "10000"]) == 0
    src_files = sorted(p.name for p in src.iterdir())
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == src_files
    for name in src_files:
        assert (tmp_path / "dst" / name).read_bytes() == (src / name).read_bytes(), name


def test_jaxlab_to_hf_options(tmp_path):
    cfg = dataclasses.replace(CFG, attention_bias=False, window=6, param_dtype="float32")
    convert.save_jaxlab(tmp_path / "ck", cfg, random_params(cfg))
    assert convert.convert_main(["jaxlab-to-hf", str(tmp_path / "ck"), str(tmp_path / "out"),
                                 "--architecture", "Qwen3ForCausalLM"]) == 1  # no QK-norm
    assert convert.convert_main(["jaxlab-to-hf", str(tmp_path / "ck"), str(tmp_path / "out"),
                                 "--dtype", "bfloat16"]) == 0
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["architectures"] == ["MistralForCausalLM"] and written["sliding_window"] == 6
    cfg2, _ = hf.load(tmp_path / "out")
    assert cfg2 == dataclasses.replace(cfg, param_dtype="bfloat16", compute_dtype="bfloat16")


def test_errors_exit_with_a_message(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (src / "pytorch_model.bin").write_bytes(b"never unpickled")
    assert convert.convert_main(["hf-to-jaxlab", str(src), str(tmp_path / "out")]) == 1
    assert "pytorch_model.bin" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    convert.save_jaxlab(tmp_path / "ck", CFG, random_params(CFG))
    assert convert.convert_main(["jaxlab-to-hf", str(tmp_path / "ck"), str(src)]) == 1
    assert "not an empty folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert.convert_main(["sideways", "a", "b"])


def test_jaxlab_format_errors(tmp_path):
    hf.save(tmp_path / "hf", CFG, random_params(CFG))
    with pytest.raises(convert.ConvertError, match="not a jaxlab checkpoint.*hf.load"):
        convert.load_jaxlab(tmp_path / "hf")
    with pytest.raises(convert.ConvertError, match="unsupported architecture"):
        convert.save_jaxlab(tmp_path / "x", CFG, random_params(CFG), architecture="BertModel")
    with pytest.raises(hf.HFCheckpointError, match="params lack"):
        convert.save_jaxlab(tmp_path / "y", CFG, {"embed": random_params(CFG)["embed"]})
