"""A tiny random decoder LM shared by the sampler tests."""

import jax
import pytest

from jaxlab.models import transformer

TINY = transformer.Config(vocab_size=32, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                          head_dim=8, mlp_dim=64)


@pytest.fixture(scope="session")
def model_cfg():
    return TINY


@pytest.fixture(scope="session")
def params():
    return transformer.init(TINY, jax.random.PRNGKey(0))
