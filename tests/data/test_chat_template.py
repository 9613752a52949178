"""Chat templates: the tokenizer protocol, "plain" and "chatml" renderings, and parity of the
ChatML rendering with transformers' ``apply_chat_template`` (a BPE built here with SmolLM2's
Jinja text, and SmolLM2's own GGUF tokenizer when it is cached)."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tokenizers", reason="needs the tokenizers package")

from tokenizer_fixtures import SMOLLM2_GGUF, SMOLLM2_JINJA, bpe_tokenizer, raw_bpe  # noqa: E402

from jaxlab.data import chat  # noqa: E402
from jaxlab.data.tokenizer import (  # noqa: E402
    BYTES,
    CHATML,
    PLAIN,
    Tokenizer,
    template_from_jinja,
)
from jaxlab.interop.tokenizer import HFTokenizer  # noqa: E402

CONVERSATIONS = [
    [{"role": "user", "content": "12+34="}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"},
     {"role": "assistant", "content": "I am fine."}, {"role": "user", "content": "how are you?"}],
    [{"role": "user", "content": "7+7="}, {"role": "assistant", "content": "14"}],
]


def _hf_ids(hf_tok, messages, add_generation_prompt):
    out = hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def _rendered(tok, messages, add_generation_prompt):
    pieces = chat.render_messages(messages, tok, add_generation_prompt=add_generation_prompt)
    return np.concatenate([p for p, _ in pieces]).tolist(), pieces


def test_templates_from_jinja_and_protocol():
    smol = template_from_jinja(SMOLLM2_JINJA)
    assert smol.name == "chatml"
    assert smol.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert template_from_jinja("{{ '<|im_start|>' + m }}") == CHATML  # no default system
    assert template_from_jinja(None) == PLAIN and template_from_jinja("{{ bos }}{{ text }}") == PLAIN
    assert isinstance(BYTES, Tokenizer) and isinstance(bpe_tokenizer("chatml"), Tokenizer)
    assert BYTES.chat_template == PLAIN and BYTES.eos_ids == (BYTES.eos_id,) and BYTES.add_bos


@pytest.mark.parametrize("gen", [False, True])
@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chatml_rendering_equals_transformers(messages, gen):
    transformers = pytest.importorskip("transformers")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=raw_bpe(), chat_template=SMOLLM2_JINJA)
    ids, _ = _rendered(bpe_tokenizer("chatml"), messages, gen)
    assert ids == _hf_ids(hf, messages, gen)


def test_chatml_loss_mask_covers_assistant_content_and_end_of_turn_only():
    tok = bpe_tokenizer("chatml")
    ex = chat.encode_example("12+34=", "46", tok)
    prompt = chat.encode_prompt("12+34=", tok)
    # no BOS added (add_bos False): the prompt is the rendered user turn + generation prompt
    assert tok.decode(prompt) == ("system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                                  "Face\nuser\n12+34=\nassistant\n")  # decode drops special tokens
    trained = ex["targets"][ex["loss_mask"] > 0]
    assert trained.tolist() == tok.encode("46").tolist() + [tok.eos_id]  # "<|im_end|>" is eos 2
    assert (ex["inputs"][: len(prompt)] == prompt).all()
    assert ex["targets"][-1] == tok.encode("\n")[0] and ex["loss_mask"][-1] == 0  # after the end
    m = chat.encode_messages(CONVERSATIONS[1] + [{"role": "assistant", "content": "Good."}], tok)
    trained = m["targets"][m["loss_mask"] > 0].tolist()
    end = [tok.eos_id]
    assert trained == tok.encode("I am fine.").tolist() + end + tok.encode("Good.").tolist() + end


def test_plain_template_with_a_bpe_matches_the_byte_layout():
    tok = bpe_tokenizer("plain")
    ex = chat.encode_example("12+34=", "46", tok)
    assert ex["inputs"][0] == tok.bos_id
    body = np.concatenate([tok.encode("12+34="), tok.encode("46"), [tok.eos_id]])
    assert ex["targets"].tolist() == body.tolist()
    assert ex["loss_mask"].tolist() == [0.0] * len(tok.encode("12+34=")) + [1.0] * (len(tok.encode("46")) + 1)
    rows = chat.pad_rows([ex], 16, tok)
    assert (rows["inputs"][0, len(ex["inputs"]):] == tok.pad_id).all()
    byte = chat.encode_example("12+34=", "46")
    assert byte["targets"].tolist() == list(b"12+34=46") + [BYTES.eos_id]


@pytest.fixture(scope="module")
def smollm2_hf():
    path = Path(SMOLLM2_GGUF).expanduser()
    if not path.is_file():
        pytest.skip(f"{path} is absent (make model fetches it)")
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.mark.parametrize("gen", [False, True])
def test_smollm2_gguf_tokenizer_renders_as_transformers(smollm2_hf, gen):
    tok = HFTokenizer(smollm2_hf.backend_tokenizer, bos_id=1, eos_ids=(2,), pad_id=2,
                      chat_template=smollm2_hf.chat_template)
    assert tok.chat_template.default_system.startswith("You are a helpful AI assistant named SmolLM")
    for messages in CONVERSATIONS:
        ids, _ = _rendered(tok, messages, gen)
        assert ids == _hf_ids(smollm2_hf, messages, gen)
