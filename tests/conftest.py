"""Test set-up: 8 fake CPU devices (for sharding tests), XLA's quick compilation mode,
deterministic hypothesis runs, and the shared SmolLM2-135M-Instruct fixtures (skipped, saying
`make model` fetches it, when absent).

Quick compilation (``JAX_DISABLE_MOST_OPTIMIZATIONS=1``: LLVM at -O0, no expensive passes):
compiling, not running, is most of the suite's time, since its models are tiny and each test
compiles its own programs; this mode takes about a quarter off it. The HLO passes (SPMD
partitioning, fusion) still run, so sharding and HLO assertions see the same programs, and
comparisons are between programs compiled the same way. The processes that the CLI tests start
inherit it. ``JAX_DISABLE_MOST_OPTIMIZATIONS=0 pytest`` runs the suite fully optimised.

``--xla_cpu_use_fusion_emitters=false``: XLA:CPU compiles its fusions with the older loop
emitters instead of the MLIR fusion emitters. Compiling dominates the tests (a smoke run of
``experiments/illusion_of_state.py`` spends 35 s of its 41 CPU seconds in 57 compilations), and
this halves it (41 -> 22 CPU s there; ``tests/models``: 152 -> 94). The results are the same
to float rounding; sharding and HLO assertions see the same partitioned programs. Set
``XLA_FLAGS`` yourself to choose otherwise.
"""

import os

# Must happen before JAX initialises its backend.
os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
from jaxlab import _xla_flags  # noqa: E402  (neither starts a backend)
from jaxlib import version as _jaxlib_version  # noqa: E402

# on the jaxlib series it was measured on, unless XLA_FLAGS already sets it
os.environ["XLA_FLAGS"] = " ".join([os.environ["XLA_FLAGS"], *_xla_flags.cpu_flags_to_add(
    os.environ["XLA_FLAGS"], _jaxlib_version.__version__, None,
    flags={"xla_cpu_use_fusion_emitters": "false"})])
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

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
