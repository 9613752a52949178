"""Adapters in the Hugging Face PEFT layout: ``adapter_config.json`` + ``adapter_model.safetensors``.

    save_adapter(folder, trainable, spec, base_model="...")    LoRA / rsLoRA / DoRA adapters
    spec, trainable = load_adapter(folder)

Tensor names and layouts (``i`` the layer, ``proj`` one of q/k/v/o_proj under ``self_attn``
or gate/up/down_proj under ``mlp``), as torch Linear layers store them ([out, in]):

    base_model.model.model.layers.{i}.{module}.{proj}.lora_A.weight         A^T  [r, n]
    base_model.model.model.layers.{i}.{module}.{proj}.lora_B.weight         B^T  [m, r]
    base_model.model.model.layers.{i}.{module}.{proj}.lora_magnitude_vector  m_c  [m]   (DoRA)

where jaxlab's A [n, r], B [r, m] act on the kernel read as a matrix [n, m] (the input axes
flattened first, as :mod:`jaxlab.interop.hf` lays out a Linear weight). The scale is
``lora_alpha / r`` (``/ sqrt(r)`` with ``use_rslora``), as in :mod:`jaxlab.peft.adapters`.
Settings jaxlab cannot express (per-module ranks or alphas, a subset of layers, trained biases,
``modules_to_save``, ``fan_in_fan_out``) are refused with the field's name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxlab.peft.adapters import AdapterError, AdapterSpec

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model.model.layers."
# jaxlab module path (without "layers/") <-> the Hugging Face module of a decoder layer
MODULES = {"attn/q": "self_attn.q_proj", "attn/k": "self_attn.k_proj", "attn/v": "self_attn.v_proj",
           "attn/o": "self_attn.o_proj", "mlp/gate": "mlp.gate_proj", "mlp/up": "mlp.up_proj",
           "mlp/down": "mlp.down_proj"}
_HF_TO_JAXLAB = {v: k for k, v in MODULES.items()}
_NAME = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn\.\w+|mlp\.\w+)\."
                   r"(lora_A\.weight|lora_B\.weight|lora_magnitude_vector)$")


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("PEFT adapters need the 'safetensors' package: pip install safetensors") from None
    return safetensors.numpy


def save_adapter(folder: str | Path, trainable: dict, spec: AdapterSpec, *, base_model: str = "") -> Path:
    """Writes a LoRA or DoRA adapter (``trainable`` from :func:`jaxlab.peft.attach` on a
    stacked-layer transformer) in the PEFT layout (module docstring)."""
    if spec.method not in ("lora", "dora"):
        raise AdapterError(f"the PEFT layout holds LoRA and DoRA adapters, not {spec.method!r}")
    folder = Path(folder)
    layers = trainable.get("layers", {})
    tensors, targets = {}, []
    for group, modules in layers.items():
        for name, leaves in modules.items():
            module = f"{group}/{name}"
            if module not in MODULES:
                raise AdapterError(f"no PEFT name for the adapter of layers/{module}")
            targets.append(MODULES[module].split(".")[-1])
            a_LNR, b_LRM = np.asarray(leaves["lora_a"], np.float32), np.asarray(leaves["lora_b"], np.float32)
            for i in range(a_LNR.shape[0]):
                base = f"{PREFIX}{i}.{MODULES[module]}."
                tensors[base + "lora_A.weight"] = np.ascontiguousarray(a_LNR[i].T)
                tensors[base + "lora_B.weight"] = np.ascontiguousarray(b_LRM[i].T)
                if spec.method == "dora":
                    tensors[base + "lora_magnitude_vector"] = np.asarray(leaves["magnitude"][i], np.float32)
    if not tensors:
        raise AdapterError("no layer adapters to save (trainable['layers'] is empty)")
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "r": spec.rank, "lora_alpha": spec.alpha, "use_rslora": spec.rslora,
        "use_dora": spec.method == "dora", "target_modules": sorted(set(targets)), "lora_dropout": 0.0,
        "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True, "inference_mode": True,
        "modules_to_save": None, "layers_to_transform": None, "rank_pattern": {}, "alpha_pattern": {},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    _safetensors().save_file(tensors, str(folder / WEIGHTS_FILE))
    return folder


def _check_config(config: dict, file: Path) -> None:
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"{file}: peft_type {config.get('peft_type')!r}; jaxlab reads LORA adapters")
    unsupported = {"rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None,
                   "modules_to_save": None, "bias": "none", "fan_in_fan_out": False,
                   "layer_replication": None}
    for key, default in unsupported.items():
        value = config.get(key, default)
        if value not in (default, None) and not (isinstance(default, dict) and not value):
            raise AdapterError(f"{file}: {key}={value!r} cannot be expressed in jaxlab adapters")


def load_adapter(folder: str | Path) -> tuple[AdapterSpec, dict]:
    """(spec, trainable) of a PEFT LoRA / DoRA adapter folder (module docstring), the arrays
    float32 and stacked over layers. Every layer must carry the same adapted modules."""
    folder = Path(folder)
    file = folder / CONFIG_FILE
    if not file.is_file():
        raise AdapterError(f"{folder} has no {CONFIG_FILE}: not a PEFT adapter folder")
    config = json.loads(file.read_text())
    _check_config(config, file)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise AdapterError(f"{folder} has no {WEIGHTS_FILE} (only safetensors adapters are read)")
    tensors = _safetensors().load_file(str(weights))
    per_module: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    for name, value in tensors.items():
        match = _NAME.match(name)
        if match is None:
            raise AdapterError(f"{weights}: tensor {name!r} is not a decoder-layer LoRA tensor jaxlab reads")
        layer, hf_module, kind = int(match[1]), match[2], match[3]
        if hf_module not in _HF_TO_JAXLAB:
            raise AdapterError(f"{weights}: no jaxlab module for {hf_module!r}")
        per_module.setdefault(_HF_TO_JAXLAB[hf_module], {}).setdefault(layer, {})[kind] = value
    dora = bool(config.get("use_dora", False))
    trainable: dict = {}
    n_layers = None
    for module, layers in sorted(per_module.items()):
        if n_layers is None:
            n_layers = len(layers)
        if sorted(layers) != list(range(n_layers)):
            raise AdapterError(f"{weights}: {module} is adapted in layers {sorted(layers)}; jaxlab "
                               f"needs every layer 0..{n_layers - 1}")
        leaves = {"lora_a": jnp.asarray(np.stack([layers[i]["lora_A.weight"].T for i in range(n_layers)]), jnp.float32),
                  "lora_b": jnp.asarray(np.stack([layers[i]["lora_B.weight"].T for i in range(n_layers)]), jnp.float32)}
        if dora:
            leaves["magnitude"] = jnp.asarray(np.stack([layers[i]["lora_magnitude_vector"] for i in range(n_layers)]),
                                              jnp.float32)
        group, name = module.split("/")
        trainable.setdefault("layers", {}).setdefault(group, {})[name] = leaves
    if not trainable:
        raise AdapterError(f"{weights} holds no adapter tensors")
    modules = sorted(f"layers/{m}" for m in per_module)
    spec = AdapterSpec(method="dora" if dora else "lora", rank=int(config["r"]),
                       alpha=float(config["lora_alpha"]), rslora=bool(config.get("use_rslora", False)),
                       targets="^(" + "|".join(re.escape(m) for m in modules) + ")$")
    return spec, trainable
