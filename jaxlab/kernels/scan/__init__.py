"""Linear-recurrence scans: ``linear_scan`` (diagonal, h_t = a_t h_{t-1} + b_t) and
``selective_scan`` (Mamba-1), each dispatching to an implementation.

``linear_scan`` implementations:
  "xla"         ``lax.associative_scan`` (O(log T) depth).
  "sequential"  ``lax.scan``, one step at a time (the plainest reference).
  "pallas"      the chunked kernel of ``pallas.py`` (interpret mode on CPU: slow, for tests).
  "auto"        the kernel on a GPU when it supports the call, else "xla".

``selective_scan`` implementations: "xla" (``lax.scan`` over time with a [B, D, N] state),
"pallas" (the kernel keeping the state on chip) and "auto" (as above).

An explicit implementation that cannot run a call raises ``UnsupportedError`` (a ValueError);
"auto" falls back and logs why, once. Under a context mesh (``jax.set_mesh``) the kernels run
inside ``shard_map`` over the batch and channel axes (:mod:`jaxlab.kernels._mesh`).
"""

from __future__ import annotations

import jax
from jax.sharding import PartitionSpec as P

from jaxlab.kernels import _mesh, _pallas
from jaxlab.kernels._pallas import UnsupportedError
from jaxlab.kernels.scan.pallas import (ScanBlocks, linear_scan_pallas, scan_unsupported_reason,
                                        selective_scan_pallas)
from jaxlab.kernels.scan.reference import (linear_scan_associative, linear_scan_sequential,
                                           selective_scan_reference)

LINEAR_SCAN_IMPLEMENTATIONS = ("auto", "xla", "sequential", "pallas")
SELECTIVE_SCAN_IMPLEMENTATIONS = ("auto", "xla", "pallas")


def _auto(op: str, *arrays) -> str:
    if _pallas.backend() != "gpu":
        return "xla"
    reason = scan_unsupported_reason(*arrays)
    if reason is None:
        return "pallas"
    _pallas.note_fallback(op, "xla", reason)
    return "xla"


def _linear_on_mesh(a_BTD, b_BTD, h0_BD):
    """The linear-scan kernel, under ``shard_map`` over the context mesh's batch and channel
    axes when there is one (:mod:`jaxlab.kernels._mesh`)."""
    mesh = _mesh.context_mesh()
    if mesh is None:
        return linear_scan_pallas(a_BTD, b_BTD, h0_BD)
    _mesh.check_sequence_axes(mesh, "linear_scan(impl='pallas')")
    b = _mesh.batch_axes(mesh, a_BTD.shape[0])
    d = _mesh.split_axis(mesh, a_BTD.shape[2])
    args, specs = [a_BTD, b_BTD], [P(b, None, d), P(b, None, d)]
    if h0_BD is not None:
        args.append(h0_BD)
        specs.append(P(b, d))
    return _mesh.shard_kernel(linear_scan_pallas, mesh, args, specs, P(b, None, d))


def _selective_on_mesh(x_BTD, delta_BTD, A_DN, B_BTN, C_BTN, D_D):
    """The selective-scan kernel, under ``shard_map`` over the context mesh's batch and channel
    axes when there is one: B and C (shared by the channels) are split by batch only."""
    mesh = _mesh.context_mesh()
    if mesh is None:
        return selective_scan_pallas(x_BTD, delta_BTD, A_DN, B_BTN, C_BTN, D_D)
    _mesh.check_sequence_axes(mesh, "selective_scan(impl='pallas')")
    b = _mesh.batch_axes(mesh, x_BTD.shape[0])
    d = _mesh.split_axis(mesh, x_BTD.shape[2])
    args = [x_BTD, delta_BTD, A_DN, B_BTN, C_BTN]
    specs = [P(b, None, d), P(b, None, d), P(d, None), P(b, None, None), P(b, None, None)]
    if D_D is not None:
        args.append(D_D)
        specs.append(P(d))
    return _mesh.shard_kernel(selective_scan_pallas, mesh, args, specs, P(b, None, d))


def linear_scan(a_BTD: jax.Array, b_BTD: jax.Array, h0_BD: jax.Array | None = None, *,
                impl: str = "auto") -> jax.Array:
    """h [B, T, D] with h_t = a_t * h_{t-1} + b_t and h_{-1} = h0 (default zeros).

    Args:
      a_BTD: decays (any real values) [B, T, D].
      b_BTD: inputs [B, T, D].
      h0_BD: initial state [B, D] or None.
      impl: "auto" | "xla" | "sequential" | "pallas".
    Returns:
      h in the result dtype of a and b (the state is carried in float32).
    """
    if a_BTD.ndim != 3 or a_BTD.shape != b_BTD.shape:
        raise ValueError(f"linear_scan expects a and b of one shape [B, T, D], got {a_BTD.shape} "
                         f"and {b_BTD.shape}")
    if h0_BD is not None and h0_BD.shape != (b_BTD.shape[0], b_BTD.shape[2]):
        raise ValueError(f"h0 must be [B, D]={(b_BTD.shape[0], b_BTD.shape[2])}, got {h0_BD.shape}")
    if impl not in LINEAR_SCAN_IMPLEMENTATIONS:
        raise ValueError(f"unknown linear_scan impl {impl!r}; expected one of "
                         f"{LINEAR_SCAN_IMPLEMENTATIONS}")
    if impl == "auto":
        impl = _auto("linear_scan", a_BTD, b_BTD, h0_BD)
    if impl == "pallas":
        return _linear_on_mesh(a_BTD, b_BTD, h0_BD)
    if impl == "sequential":
        return linear_scan_sequential(a_BTD, b_BTD, h0_BD)
    return linear_scan_associative(a_BTD, b_BTD, h0_BD)


def selective_scan(x_BTD: jax.Array, delta_BTD: jax.Array, A_DN: jax.Array, B_BTN: jax.Array,
                   C_BTN: jax.Array, D_D: jax.Array | None = None, *, z_BTD: jax.Array | None = None,
                   delta_bias_D: jax.Array | None = None, delta_softplus: bool = False,
                   h0_BDN: jax.Array | None = None, return_state: bool = False,
                   reset_BT: jax.Array | None = None, impl: str = "auto"):
    """The Mamba-1 selective scan, y [B, T, D] (formula in ``reference.py``); with
    ``return_state`` the pair (y, h_T [B, D, N]).

    Args:
      x_BTD: inputs; delta_BTD: step sizes [B, T, D] (positive, or raw with ``delta_softplus``).
      A_DN: state matrix (diagonal per channel; negative for decay) [D, N].
      B_BTN, C_BTN: input and output projections of the state, shared by channels [B, T, N].
      D_D: skip connection [D] or None.
      z_BTD: gate, y * silu(z) [B, T, D] or None; delta_bias_D: added to delta [D] or None;
      delta_softplus: delta = softplus(delta + bias); h0_BDN: initial state or None.
      reset_BT: [B, T] bool or None; where true the state before step t is taken as 0 (a new
        sequence starts there: packed rows, left padding).
      impl: "auto" | "xla" | "pallas" (the kernel takes none of the options: "auto" then runs
        "xla", and an explicit "pallas" raises UnsupportedError).
    """
    if x_BTD.ndim != 3 or delta_BTD.shape != x_BTD.shape:
        raise ValueError(f"x and delta must be one [B, T, D] shape, got {x_BTD.shape} and "
                         f"{delta_BTD.shape}")
    Bsz, T, D = x_BTD.shape
    if A_DN.ndim != 2 or A_DN.shape[0] != D:
        raise ValueError(f"A must be [D, N] with D={D}, got {A_DN.shape}")
    N = A_DN.shape[1]
    for name, arr in (("B", B_BTN), ("C", C_BTN)):
        if arr.shape != (Bsz, T, N):
            raise ValueError(f"{name} must be [B, T, N]={(Bsz, T, N)}, got {arr.shape}")
    if D_D is not None and D_D.shape != (D,):
        raise ValueError(f"D must be [D]={(D,)}, got {D_D.shape}")
    if z_BTD is not None and z_BTD.shape != x_BTD.shape:
        raise ValueError(f"z must be [B, T, D]={x_BTD.shape}, got {z_BTD.shape}")
    if delta_bias_D is not None and delta_bias_D.shape != (D,):
        raise ValueError(f"delta_bias must be [D]={(D,)}, got {delta_bias_D.shape}")
    if h0_BDN is not None and h0_BDN.shape != (Bsz, D, N):
        raise ValueError(f"h0 must be [B, D, N]={(Bsz, D, N)}, got {h0_BDN.shape}")
    if reset_BT is not None and reset_BT.shape != (Bsz, T):
        raise ValueError(f"reset must be [B, T]={(Bsz, T)}, got {reset_BT.shape}")
    if impl not in SELECTIVE_SCAN_IMPLEMENTATIONS:
        raise ValueError(f"unknown selective_scan impl {impl!r}; expected one of "
                         f"{SELECTIVE_SCAN_IMPLEMENTATIONS}")
    options = (z_BTD is not None or delta_bias_D is not None or delta_softplus or h0_BDN is not None
               or return_state or reset_BT is not None)
    if impl == "pallas" and options:
        raise UnsupportedError("selective_scan_pallas takes no gate, delta bias, softplus, state or reset; "
                               "use impl='xla'")
    if impl == "auto":
        impl = "xla" if options else _auto("selective_scan", x_BTD, delta_BTD, A_DN, B_BTN, C_BTN, D_D)
    if impl == "pallas":
        return _selective_on_mesh(x_BTD, delta_BTD, A_DN, B_BTN, C_BTN, D_D)
    return selective_scan_reference(x_BTD, delta_BTD, A_DN, B_BTN, C_BTN, D_D, z_BTD=z_BTD,
                                    delta_bias_D=delta_bias_D, delta_softplus=delta_softplus,
                                    h0_BDN=h0_BDN, return_state=return_state, reset_BT=reset_BT)


__all__ = ["linear_scan", "selective_scan", "linear_scan_associative", "linear_scan_sequential",
           "linear_scan_pallas", "selective_scan_reference", "selective_scan_pallas", "ScanBlocks",
           "LINEAR_SCAN_IMPLEMENTATIONS", "SELECTIVE_SCAN_IMPLEMENTATIONS", "UnsupportedError"]
