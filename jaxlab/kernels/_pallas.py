"""What the Pallas kernels share: where they run, their GPU compiler params, and how a
dispatcher reports that it fell back to another implementation.

The kernels are written as ``pl.pallas_call`` with a grid and ``BlockSpec``s, loops over
blocks inside the kernel and plain ref indexing. That one form runs everywhere JAX can run
it: lowered through Triton on a GPU (``compiler_params`` below), and on CPU in interpret mode
(a ``jax.jit`` of a loop over the grid, the only way Pallas runs on CPU; slow, for tests).
"""

from __future__ import annotations

import logging

import jax

log = logging.getLogger("jaxlab.kernels")

_NOTED: set[tuple[str, str]] = set()


class UnsupportedError(ValueError):
    """An implementation was asked explicitly for a call it does not support."""


def backend() -> str:
    """The default JAX backend: "cpu", "gpu" or "tpu"."""
    return jax.default_backend()


def resolve_interpret(interpret: bool | None) -> bool:
    """``None`` means: interpret exactly when the default backend is the CPU."""
    return backend() == "cpu" if interpret is None else bool(interpret)


def compiler_params(num_warps: int, num_stages: int):
    """Triton compiler params (GPU lowering through Triton, on jax 0.10 and 0.11), or None
    where the Triton bindings are missing (the kernel then runs only in interpret mode)."""
    try:
        from jax.experimental.pallas import triton as pltriton
    except ImportError:  # pragma: no cover - jaxlib without the Triton dialect
        return None
    return pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages)


def platform_reason() -> str | None:
    """Why the kernels cannot run on this platform, or None when they can."""
    if backend() == "cpu":
        return None
    if backend() != "gpu":
        return f"the Pallas kernels run on GPU (or in interpret mode on CPU), not on {backend()}"
    if compiler_params(1, 1) is None:
        return "this JAX has no Pallas Triton backend (the kernels lower through Triton)"
    return None


def note_fallback(op: str, chosen: str, reason: str) -> None:
    """Logs, once per (op, reason), that ``impl="auto"`` did not use the kernel and why."""
    if (op, reason) in _NOTED:
        return
    _NOTED.add((op, reason))
    log.info("%s: impl='auto' uses %r: %s", op, chosen, reason)


def next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
