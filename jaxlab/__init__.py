"""jaxlab: a JAX research lab of small pure functions.

Notation (shape suffixes on array names, used everywhere in the package):

    B  batch                  T  time (query length)        S  source / key length
    D  model width            H  query heads                K  key-value heads
    G  query heads per kv head (H // K) in attention; samples per prompt (the group) in RL
    Dh head dimension (``..._BTHD``)
    F  MLP hidden width       V  vocabulary                 L  layers
    A  gradient-accumulation micro-batches

``x_BTD`` is a [batch, time, model] array; ``logits_BTV`` are per-position logits.
Params are plain nested dicts of arrays; configs are frozen dataclasses.
"""

from jaxlab import _xla_flags

_xla_flags.apply()

__version__ = "0.1.0"
