"""Parameter-efficient fine-tuning: adapters that rewrite a params pytree.

    frozen, trainable = attach(params, AdapterSpec(method="lora", targets="attn", rank=8), key)
    params = merge(frozen, trainable, spec, step=t)

Methods: LoRA (and rsLoRA), DoRA, SingLoRA, FourierFT (:mod:`jaxlab.peft.adapters`).
"""

from jaxlab.peft.adapters import (
    METHODS,
    TARGETS,
    AdapterError,
    AdapterSpec,
    attach,
    count_trainable,
    delta_nm,
    fourier_positions,
    inline,
    merge,
    quantize_base,
    targeted,
)

__all__ = ["METHODS", "TARGETS", "AdapterError", "AdapterSpec", "attach", "count_trainable", "delta_nm",
           "fourier_positions", "inline", "merge", "quantize_base", "targeted"]
