"""``jaxlab convert gguf-to-jaxlab`` and ``jaxlab-to-gguf`` on a tiny random model."""

import json

import numpy as np
import pytest

pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'gguf>=0.17')")
pytest.importorskip("tokenizers", reason="the tokenizers package is not installed")

from jaxlab.cli import main as cli_main  # noqa: E402
from jaxlab.interop import convert, models  # noqa: E402
from jaxlab.interop import gguf as jgguf  # noqa: E402
from test_gguf import CFG, TEMPLATE, TEXTS, TOKENIZER  # noqa: E402
from tree_checks import assert_bitwise_equal, random_params  # noqa: E402


def test_gguf_to_jaxlab_to_gguf_gives_back_the_same_file(tmp_path, capsys):
    src = jgguf.save(tmp_path / "src.gguf", CFG, random_params(CFG, seed=11), TOKENIZER,
                     context_length=1024)
    assert cli_main(["convert", "gguf-to-jaxlab", str(src), str(tmp_path / "ck")]) == 0
    assert "wrote" in capsys.readouterr().out
    cfg, params = convert.load_jaxlab(tmp_path / "ck")
    _, from_gguf, _ = jgguf.load(src)
    assert cfg == CFG
    assert_bitwise_equal(params, from_gguf)
    info = convert.read_jaxlab_info(tmp_path / "ck")
    assert info["architecture"] == "LlamaForCausalLM"
    assert info["hf_config"] == {"bos_token_id": 1, "eos_token_id": [2, 0], "pad_token_id": 0,
                                 "max_position_embeddings": 1024}
    config = json.loads((tmp_path / "ck" / "tokenizer_config.json").read_text())
    assert config["chat_template"] == TEMPLATE and config["add_bos_token"] is True
    _, _, tok = models.load_model(tmp_path / "ck")
    assert (tok.bos_id, tok.eos_ids, tok.pad_id, tok.add_bos) == (1, (2, 0), 0, True)
    for text in TEXTS:
        np.testing.assert_array_equal(tok.encode(text), TOKENIZER.encode(text))

    assert cli_main(["convert", "jaxlab-to-gguf", str(tmp_path / "ck"), str(tmp_path / "back.gguf")]) == 0
    assert (tmp_path / "back.gguf").read_bytes() == src.read_bytes()
    assert cli_main(["convert", "jaxlab-to-gguf", str(tmp_path / "ck"), str(tmp_path / "back.gguf")]) == 1
    assert "already exists" in capsys.readouterr().err

    assert cli_main(["convert", "jaxlab-to-gguf", str(tmp_path / "ck"), str(tmp_path / "q.gguf"),
                     "--dtype", "q8_0"]) == 0
    _, tensors = jgguf._read(tmp_path / "q.gguf")
    assert tensors["blk.1.ffn_down.weight"].type_name == "Q8_0"


def test_jaxlab_to_gguf_needs_a_bpe_tokenizer(tmp_path, capsys):
    convert.save_jaxlab(tmp_path / "bare", CFG, random_params(CFG))
    assert cli_main(["convert", "jaxlab-to-gguf", str(tmp_path / "bare"), str(tmp_path / "x.gguf")]) == 1
    assert "has no tokenizer.json" in capsys.readouterr().err
    (tmp_path / "bad.gguf").write_bytes(b"not gguf")
    assert cli_main(["convert", "gguf-to-jaxlab", str(tmp_path / "bad.gguf"), str(tmp_path / "o")]) == 1
    assert "not a GGUF file" in capsys.readouterr().err
