"""A tiny random decoder LM shared by the evaluation tests; its vocabulary holds the byte
tokenizer's ids and those of the test BPE (tests/tokenizer_fixtures.py)."""

import jax
import pytest

from jaxlab.data import VOCAB_SIZE
from jaxlab.models import transformer


@pytest.fixture(scope="session")
def tiny_model():
    from tokenizer_fixtures import bpe_tokenizer, vocab_for

    vocab = max(VOCAB_SIZE, vocab_for(bpe_tokenizer("plain")), vocab_for(bpe_tokenizer("chatml")))
    cfg = transformer.Config(vocab_size=vocab, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1,
                             head_dim=16, mlp_dim=64)
    return cfg, transformer.init(cfg, jax.random.PRNGKey(0))
