"""Losses as pure functions of arrays: each returns a scalar (or sums) and a metrics dict."""

from jaxlab.losses import lm

__all__ = ["lm"]
