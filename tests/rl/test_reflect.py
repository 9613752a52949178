"""jaxlab.rl.reflect: the reflection and retry contexts of both layouts against hand-written
streams (bytes) and the chat renderer (a ChatML BPE), the row-width bound at its worst case,
and reflection-only loss masks under ChatML turns with a tiny model."""

import jax
import numpy as np
import pytest

from jaxlab.data.chat import encode_prompt
from jaxlab.data.tokenizer import BOS_ID, BYTES, EOS_ID
from jaxlab.models import transformer
from jaxlab.rl import RLConfig, build_rows, policy_logprobs, sample_completions
from jaxlab.rl import reflect as reflect_lib

pytest.importorskip("tokenizers", reason="needs the tokenizers package")
from tokenizer_fixtures import bpe_tokenizer, vocab_for  # noqa: E402


def _bytes(text: str) -> list[int]:
    return list(text.encode())


@pytest.fixture(scope="module")
def chatml():
    return bpe_tokenizer("chatml")


def test_inline_byte_context_and_suffix_are_the_stream_format():
    c = reflect_lib.reflection_context("1+2=", np.array([52, EOS_ID]))  # attempt "4" + EOS
    assert c.tolist() == [BOS_ID] + _bytes("1+2=4\nWrong. Reflect:")
    assert reflect_lib.retry_suffix(np.array([65, 66])).tolist() == _bytes("\nRetry:")
    assert reflect_lib.retry_suffix(np.array([65, 10])).tolist() == _bytes("Retry:")  # ended with \n
    assert reflect_lib.reflect_stop_tokens() == (10, EOS_ID)


def test_turns_under_the_plain_template_close_the_attempt_with_eos():
    layout = reflect_lib.Layout("turns", reflect_text="Why?", retry_text="Again.")
    c = reflect_lib.reflection_context("1+2=", np.array([52]), BYTES, layout)
    assert c.tolist() == [BOS_ID] + _bytes("1+2=4") + [EOS_ID] + _bytes("User: Why?\nAssistant: ")
    # a reflection that stopped at EOS is already closed; a truncated one gets the EOS
    assert reflect_lib.retry_suffix(np.array([65, EOS_ID]), BYTES, layout).tolist() == \
        _bytes("User: Again.\nAssistant: ")
    assert reflect_lib.retry_suffix(np.array([65, 66]), BYTES, layout).tolist() == \
        [EOS_ID] + _bytes("User: Again.\nAssistant: ")
    assert reflect_lib.reflect_stop_tokens(BYTES, layout) == (EOS_ID,)  # reflections may span lines


def test_turns_under_chatml_are_the_rendered_conversation(chatml):
    layout = reflect_lib.TURNS
    attempt = chatml.encode("12")
    im_end = chatml.eos_ids[0]
    c = reflect_lib.reflection_context("3+9=", np.concatenate([attempt, [im_end]]), chatml, layout)
    history = [{"role": "user", "content": "3+9="}, {"role": "assistant", "content": "12"}]
    expected = encode_prompt(history + [{"role": "user", "content": layout.reflect_text}], chatml)
    np.testing.assert_array_equal(c, expected)  # one system message, the attempt closed by <|im_end|>
    # reflection (closed by the stop id) + suffix continue the same conversation
    f = np.concatenate([chatml.encode("I added wrong."), [im_end]])
    s = reflect_lib.retry_suffix(f, chatml, layout)
    expected = encode_prompt(history + [{"role": "user", "content": layout.reflect_text},
                                        {"role": "assistant", "content": "I added wrong."},
                                        {"role": "user", "content": layout.retry_text}], chatml)
    np.testing.assert_array_equal(np.concatenate([c, f, s]), expected)
    # a truncated reflection gets its turn closed
    s_open = reflect_lib.retry_suffix(f[:-1], chatml, layout)
    np.testing.assert_array_equal(np.concatenate([c, f[:-1], s_open]), expected)
    assert reflect_lib.reflect_stop_tokens(chatml, layout) == tuple(chatml.eos_ids)


@pytest.mark.parametrize("layout", [reflect_lib.INLINE, reflect_lib.TURNS])
@pytest.mark.parametrize("template", ["bytes", "chatml"])
def test_max_row_tokens_is_reached_by_the_longest_row(chatml, layout, template):
    """Attempt, reflection and answer all at their limits without a stop token: the row needs
    exactly max_row_tokens columns, so build_rows fits it there and refuses one fewer."""
    tok = BYTES if template == "bytes" else chatml
    N, R = 5, 7
    letter = int(tok.encode("a")[0])
    c = reflect_lib.reflection_context("4+4=", np.full(N, letter), tok, layout)
    f = np.full(R, letter, np.int32)  # no newline, no stop id
    s = reflect_lib.retry_suffix(f, tok, layout)
    y = np.full(N, letter, np.int32)
    width = reflect_lib.max_row_tokens(len(encode_prompt("4+4=", tok)), N, R, tok, layout)
    assert len(c) + len(f) + len(s) + len(y) - 1 == width
    row = np.concatenate([f, s, y])
    rows = build_rows([c], [row], [np.ones(len(row))], [np.zeros(len(row))], width, tok)
    assert rows["segment_ids"][0, -1] == 1  # the last column is used
    with pytest.raises(ValueError, match="width"):
        build_rows([c], [row], [np.ones(len(row))], [np.zeros(len(row))], width - 1, tok)


@pytest.fixture(scope="module")
def tiny(chatml):
    cfg = transformer.Config(vocab_size=vocab_for(chatml), d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                             head_dim=16, mlp_dim=64)
    return cfg, transformer.init(cfg, jax.random.key(0))


# reflections as long as answers: under TURNS both stop at the stop ids, so reflection and
# retry share one sampling config (and, in one prompt bucket, one compiled program)
RL = RLConfig(max_new_tokens=4, reflect_max_tokens=4)


def test_chatml_turn_rows_train_only_the_reflection(chatml, tiny):
    cfg, params = tiny
    layout = reflect_lib.TURNS
    contexts = [reflect_lib.reflection_context("1+2=", chatml.encode(a), chatml, layout) for a in ("4", "5")]
    reflect_cfg = RL.reflect_sample_config(chatml, reflect_lib.reflect_stop_tokens(chatml, layout))
    out = reflect_lib.reflect_and_retry(params, cfg, contexts, jax.random.key(1), reflect_cfg=reflect_cfg,
                                        answer_cfg=RL.sample_config(chatml), tokenizer=chatml, layout=layout)
    tokens, masks, logps = reflect_lib.reflection_responses(out)
    width = reflect_lib.max_row_tokens(len(encode_prompt("1+2=", chatml)), 4, 4, chatml, layout)
    rows = build_rows(contexts, tokens, masks, logps, width, chatml)
    for b in range(2):
        f, s = out["reflection"][b], out["suffix"][b]
        start = len(contexts[b]) - 1
        assert rows["mask"][b].sum() == len(f) > 0
        np.testing.assert_array_equal(rows["targets"][b, start:start + len(f)], f)
        # the retry prompt follows the reflection as a user turn, then the assistant header
        turn = reflect_lib.user_turn(layout.retry_text, chatml)
        np.testing.assert_array_equal(s[-len(turn):], turn)
    logp, _ = policy_logprobs(params, rows, cfg, reflect_cfg)
    m = rows["mask"] > 0
    np.testing.assert_allclose(np.asarray(logp)[m], rows["old_logp"][m], atol=1e-5)


def test_sampling_in_fixed_batches_is_chunk_by_chunk(chatml, tiny):
    """batch_size=2 on three prompts: chunk c draws with fold_in(key, c); the last chunk is
    padded with copies of its first prompt, which leave the output."""
    cfg, params = tiny
    prompts = [reflect_lib.reflection_context("1+2=", chatml.encode(a), chatml) for a in ("4", "5", "6")]
    sample, key = RL.sample_config(chatml), jax.random.key(3)
    chunked = sample_completions(params, cfg, prompts, key, sample, batch_size=2)
    first = sample_completions(params, cfg, prompts[:2], jax.random.fold_in(key, 0), sample)
    last = sample_completions(params, cfg, [prompts[2]] * 2, jax.random.fold_in(key, 1), sample)
    assert set(chunked) == set(first)
    for k in first:
        assert chunked[k].shape[0] == 3
        np.testing.assert_array_equal(chunked[k], np.concatenate([first[k], last[k][:1]]))
    with pytest.raises(ValueError, match="batch_size"):
        sample_completions(params, cfg, prompts, key, sample, batch_size=0)
