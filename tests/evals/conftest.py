"""A tiny random decoder LM (its 400 ids hold the byte tokenizer and the test BPE) shared by
the evaluation tests."""

import jax
import pytest

from jaxlab.models import transformer

TINY = transformer.Config(vocab_size=400, d_model=32, n_layers=2, n_heads=2, n_kv_heads=1,
                          head_dim=16, mlp_dim=64)


@pytest.fixture(scope="session")
def tiny_model():
    return TINY, transformer.init(TINY, jax.random.PRNGKey(0))
