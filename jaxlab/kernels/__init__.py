"""Kernels: each op has a plain-jnp reference, optional fast kernels, and one dispatcher."""

from jaxlab.kernels.attention import attention

__all__ = ["attention"]
