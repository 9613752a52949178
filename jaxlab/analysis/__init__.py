"""Diagnostics that read params and activations (they never change a model)."""

from jaxlab.analysis import displacement

__all__ = ["displacement"]
