"""Models as modules of pure functions: ``init(cfg, key)`` and ``apply(params, tokens, cfg)``."""

from jaxlab.models import transformer

__all__ = ["transformer"]
