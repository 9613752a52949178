"""``load_tokenizer``: a tokenizer.json built here with the ``tokenizers`` package, special ids
from each of the files that can name them, and the byte tokenizer's interface."""

import inspect
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is not installed: Hugging Face "
                                 "tokenizers are only checked where it is present "
                                 "(pip install tokenizers)")

from jaxlab.data import ByteTokenizer  # noqa: E402
from jaxlab.interop import hf  # noqa: E402
from jaxlab.interop.tokenizer import HFTokenizer, TokenizerError  # noqa: E402

VOCAB = {"[PAD]": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "[UNK]": 5, "<eot>": 6}


def _word_level(folder, **files):
    """A whitespace word-level tokenizer.json over VOCAB, plus the given JSON files."""
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.decoder = tokenizers.decoders.WordPiece()  # joins words with spaces
    tok.add_special_tokens(["[PAD]", "<s>", "</s>", "<eot>"])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    for name, content in files.items():
        (folder / f"{name}.json").write_text(json.dumps(content))
    return folder


def test_encode_decode_and_special_ids_from_tokenizer_config(tmp_path):
    _word_level(tmp_path, tokenizer_config={"bos_token": "<s>", "eos_token": {"content": "</s>"},
                                            "pad_token": "[PAD]"},
                generation_config={"eos_token_id": [2, 6]})
    tok = hf.load_tokenizer(tmp_path)
    assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.pad_id, tok.eos_ids) == (7, 1, 2, 0, (2, 6))
    ids = tok.encode("hello world hello")
    assert ids.dtype == np.int32 and ids.tolist() == [3, 4, 3]
    assert tok.encode("hello", bos=True, eos=True).tolist() == [1, 3, 2]
    assert tok.encode("hello mars").tolist() == [3, 5]
    assert tok.decode([1, 3, 4, 2]) == "hello world"
    assert tok.decode(np.array([3, 6, 4]), stop_at_eos=True) == "hello"  # <eot> is an eos id too
    assert tok.decode([3, 2, 4], stop_at_eos=True) == "hello"
    assert tok.decode([3, 4, 200]) == "hello world"  # ids of a padded model vocabulary
    with pytest.raises(ValueError, match="must be >= 0"):
        tok.decode([3, -1])


def test_special_ids_fall_back_to_model_configs(tmp_path):
    _word_level(tmp_path, config={"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None},
                generation_config={"eos_token_id": 6})
    tok = hf.load_tokenizer(tmp_path)
    assert (tok.bos_id, tok.eos_ids, tok.eos_id) == (1, (6, 2), 6)
    assert tok.pad_id == 6  # no pad token anywhere: the eos id
    _word_level(tmp_path / "bare")
    bare = hf.load_tokenizer(tmp_path / "bare")
    assert (bare.bos_id, bare.eos_id, bare.pad_id, bare.eos_ids) == (None, None, None, ())
    assert bare.decode([3, 2, 4], stop_at_eos=True) == "hello world"
    with pytest.raises(TokenizerError, match="no BOS token"):
        bare.encode("hello", bos=True)


def test_special_token_missing_from_vocabulary(tmp_path):
    _word_level(tmp_path, special_tokens_map={"eos_token": "<|end|>"})
    with pytest.raises(TokenizerError, match="special_tokens_map.json names eos_token '<|end|>'"):
        hf.load_tokenizer(tmp_path)


def test_folder_without_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(b"sentencepiece")
    with pytest.raises(TokenizerError, match="no tokenizer.json.*AutoTokenizer"):
        hf.load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not a tokenizers file"):
        hf.load_tokenizer(tmp_path)


def _byte_level_bpe(folder):
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    return hf.load_tokenizer(folder)


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    return _byte_level_bpe(tmp_path_factory.mktemp("bpe"))


@given(st.text(max_size=40))
def test_byte_level_bpe_round_trips_any_text(bpe, text):
    ids = bpe.encode(text, eos=True)
    assert ids[-1] == bpe.eos_id == 0
    assert bpe.decode(ids) == text
    assert bpe.decode(ids, stop_at_eos=True) == text


def test_bpe_merges_frequent_words(bpe):
    assert len(bpe.encode("the lazy dog")) < len("the lazy dog".encode())


def test_interface_matches_the_byte_tokenizer():
    for name in ("encode", "decode"):
        ours = inspect.signature(getattr(HFTokenizer, name)).parameters
        theirs = inspect.signature(getattr(ByteTokenizer, name)).parameters
        assert list(ours) == list(theirs), name
        assert [p.kind for p in ours.values()] == [p.kind for p in theirs.values()], name
