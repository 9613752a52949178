"""Tokenizers for post-training tests, built here without downloads: a small byte-level BPE
trained with the ``tokenizers`` package on task-like text, behind the tokenizer protocol with
the "plain" template (BOS-led, EOS-ended) or SmolLM2's ChatML Jinja template."""

from __future__ import annotations

import functools

SMOLLM2_JINJA = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]  # ids 0..3
SMOLLM2_GGUF = "~/.cache/jaxlab/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"


def _corpus() -> list[str]:
    lines = []
    for a in range(0, 100, 3):
        for b in range(0, 100, 7):
            lines.append(f"{a}+{b}={a + b}")
    common = ["Is the answer correct? Yes", "Is the answer correct? No", "Wrong. Reflect: Retry:",
              "User: Assistant: System: hello world, how are you? I am fine.", "system\n user\n assistant\n",
              "You are a helpful AI assistant named SmolLM, trained by Hugging Face"]
    return lines + common * 100  # frequent enough that the system message merges into few tokens


@functools.cache
def raw_bpe(vocab_size: int = 512):
    """A ``tokenizers.Tokenizer``: byte-level BPE (every byte is a token, so any text encodes)
    with the four SPECIALS first."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    return tok


def bpe_tokenizer(template: str = "plain"):
    """The BPE behind :class:`jaxlab.interop.tokenizer.HFTokenizer`: "plain" (BOS = EOS =
    <|endoftext|>, sequences begin with BOS) or "chatml" (SmolLM2's Jinja text; BOS
    <|im_start|>, EOS <|im_end|>, no BOS added)."""
    from jaxlab.interop.tokenizer import HFTokenizer

    if template == "plain":
        return HFTokenizer(raw_bpe(), bos_id=0, eos_ids=(0,), pad_id=3, add_bos=True)
    if template == "chatml":
        return HFTokenizer(raw_bpe(), bos_id=1, eos_ids=(2,), pad_id=3, chat_template=SMOLLM2_JINJA)
    raise ValueError(template)


def vocab_for(tok, multiple: int = 8) -> int:
    """A model vocabulary that holds the tokenizer's ids, rounded up to ``multiple``."""
    return -(-tok.vocab_size // multiple) * multiple
