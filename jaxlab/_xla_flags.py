"""XLA flags jaxlab sets for the CPU backend, before JAX starts its backends.

``--xla_cpu_experimental_ynn_fusion_type=dot``: in jaxlib 0.10 the CPU backend hands element-wise
and reduction fusions to YNNPACK as well as matrix products; in training steps some of those
(softmax and activation backward passes) run several times slower than XLA's own loops.
Restricting YNNPACK to dots makes the quickstart training step about 1.3x faster on 2 cores
(``scripts/bench_train.py``). The flag is experimental, so it is only added for the jaxlib
series it was measured on, only if the user has not set it, and never when
``JAXLAB_XLA_DEFAULTS=1``. It only takes effect if JAX has not initialised its backends yet.
"""

from __future__ import annotations

import os

CPU_FLAGS = {"xla_cpu_experimental_ynn_fusion_type": "dot"}
TESTED_JAXLIB_SERIES = ("0.10.",)


def cpu_flags_to_add(xla_flags: str, jaxlib_version: str, opt_out: str | None,
                     flags: dict[str, str] = CPU_FLAGS) -> list[str]:
    """The ``--name=value`` flags of ``flags`` to append to ``XLA_FLAGS`` (pure; see module
    docstring): none on an untested jaxlib series or with ``opt_out == "1"``, and never one the
    user has set."""
    if opt_out == "1" or not jaxlib_version.startswith(TESTED_JAXLIB_SERIES):
        return []
    return [f"--{name}={value}" for name, value in flags.items() if f"--{name}" not in xla_flags]


def apply() -> None:
    try:
        from jaxlib import version as jaxlib_version
    except ImportError:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    extra = cpu_flags_to_add(flags, jaxlib_version.__version__, os.environ.get("JAXLAB_XLA_DEFAULTS"))
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()
