"""Parameter-efficient fine-tuning: adapters that rewrite a params pytree.

    frozen, trainable = attach(params, AdapterSpec(method="lora", targets="attn", rank=8), key)
    params = merge(frozen, trainable, spec, step=t)

Methods: LoRA (and rsLoRA), DoRA, SingLoRA, FourierFT (:mod:`jaxlab.peft.adapters`), EVA
(LoRA initialised from activations, ranks by explained variance: :mod:`jaxlab.peft.eva`).
Trainers take an ``AdapterSpec`` as their ``peft`` setting (method "none": full fine-tuning);
:mod:`jaxlab.peft.runs` holds what ``fit`` needs to train one and to check its base on resume.
"""

from jaxlab.peft.adapters import (
    METHODS,
    NO_ADAPTER,
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

__all__ = ["METHODS", "NO_ADAPTER", "TARGETS", "AdapterError", "AdapterSpec", "attach", "count_trainable", "delta_nm",
           "fourier_positions", "inline", "merge", "quantize_base", "targeted"]
