"""The harness on the real SmolLM2-135M-Instruct (the shared ``smollm2`` fixture of
tests/conftest.py, skipped when the GGUF file is not cached: ``make model`` fetches it): chat
prompts, a few problems, and bits per byte of English text."""

import jax
import pytest

from jaxlab.evals import evaluate_task, text_bits_per_byte

pytestmark = pytest.mark.slow

ENGLISH = ("The quick brown fox jumps over the lazy dog. Machine learning models are trained on large "
           "amounts of text, and they learn to predict the next word in a sentence. ") * 2


def test_smollm2_task_eval(smollm2):
    cfg, params, tok = smollm2
    r = evaluate_task(cfg, params, tok, "arithmetic", n=4, samples=2, key=jax.random.PRNGKey(0),
                      max_new_tokens=12, batch_size=8, progress=False)
    assert r["chat"] is True  # an instruction-tuned model: prompts go through ChatML
    assert r["n"] == 4 and all(len(p["samples"]) == 2 for p in r["problems"])
    # decoded text, not special tokens: the model answers in words and digits
    assert all(p["greedy"].strip() and "<|im_" not in p["greedy"] for p in r["problems"])
    g = r["overall"]["greedy"]
    assert g["low"] <= g["accuracy"] <= g["high"]


def test_smollm2_bits_per_byte(smollm2):
    cfg, params, tok = smollm2
    out = text_bits_per_byte(cfg, params, tok, ENGLISH, window=64, stride=32)
    # a trained model predicts English far better than the uniform log2(49152) / 4 ~ 3.9 bits/byte
    assert 0.1 < out["bits_per_byte"] < 2.0
    assert out["n_windows"] > 1 and out["n_tokens"] < out["n_bytes"]
