"""Kernels: each op has a plain-jnp reference, Pallas kernels, and one dispatcher."""

from jaxlab.kernels._pallas import UnsupportedError
from jaxlab.kernels.attention import attention
from jaxlab.kernels.scan import linear_scan, selective_scan

__all__ = ["attention", "linear_scan", "selective_scan", "UnsupportedError"]
