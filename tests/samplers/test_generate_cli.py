"""``jaxlab generate`` on a tiny random model saved as a jaxlab checkpoint (byte tokenizer),
and on SmolLM2-135M-Instruct when it is cached (`make model` fetches it)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import cli
from jaxlab.data.tokenizer import ByteTokenizer
from jaxlab.generate_cli import complete
from jaxlab.interop.convert import save_jaxlab
from jaxlab.models import transformer

TINY = transformer.Config(vocab_size=264, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                          head_dim=8, mlp_dim=64)
N = 6


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    params = transformer.init(TINY, jax.random.PRNGKey(3))
    folder = save_jaxlab(tmp_path_factory.mktemp("tiny") / "model", TINY, params)
    return folder, params


L_MAX = 32  # reference forward passes run on rows right-padded to this length (one compile)
_apply = jax.jit(lambda params, tokens_BT: transformer.apply(params, tokens_BT, TINY))


def _greedy_reference(params, ids, n):
    """n greedy ids by full-sequence forward passes (no cache), stopping after EOS; causal
    attention makes the logits at t < len(ids) independent of the right padding."""
    ids = list(ids)
    out = []
    for _ in range(n):
        row = np.zeros((1, L_MAX), np.int32)
        row[0, :len(ids)] = ids
        logits_TV = _apply(params, jnp.asarray(row))[0, :len(ids)]
        nxt = int(np.argmax(logits_TV[-1]))
        out.append(nxt)
        ids.append(nxt)
        if nxt in ByteTokenizer.eos_ids:
            break
    return out


@pytest.mark.parametrize("chat", [False, True])
def test_generate_command_prints_the_greedy_completion(tiny_folder, capsys, chat):
    folder, params = tiny_folder
    argv = ["generate", str(folder), "--prompt", "ab", "--max-new-tokens", str(N)]
    assert cli.main(argv + (["--chat"] if chat else [])) == 0
    text = "User: ab\nAssistant: " if chat else "ab"  # the byte tokenizer's plain template
    ids = ByteTokenizer().encode(text, bos=True)
    want = ByteTokenizer().decode(_greedy_reference(params, ids, N), stop_at_eos=True)
    assert capsys.readouterr().out == want + "\n"


def test_generation_stops_at_the_tokenizers_eos_ids(tiny_folder):
    folder, params = tiny_folder
    tok = ByteTokenizer()
    first = _greedy_reference(params, tok.encode("ab", bos=True), 1)[0]

    @dataclasses.dataclass(frozen=True)
    class StopsAtFirst(ByteTokenizer):
        eos_ids = (first,)

    assert complete(TINY, params, tok, "ab", max_new_tokens=N) != ""
    assert complete(TINY, params, StopsAtFirst(), "ab", max_new_tokens=N) == ""


def test_generate_command_rejects_an_unknown_model(capsys):
    assert cli.main(["generate", "no-such-model-xyz", "--prompt", "hi"]) == 2
    assert "no-such-model-xyz" in capsys.readouterr().err


def test_smollm2_chat_answers_paris(smollm2):
    cfg, params, tok = smollm2
    text = complete(cfg, params, tok, "What is the capital of France?", chat=True, max_new_tokens=16)
    assert "Paris" in text, text
