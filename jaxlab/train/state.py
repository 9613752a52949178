"""The train state: one pytree with everything a step changes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: dict  # float32 master params (param_dtype)
    opt_state: dict
    rng: jax.Array  # raw uint32 key data (checkpointable); use ``key`` to get a typed key

    @property
    def key(self) -> jax.Array:
        return jax.random.wrap_key_data(self.rng)


def create(params: dict, optimizer, seed: int) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                      rng=jax.random.key_data(jax.random.key(seed)))
