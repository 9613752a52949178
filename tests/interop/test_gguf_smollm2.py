"""SmolLM2-135M-Instruct (Q4_1 GGUF) in jaxlab against transformers' own GGUF loader (both
dequantize to float32): logits, greedy continuations and token ids. Skipped when the file is
absent (`make model` fetches it)."""

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxlab.interop import gguf as jgguf  # noqa: E402
from jaxlab.models import transformer  # noqa: E402
from jaxlab.samplers.generate import SampleConfig, generate, pad_prompts  # noqa: E402

TEXTS = [
    "Hello, world!", "  two  spaces,\tthen a tab\n\n\nand    runs   ", "trailing spaces   ",
    "def f(x):\n    return x ** 2  # square\n", "for (int i = 0; i < n; ++i) { a[i] += 1; }",
    "12345 + 678 = 13023; pi = 3.14159; 1,000,000", "héllo wörld, naïve café, Straße, 日本語, 🙂👍",
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><repo_name>x<file_sep>", "it's they're we've I'm you'll he'd DON'T",
]
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, there was a"]
CHAT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def ours(smollm2_path):
    start = time.perf_counter()
    cfg, params, tok = jgguf.load(smollm2_path)
    print(f"\njaxlab loads {smollm2_path.name} in {time.perf_counter() - start:.2f} s")
    return cfg, params, tok


@pytest.fixture(scope="module")
def reference(smollm2_path):
    folder, name = smollm2_path.parent, smollm2_path.name
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                              dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    return model, tok


def test_config_and_tokenizer_metadata(ours):
    cfg, _, tok = ours
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.mlp_dim,
            cfg.vocab_size, cfg.rope_base, cfg.tie_embeddings) == (30, 576, 9, 3, 64, 1536, 49152, 1e5, True)
    assert (tok.bos_id, tok.eos_ids, tok.pad_id, tok.add_bos, tok.vocab_size) == (1, (2,), 2, False, 49152)
    assert "<|im_start|>" in tok.chat_template_source
    assert tok.chat_template.default_system == ("You are a helpful AI assistant named SmolLM, "
                                                "trained by Hugging Face")
    assert json.loads(tok.tokenizer.to_str())["model"]["unk_token"] == "<|endoftext|>"


def test_token_ids_match_transformers(ours, reference):
    _, _, tok = ours
    _, ref_tok = reference
    for text in TEXTS:
        ids = tok.encode(text).tolist()
        assert ids == ref_tok.encode(text, add_special_tokens=False), text
        assert tok.decode(ids) == ref_tok.decode(ids, skip_special_tokens=True), text
    assert tok.encode("12345").tolist() == [33, 34, 35, 36, 37]  # one token per digit


def test_float32_logits_match_transformers(ours, reference):
    cfg, params, tok = ours
    model, ref_tok = reference
    text = ref_tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False) + TEXTS[3]
    ids_T = tok.encode(text)
    with torch.no_grad():
        ref_TV = model(torch.tensor(ids_T[None])).logits[0].numpy()
    logits_TV = np.asarray(transformer.apply(params, jnp.asarray(ids_T[None]), cfg)[0])
    rel = np.abs(logits_TV - ref_TV).max() / np.abs(ref_TV).max()
    print(f"\nSmolLM2 f32 logits over {ids_T.size} tokens: max |diff| / max |ref| = {rel:.2e}")
    assert rel <= 1e-4


def test_greedy_continuations_match_transformers(ours, reference):
    """jaxlab's greedy 32-token continuations (KV-cache sampler) are transformers' greedy ones:
    at every step of each continuation transformers' argmax is the token jaxlab chose (one
    teacher-forced forward pass; greedy decoding is determined by these argmaxes)."""
    cfg, params, tok = ours
    model, ref_tok = reference
    chat = ref_tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    prompts = [tok.encode(p) for p in PROMPTS + [chat]]
    tokens_BT, mask_BT = pad_prompts(prompts, tok.pad_id)
    out = generate(params, cfg, jnp.asarray(tokens_BT), jnp.asarray(mask_BT), jax.random.key(0),
                   SampleConfig(max_new_tokens=32, temperature=0.0, stop_tokens=tok.eos_ids,
                                pad_id=tok.pad_id))
    rows = [np.concatenate([p, np.asarray(out.tokens[b, : int(out.lengths[b])])])
            for b, p in enumerate(prompts)]
    width = max(r.size for r in rows)
    ids_BT = np.full((len(rows), width), tok.pad_id)
    attn_BT = np.zeros((len(rows), width), np.int64)
    for b, r in enumerate(rows):  # right padding: earlier positions are unaffected
        ids_BT[b, : r.size], attn_BT[b, : r.size] = r, 1
    with torch.no_grad():
        ref_BTV = model(torch.tensor(ids_BT), attention_mask=torch.tensor(attn_BT)).logits.numpy()
    for b, (prompt, row) in enumerate(zip(prompts, rows, strict=True)):
        chosen = row[prompt.size:]
        ref_greedy = ref_BTV[b, prompt.size - 1: row.size - 1].argmax(-1)
        assert chosen.size == 32 or chosen[-1] == tok.eos_id
        np.testing.assert_array_equal(chosen, ref_greedy, err_msg=(PROMPTS + ["chat"])[b])
    answer = tok.decode(np.asarray(out.tokens[-1]), stop_at_eos=True)
    assert answer.strip() == "The capital of France is Paris."
