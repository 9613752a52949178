"""Test set-up: 8 fake CPU devices (for sharding tests), deterministic hypothesis runs, and the
shared SmolLM2-135M-Instruct fixtures (skipped, saying `make model` fetches it, when absent)."""

import os

# Must happen before JAX initialises its backend.
os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci")


SMOLLM2 = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smollm2_path():
    """The cached SmolLM2-135M-Instruct GGUF file; skips, saying how to fetch it, when absent."""
    from jaxlab.interop.models import model_path

    path = model_path(SMOLLM2)
    if not path.is_file():
        pytest.skip(f"{path} is absent: `make model` (or `jaxlab models fetch {SMOLLM2}`) fetches it")
    return path


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    """(cfg, params, tokenizer) of SmolLM2-135M-Instruct in float32, loaded once per session."""
    from jaxlab.interop.models import load_model

    return load_model(SMOLLM2)
