"""Hugging Face checkpoints of Llama-family decoders in and out of jaxlab (safetensors only).

A Hugging Face model folder holds ``config.json`` and the weights: ``model.safetensors``, or
shards listed in ``model.safetensors.index.json``. :func:`load` reads the Llama, Mistral, Qwen2
and Qwen3 families into a :class:`jaxlab.models.transformer.Config` and its params pytree;
:func:`save` writes a folder that ``transformers`` loads. Pickled checkpoints (``*.bin``,
``*.pt``, ``*.pth``) are refused: nothing here ever unpickles.

Weights. A torch ``nn.Linear`` stores W as [out, in] (y = x W^T + b); a jaxlab dense kernel is
[in..., out...] (y = einsum(x, kernel) + b), and per-layer params are stacked on a leading L:

    Hugging Face tensor                      shape      jaxlab param                  shape
    model.embed_tokens.weight                [V, D]     embed/embedding               [V, D]
    lm_head.weight (absent when tied)        [V, D]     unembed/kernel                [D, V]
    model.norm.weight                        [D]        final_norm/scale              [D]
    model.layers.{l}.input_layernorm.weight  [D]        layers/attn_norm/scale        [L, D]
      ...post_attention_layernorm.weight     [D]        layers/mlp_norm/scale         [L, D]
      ...self_attn.q_proj.weight             [H*Dh, D]  layers/attn/q/kernel          [L, D, H, Dh]
      ...self_attn.q_proj.bias               [H*Dh]     layers/attn/q/bias            [L, H, Dh]
      ...self_attn.{k,v}_proj.weight         [K*Dh, D]  layers/attn/{k,v}/kernel      [L, D, K, Dh]
      ...self_attn.{k,v}_proj.bias           [K*Dh]     layers/attn/{k,v}/bias        [L, K, Dh]
      ...self_attn.o_proj.weight             [D, H*Dh]  layers/attn/o/kernel          [L, H, Dh, D]
      ...self_attn.{q,k}_norm.weight         [Dh]       layers/attn/{q,k}_norm/scale  [L, Dh]
      ...mlp.{gate,up}_proj.weight           [F, D]     layers/mlp/{gate,up}/kernel   [L, D, F]
      ...mlp.down_proj.weight                [D, F]     layers/mlp/down/kernel        [L, F, D]
      ...mlp.{gate,up,down}_proj.bias        [F], [D]   layers/mlp/{gate,up,down}/bias

so a kernel is W^T reshaped (flattened head dims are head-major on both sides). Both sides
rotate the two halves of each head's dims with RoPE ("rotate half"), so q and k need no
permutation. Every conversion is a transpose or a reshape: save -> load is bitwise.

One table (:data:`_TENSORS`) names the tensors of all four families; what a family adds shows
in its config, and the config decides which params exist:

    LlamaForCausalLM    optional MLP biases (mlp_bias); attention_bias would also bias o_proj
    MistralForCausalLM  one sliding window in every layer (sliding_window)
    Qwen2ForCausalLM    q/k/v biases always; sliding window when every layer slides
    Qwen3ForCausalLM    QK-norm always (RMSNorm over Dh); sliding window when every layer slides

A config jaxlab cannot compute exactly is refused with the field that asks for it (an
output-projection bias, per-layer windows, partial or yarn/dynamic/longrope RoPE, another
activation). Fields of config.json that do not change the computation (token ids,
``max_position_embeddings``, ``initializer_range``) are not part of the jaxlab config:
:func:`read_config` returns the raw dict and :func:`save` writes the :data:`PASSTHROUGH_FIELDS`
of its ``extra_config``, which is how :mod:`jaxlab.interop.convert` carries them across.

Tokenizers: :func:`load_tokenizer` (from :mod:`jaxlab.interop.tokenizer`) reads the folder's
``tokenizer.json`` through the ``tokenizers`` package, behind the byte tokenizer's interface.

Dtypes: ``load(path)`` keeps the checkpoint's dtype (float32, bfloat16 or float16) as both
``param_dtype`` and ``compute_dtype``, as ``transformers`` computes in the weights' dtype;
``load(path, dtype="float32")`` casts (use it to fine-tune with float32 master weights).
"""

from __future__ import annotations

import dataclasses
import json
import math
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import traverse_util

from jaxlab.interop.tokenizer import HFTokenizer, TokenizerError, load_tokenizer
from jaxlab.models import transformer
from jaxlab.nn.rope import RopeScaling

__all__ = [
    "CONFIG_FILE", "DEFAULT_MAX_SHARD_BYTES", "DTYPES", "FAMILIES", "INDEX_FILE",
    "PASSTHROUGH_FIELDS", "SUPPORTED_ARCHITECTURES", "WEIGHTS_FILE", "Family", "HFCheckpointError",
    "HFTokenizer", "TokenizerError", "config_from_hf", "config_to_hf", "family_of", "flat_params",
    "hf_tensors", "load", "load_tokenizer", "read_config", "save",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
DEFAULT_MAX_SHARD_BYTES = 5_000_000_000
PASSTHROUGH_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "max_position_embeddings",
                      "initializer_range")

# numpy learns the name "bfloat16" from ml_dtypes; safetensors' numpy API needs it for BF16.
DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16),
          "float16": np.dtype(np.float16)}
_HIDDEN_ACT_TO_MLP = {"silu": "swiglu", "swish": "swiglu", "gelu_pytorch_tanh": "geglu",
                      "gelu_new": "geglu"}
_MLP_TO_HIDDEN_ACT = {"swiglu": "silu", "geglu": "gelu_pytorch_tanh"}
_ROPE_TYPES = ("default", "linear", "llama3")


class HFCheckpointError(ValueError):
    """A Hugging Face folder, config field or tensor jaxlab cannot read or write (named)."""


@dataclasses.dataclass(frozen=True)
class Family:
    """What one Hugging Face architecture adds to the shared Llama layout.

    qkv_bias: "never"; "always" (Qwen2); "flag": ``attention_bias`` biases q, k, v and o_proj.
    window: "none"; "all" (Mistral: ``sliding_window`` in every layer); "per_layer" (Qwen:
      ``use_sliding_window``, ``max_window_layers``, ``layer_types``).
    defaults: the values the ``transformers`` config class gives fields config.json leaves out.
    """

    architecture: str
    model_type: str
    qkv_bias: Literal["never", "always", "flag"]
    qk_norm: bool
    has_mlp_bias: bool
    window: Literal["none", "all", "per_layer"]
    defaults: tuple[tuple[str, Any], ...]

    def default(self, name: str) -> Any:
        return dict(self.defaults).get(name)


_COMMON_DEFAULTS = (("hidden_act", "silu"), ("rms_norm_eps", 1e-6), ("tie_word_embeddings", False),
                    ("rope_theta", 10000.0), ("attention_bias", False), ("mlp_bias", False))
FAMILIES = {f.architecture: f for f in (
    Family("LlamaForCausalLM", "llama", "flag", False, True, "none",
           _COMMON_DEFAULTS + (("max_position_embeddings", 2048),)),
    Family("MistralForCausalLM", "mistral", "never", False, False, "all",
           _COMMON_DEFAULTS + (("num_key_value_heads", 8), ("sliding_window", 4096),
                               ("max_position_embeddings", 131072))),
    Family("Qwen2ForCausalLM", "qwen2", "always", False, False, "per_layer",
           _COMMON_DEFAULTS + (("num_key_value_heads", 32), ("use_sliding_window", False),
                               ("sliding_window", 4096), ("max_window_layers", 28),
                               ("max_position_embeddings", 32768))),
    Family("Qwen3ForCausalLM", "qwen3", "flag", True, False, "per_layer",
           _COMMON_DEFAULTS + (("num_key_value_heads", 32), ("head_dim", 128),
                               ("use_sliding_window", False), ("sliding_window", 4096),
                               ("max_window_layers", 28), ("max_position_embeddings", 32768))),
)}
SUPPORTED_ARCHITECTURES = tuple(FAMILIES)


# ----------------------------------------------------------------------------- tensor layout

@dataclasses.dataclass(frozen=True)
class _Layout:
    """How a jaxlab param is stored on the Hugging Face side.

    same: unchanged; flat: reshaped to 1-D (biases [H, Dh] -> [H*Dh]); linear: a torch Linear
    weight W [out, in], kernel = W^T reshaped, whose first ``n_in`` dims are the input dims.
    """

    kind: Literal["same", "flat", "linear"]
    n_in: int = 0

    def hf_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.kind == "same":
            return tuple(shape)
        if self.kind == "flat":
            return (math.prod(shape),)
        return (math.prod(shape[self.n_in:]), math.prod(shape[:self.n_in]))

    def from_hf(self, w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if self.kind == "same":
            return w
        if self.kind == "flat":
            return w.reshape(shape)
        return w.T.reshape(shape)

    def to_hf(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "same":
            return x
        if self.kind == "flat":
            return x.reshape(-1)
        return x.reshape(math.prod(x.shape[:self.n_in]), -1).T


_SAME, _FLAT = _Layout("same"), _Layout("flat")
_LINEAR, _LINEAR_2IN = _Layout("linear", 1), _Layout("linear", 2)
_LAYER_PREFIX = "model.layers.{}."
# jaxlab param path -> (Hugging Face tensor name, layout); "layers/" params exist once per layer.
_TENSORS = {
    "embed/embedding": ("model.embed_tokens.weight", _SAME),
    "unembed/kernel": ("lm_head.weight", _LINEAR),
    "final_norm/scale": ("model.norm.weight", _SAME),
    "layers/attn_norm/scale": ("input_layernorm.weight", _SAME),
    "layers/mlp_norm/scale": ("post_attention_layernorm.weight", _SAME),
    "layers/attn/q/kernel": ("self_attn.q_proj.weight", _LINEAR),
    "layers/attn/q/bias": ("self_attn.q_proj.bias", _FLAT),
    "layers/attn/k/kernel": ("self_attn.k_proj.weight", _LINEAR),
    "layers/attn/k/bias": ("self_attn.k_proj.bias", _FLAT),
    "layers/attn/v/kernel": ("self_attn.v_proj.weight", _LINEAR),
    "layers/attn/v/bias": ("self_attn.v_proj.bias", _FLAT),
    "layers/attn/o/kernel": ("self_attn.o_proj.weight", _LINEAR_2IN),
    "layers/attn/q_norm/scale": ("self_attn.q_norm.weight", _SAME),
    "layers/attn/k_norm/scale": ("self_attn.k_norm.weight", _SAME),
    "layers/mlp/gate/kernel": ("mlp.gate_proj.weight", _LINEAR),
    "layers/mlp/gate/bias": ("mlp.gate_proj.bias", _SAME),
    "layers/mlp/up/kernel": ("mlp.up_proj.weight", _LINEAR),
    "layers/mlp/up/bias": ("mlp.up_proj.bias", _SAME),
    "layers/mlp/down/kernel": ("mlp.down_proj.weight", _LINEAR),
    "layers/mlp/down/bias": ("mlp.down_proj.bias", _SAME),
}
# Tensors some checkpoints carry that hold nothing jaxlab needs (old Llama saves kept the RoPE
# inverse frequencies; jaxlab recomputes them from the config).
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


def _expected_params(cfg: transformer.Config) -> dict[str, jax.ShapeDtypeStruct]:
    """Flat {path: ShapeDtypeStruct} of the params ``transformer.init(cfg)`` builds."""
    shapes = jax.eval_shape(lambda key: transformer.init(cfg, key), jax.random.key(0))
    return traverse_util.flatten_dict(shapes, sep="/")


def _hf_names(path: str, n_layers: int) -> list[str]:
    """The Hugging Face tensor names of jaxlab param ``path`` (one per layer under layers/)."""
    if path not in _TENSORS:
        raise HFCheckpointError(f"jaxlab param {path!r} has no Hugging Face counterpart")
    name, _ = _TENSORS[path]
    if path.startswith("layers/"):
        return [_LAYER_PREFIX.format(i) + name for i in range(n_layers)]
    return [name]


# ----------------------------------------------------------------------------- config

def read_config(path: str | Path) -> dict:
    """The config.json of a Hugging Face model folder, as a dict."""
    folder = Path(path)
    if not folder.is_dir():
        raise HFCheckpointError(f"{folder} is not a folder; expected a Hugging Face model folder "
                                f"with {CONFIG_FILE} and {WEIGHTS_FILE}")
    file = folder / CONFIG_FILE
    if not file.is_file():
        raise HFCheckpointError(f"{folder} has no {CONFIG_FILE}; a Hugging Face model folder holds "
                                f"{CONFIG_FILE} and {WEIGHTS_FILE} (or {INDEX_FILE} and its shards)")
    try:
        hf = json.loads(file.read_text())
    except ValueError as e:
        raise HFCheckpointError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(hf, dict):
        raise HFCheckpointError(f"{file} must hold a JSON object, got {type(hf).__name__}")
    return hf


def family_of(hf: dict) -> Family:
    """The family of a config.json dict, by ``architectures`` (else ``model_type``)."""
    archs = hf.get("architectures") or []
    model_type = hf.get("model_type")
    if archs:
        arch = archs[0]
        family = FAMILIES.get(arch)
    else:
        arch = None
        family = next((f for f in FAMILIES.values() if f.model_type == model_type), None)
    if family is None:
        raise HFCheckpointError(
            f"unsupported architecture {arch!r} (model_type {model_type!r}) in {CONFIG_FILE}; "
            f"jaxlab reads {', '.join(SUPPORTED_ARCHITECTURES)}")
    return family


def _field(hf: dict, family: Family, name: str) -> Any:
    """config.json's ``name``, or the family's default when the file leaves it out."""
    value = hf.get(name)
    if value is None:
        value = family.default(name)
    if value is None:
        raise HFCheckpointError(f"{CONFIG_FILE} of a {family.architecture} lacks {name!r}")
    return value


def _rope_from_hf(hf: dict, family: Family) -> tuple[float, RopeScaling]:
    """(rope base, scaling) from ``rope_parameters`` (transformers 5) or the older
    ``rope_theta`` + ``rope_scaling`` pair; ``rope_scaling`` wins as in transformers."""
    params = hf.get("rope_scaling") or hf.get("rope_parameters") or {}
    field = "rope_scaling" if hf.get("rope_scaling") else "rope_parameters"
    if not isinstance(params, dict):
        raise HFCheckpointError(f"{CONFIG_FILE} field {field} must be an object, got {params!r}")
    if any(isinstance(v, dict) for v in params.values()):
        raise HFCheckpointError(f"{CONFIG_FILE} field {field} differs per layer type "
                                f"({sorted(params)}); jaxlab uses one RoPE in every layer")
    base = float(params.get("rope_theta", hf.get("rope_theta", _field(hf, family, "rope_theta"))))
    partial = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise HFCheckpointError(f"{CONFIG_FILE} sets partial_rotary_factor={partial}; "
                                f"{family.architecture} rotates every head dimension")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in _ROPE_TYPES:
        raise HFCheckpointError(f"{CONFIG_FILE} {field}.rope_type={kind!r} is not supported; "
                                f"jaxlab implements {', '.join(_ROPE_TYPES)}")

    def need(key):
        if params.get(key) is None:
            raise HFCheckpointError(f"{CONFIG_FILE} {field} of rope_type {kind!r} lacks {key!r}")
        return params[key]

    if kind == "default":
        return base, RopeScaling()
    if kind == "linear":
        return base, RopeScaling(kind="linear", factor=float(need("factor")))
    # transformers prefers a top-level original_max_position_embeddings, then the rope
    # parameters' own, then max_position_embeddings.
    original = hf.get("original_max_position_embeddings") or params.get(
        "original_max_position_embeddings") or _field(hf, family, "max_position_embeddings")
    return base, RopeScaling(kind="llama3", factor=float(need("factor")),
                             low_freq_factor=float(need("low_freq_factor")),
                             high_freq_factor=float(need("high_freq_factor")),
                             original_max_len=int(original))


def _window_from_hf(hf: dict, family: Family, n_layers: int) -> int | None:
    """The attention window of every layer, or None (full attention)."""
    if family.window == "none":
        return None
    if family.window == "all":
        return hf["sliding_window"] if "sliding_window" in hf else family.default("sliding_window")
    window = _field(hf, family, "sliding_window") if _field(hf, family, "use_sliding_window") else None
    layer_types = hf.get("layer_types") or [
        "sliding_attention" if window is not None and i >= _field(hf, family, "max_window_layers")
        else "full_attention" for i in range(n_layers)]
    kinds = set(layer_types)
    if len(layer_types) != n_layers or not kinds <= {"full_attention", "sliding_attention"}:
        raise HFCheckpointError(f"{CONFIG_FILE} layer_types must list 'full_attention' or "
                                f"'sliding_attention' for each of the {n_layers} layers, got {layer_types}")
    if kinds == {"full_attention"}:
        return None
    if len(kinds) > 1:
        raise HFCheckpointError(
            f"{CONFIG_FILE} mixes sliding-window and full-attention layers (use_sliding_window, "
            f"max_window_layers={hf.get('max_window_layers')}, layer_types); jaxlab applies one "
            "window to every layer")
    if window is None:
        raise HFCheckpointError(f"{CONFIG_FILE} layer_types asks for sliding attention but "
                                "use_sliding_window is false or sliding_window is null")
    return window


def config_from_hf(hf: dict, *, dtype: str = "float32") -> transformer.Config:
    """The :class:`transformer.Config` of a config.json dict (params and compute in ``dtype``).

    Raises HFCheckpointError naming the field when the model is not one jaxlab computes exactly.
    """
    if dtype not in DTYPES:
        raise HFCheckpointError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    family = family_of(hf)
    arch = family.architecture
    if family.qkv_bias == "flag" and _field(hf, family, "attention_bias"):
        raise HFCheckpointError(
            f"{CONFIG_FILE} sets attention_bias=true: {arch} then biases q, k, v and o_proj, and "
            "jaxlab's attention block has no output-projection bias")
    act = _field(hf, family, "hidden_act")
    if act not in _HIDDEN_ACT_TO_MLP:
        raise HFCheckpointError(f"{CONFIG_FILE} hidden_act={act!r} is not supported; jaxlab "
                                f"implements {', '.join(_HIDDEN_ACT_TO_MLP)}")
    d_model = _field(hf, family, "hidden_size")
    n_heads = _field(hf, family, "num_attention_heads")
    n_layers = _field(hf, family, "num_hidden_layers")
    base, scaling = _rope_from_hf(hf, family)
    fields = dict(
        vocab_size=_field(hf, family, "vocab_size"), d_model=d_model, n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=hf.get("num_key_value_heads") or family.default("num_key_value_heads") or n_heads,
        head_dim=hf.get("head_dim") or family.default("head_dim") or d_model // n_heads,
        mlp_dim=_field(hf, family, "intermediate_size"), mlp_type=_HIDDEN_ACT_TO_MLP[act],
        norm_type="rms", norm_eps=float(_field(hf, family, "rms_norm_eps")), qk_norm=family.qk_norm,
        rope_base=base, rope_fraction=1.0, rope_scaling=scaling, causal=True,
        window=_window_from_hf(hf, family, n_layers),
        tie_embeddings=bool(_field(hf, family, "tie_word_embeddings")),
        attention_bias=family.qkv_bias == "always",
        mlp_bias=bool(family.has_mlp_bias and _field(hf, family, "mlp_bias")),
        param_dtype=dtype, compute_dtype=dtype)
    try:
        return transformer.Config(**fields)
    except (TypeError, ValueError) as e:
        raise HFCheckpointError(f"{CONFIG_FILE} describes a model jaxlab cannot build: {e}") from None


def _family_for_save(cfg: transformer.Config, architecture: str | None) -> Family:
    """The family ``cfg`` is written as: ``architecture``, else the one its features imply."""
    if architecture is None:
        architecture = ("Qwen3ForCausalLM" if cfg.qk_norm else "Qwen2ForCausalLM" if cfg.attention_bias
                        else "MistralForCausalLM" if cfg.window is not None else "LlamaForCausalLM")
    if architecture not in FAMILIES:
        raise HFCheckpointError(f"unsupported architecture {architecture!r}; jaxlab writes "
                                f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    family = FAMILIES[architecture]
    has = lambda flag: "has" if flag else "has no"  # noqa: E731
    problems = []
    if cfg.norm_type != "rms":
        problems.append(f"norm_type={cfg.norm_type!r} ({architecture} uses RMSNorm)")
    if not cfg.causal:
        problems.append("causal=False (a causal LM)")
    if cfg.rope_fraction != 1.0:
        problems.append(f"rope_fraction={cfg.rope_fraction} ({architecture} rotates every head dim)")
    if cfg.qk_norm != family.qk_norm:
        problems.append(f"qk_norm={cfg.qk_norm} ({architecture} {has(family.qk_norm)} QK-norm)")
    if cfg.attention_bias != (family.qkv_bias == "always"):
        problems.append(f"attention_bias={cfg.attention_bias} ({architecture} "
                        f"{has(family.qkv_bias == 'always')} q/k/v biases without an o_proj bias)")
    if cfg.mlp_bias and not family.has_mlp_bias:
        problems.append(f"mlp_bias=True ({architecture} has no MLP biases)")
    if cfg.window is not None and family.window == "none":
        problems.append(f"window={cfg.window} ({architecture} has no sliding window)")
    if family.model_type == "llama" and cfg.d_model % cfg.n_heads:
        problems.append(f"d_model={cfg.d_model} not a multiple of n_heads={cfg.n_heads} "
                        "(LlamaConfig requires it)")
    if problems:
        raise HFCheckpointError(f"cannot write this model as {architecture}: " + "; ".join(problems))
    return family


def config_to_hf(cfg: transformer.Config, *, architecture: str | None = None,
                 dtype: str | None = None, extra_config: dict | None = None) -> dict:
    """The config.json dict of ``cfg`` as ``architecture`` (default: implied by ``cfg``).

    RoPE is written both as transformers 5's ``rope_parameters`` and as the older
    ``rope_theta`` / ``rope_scaling`` pair, so either generation of transformers reads it.
    ``extra_config``'s :data:`PASSTHROUGH_FIELDS` are copied; its other fields are ignored.
    """
    family = _family_for_save(cfg, architecture)
    dtype = cfg.param_dtype if dtype is None else dtype
    if dtype not in DTYPES:
        raise HFCheckpointError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if cfg.mlp_type not in _MLP_TO_HIDDEN_ACT:
        raise HFCheckpointError(f"mlp_type={cfg.mlp_type!r} has no Hugging Face hidden_act")
    hf = {k: extra_config[k] for k in PASSTHROUGH_FIELDS if extra_config and k in extra_config}
    scaling = cfg.rope_scaling
    rope = {"rope_type": "default" if scaling.kind == "none" else scaling.kind,
            "rope_theta": cfg.rope_base}
    if scaling.kind != "none":
        rope["factor"] = scaling.factor
    if scaling.kind == "llama3":
        rope.update(low_freq_factor=scaling.low_freq_factor, high_freq_factor=scaling.high_freq_factor,
                    original_max_position_embeddings=scaling.original_max_len)
    hf.update({
        "architectures": [family.architecture], "model_type": family.model_type,
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "intermediate_size": cfg.mlp_dim, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim, "hidden_act": _MLP_TO_HIDDEN_ACT[cfg.mlp_type],
        "rms_norm_eps": cfg.norm_eps, "tie_word_embeddings": cfg.tie_embeddings,
        "rope_parameters": rope, "rope_theta": cfg.rope_base,
        "dtype": dtype, "torch_dtype": dtype,
    })
    if scaling.kind != "none":
        hf["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    if family.qkv_bias == "flag":
        hf["attention_bias"] = False
    if family.has_mlp_bias:
        hf["mlp_bias"] = cfg.mlp_bias
    if family.window == "all":
        hf["sliding_window"] = cfg.window
    elif family.window == "per_layer":
        sliding = cfg.window is not None
        hf.update(use_sliding_window=sliding, sliding_window=cfg.window,
                  max_window_layers=0 if sliding else cfg.n_layers,
                  layer_types=[("sliding_attention" if sliding else "full_attention")] * cfg.n_layers)
    return hf


# ----------------------------------------------------------------------------- weights

def _import_safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ImportError("reading and writing Hugging Face checkpoints needs the 'safetensors' "
                          "package: pip install safetensors") from None
    return safetensors


def _refuse_pickles(folder: Path) -> None:
    pickles = sorted(p.name for p in folder.iterdir()
                     if p.suffix in PICKLE_SUFFIXES or p.name.endswith((".bin.index.json",
                                                                       ".pt.index.json")))
    if pickles:
        raise HFCheckpointError(
            f"{folder} holds pickled weights ({', '.join(pickles)}) and no {WEIGHTS_FILE}; jaxlab "
            "reads safetensors only and never unpickles. Convert them once, where you trust the "
            "file: `AutoModelForCausalLM.from_pretrained(src).save_pretrained(dst, "
            "safe_serialization=True)` with transformers")


def _weight_files(folder: Path) -> dict[str, Path]:
    """{tensor name: safetensors file} from model.safetensors or the sharded index."""
    safetensors = _import_safetensors()
    single, index = folder / WEIGHTS_FILE, folder / INDEX_FILE
    if single.is_file():
        with safetensors.safe_open(str(single), framework="numpy") as f:
            return {name: single for name in f.keys()}
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise HFCheckpointError(f"{index} is not a safetensors index with a weight_map: {e!r}") from None
        files = {}
        for name, file in weight_map.items():
            if not isinstance(file, str) or Path(file).name != file or not file.endswith(".safetensors"):
                raise HFCheckpointError(f"{index} maps {name!r} to {file!r}; expected a "
                                        ".safetensors file name in the same folder")
            if not (folder / file).is_file():
                raise HFCheckpointError(f"{index} lists shard {file!r} (for {name!r}), which is missing")
            files[name] = folder / file
        return files
    _refuse_pickles(folder)
    others = sorted(p.name for p in folder.glob("*.safetensors"))
    hint = f" (found {', '.join(others)}: not the transformers layout)" if others else ""
    raise HFCheckpointError(f"{folder} has neither {WEIGHTS_FILE} nor {INDEX_FILE}{hint}")


_SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def _dtype_name(stored: str, name: str) -> str:
    """jaxlab's name of a safetensors dtype code (F32, BF16, F16)."""
    if stored not in _SAFETENSORS_DTYPES:
        raise HFCheckpointError(f"tensor {name} is stored as {stored}; pass dtype= one of "
                                f"{sorted(DTYPES)} to cast it")
    return _SAFETENSORS_DTYPES[stored]


def _shape_context(cfg: transformer.Config) -> str:
    return (f"vocab_size={cfg.vocab_size}, hidden_size={cfg.d_model}, intermediate_size={cfg.mlp_dim}, "
            f"num_attention_heads={cfg.n_heads}, num_key_value_heads={cfg.n_kv_heads}, "
            f"head_dim={cfg.head_dim}")


def load(path: str | Path, *, dtype: str | None = None) -> tuple[transformer.Config, dict]:
    """(config, params) of a Hugging Face model folder (module docstring).

    ``dtype`` (float32 | bfloat16 | float16) casts the weights and sets the config's param and
    compute dtypes; None keeps the checkpoint's dtype. Raises HFCheckpointError for a missing
    config.json, an unsupported architecture or config field, pickled weights, missing or
    unexpected tensors and tensors whose shapes disagree with config.json (each named).
    """
    folder = Path(path)
    hf = read_config(folder)
    family = family_of(hf)  # an unsupported architecture is reported before anything is read
    files = _weight_files(folder)
    safetensors = _import_safetensors()
    with ExitStack() as stack:
        handles = {f: stack.enter_context(safetensors.safe_open(str(f), framework="numpy"))
                   for f in sorted(set(files.values()))}
        if dtype is None:
            embed_name = _TENSORS["embed/embedding"][0]
            _check_names(folder, family, [embed_name], files, ignorable=set(files))
            dtype = _dtype_name(handles[files[embed_name]].get_slice(embed_name).get_dtype(),
                                embed_name)
        cfg = config_from_hf(hf, dtype=dtype)
        expected = _expected_params(cfg)
        wanted = {p: _hf_names(p, cfg.n_layers) for p in expected}
        ignorable = {n for n in files if n.endswith(_IGNORED_SUFFIXES)}
        if cfg.tie_embeddings:
            ignorable.add(_TENSORS["unembed/kernel"][0])  # some tied checkpoints store the copy
        _check_names(folder, family, [n for names in wanted.values() for n in names], files, ignorable)
        flat = {}
        for param_path, struct in expected.items():
            stacked = param_path.startswith("layers/")
            shape = struct.shape[1:] if stacked else struct.shape
            arrays = [_param_from_hf(handles[files[name]].get_tensor(name), name,
                                     _TENSORS[param_path][1], shape, cfg)
                      for name in wanted[param_path]]
            flat[param_path] = jnp.asarray(np.stack(arrays) if stacked else arrays[0])
    return cfg, traverse_util.unflatten_dict(flat, sep="/")


def _list(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _check_names(folder: Path, family: Family, wanted: list[str], files: dict[str, Path],
                 ignorable: set[str]) -> None:
    """Every wanted tensor is in ``files``, and every tensor of ``files`` is wanted or ignorable."""
    missing = [n for n in wanted if n not in files]
    if missing:
        raise HFCheckpointError(f"{folder} lacks {len(missing)} tensor(s) that its "
                                f"{family.architecture} config needs: {_list(missing)}")
    unexpected = sorted(set(files) - set(wanted) - ignorable)
    if unexpected:
        raise HFCheckpointError(f"{folder} holds tensor(s) its config does not explain: "
                                f"{_list(unexpected)}")


def _param_from_hf(w: np.ndarray, name: str, layout: _Layout, shape: tuple[int, ...],
                   cfg: transformer.Config) -> np.ndarray:
    """Hugging Face tensor ``name`` as a jaxlab param of ``shape`` in ``cfg.param_dtype``."""
    if tuple(w.shape) != layout.hf_shape(shape):
        raise HFCheckpointError(f"tensor {name} has shape {tuple(w.shape)}, but {CONFIG_FILE} "
                                f"({_shape_context(cfg)}) implies {layout.hf_shape(shape)}")
    return layout.from_hf(w, shape).astype(DTYPES[cfg.param_dtype], copy=False)


def flat_params(cfg: transformer.Config, params: dict) -> dict[str, Any]:
    """``params`` flattened by path, checked against the tree ``transformer.init(cfg)`` builds."""
    flat = traverse_util.flatten_dict(params, sep="/")
    expected = _expected_params(cfg)
    extra = sorted(set(flat) - set(expected))
    if extra:
        raise HFCheckpointError(f"params hold {', '.join(extra)}, which transformer.init(cfg) does "
                                "not build (merge adapters into the kernels first)")
    missing = sorted(set(expected) - set(flat))
    if missing:
        raise HFCheckpointError(f"params lack {', '.join(missing)}, which the config implies")
    for path, struct in expected.items():
        if tuple(flat[path].shape) != struct.shape:
            raise HFCheckpointError(f"param {path} has shape {tuple(flat[path].shape)}; the config "
                                    f"implies {struct.shape}")
    return {path: flat[path] for path in expected}


def hf_tensors(cfg: transformer.Config, params: dict, dtype: str | None = None) -> dict[str, np.ndarray]:
    """{Hugging Face tensor name: contiguous array} of ``params``, in ``dtype`` (default the
    config's ``param_dtype``), embeddings first, then layer by layer, then the head."""
    dtype = cfg.param_dtype if dtype is None else dtype
    if dtype not in DTYPES:
        raise HFCheckpointError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    flat = flat_params(cfg, params)
    host = {path: np.asarray(jax.device_get(x)).astype(DTYPES[dtype], copy=False)
            for path, x in flat.items()}
    tensors = {}

    def put(path, name, x):
        tensors[name] = np.ascontiguousarray(_TENSORS[path][1].to_hf(x))

    put("embed/embedding", _TENSORS["embed/embedding"][0], host["embed/embedding"])
    layer_paths = sorted((p for p in host if p.startswith("layers/")), key=lambda p: _TENSORS[p][0])
    for i in range(cfg.n_layers):
        for path in layer_paths:
            put(path, _hf_names(path, cfg.n_layers)[i], host[path][i])
    for path in ("final_norm/scale", "unembed/kernel"):
        if path in host:
            put(path, _TENSORS[path][0], host[path])
    return tensors


def _shards(tensors: dict[str, np.ndarray], max_shard_bytes: int) -> list[dict[str, np.ndarray]]:
    """Consecutive groups of at most ``max_shard_bytes`` (a larger tensor is a shard alone)."""
    shards, current, size = [], {}, 0
    for name, x in tensors.items():
        if current and size + x.nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = x
        size += x.nbytes
    shards.append(current)
    return shards


def save(path: str | Path, cfg: transformer.Config, params: dict, *, architecture: str | None = None,
         dtype: str | None = None, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
         extra_config: dict | None = None) -> Path:
    """Writes a Hugging Face model folder that ``transformers`` loads; returns its path.

    architecture: one of :data:`SUPPORTED_ARCHITECTURES`; None picks the one ``cfg`` implies
      (QK-norm: Qwen3, q/k/v biases: Qwen2, a window: Mistral, else Llama).
    dtype: the stored dtype (default ``cfg.param_dtype``).
    max_shard_bytes: above this many bytes of tensors the weights are split into
      ``model-0000i-of-0000n.safetensors`` shards with ``model.safetensors.index.json``.
    extra_config: config.json fields jaxlab does not model (:data:`PASSTHROUGH_FIELDS`).

    The folder may exist but must not already hold a checkpoint (config.json or weights).
    """
    if not isinstance(max_shard_bytes, int) or max_shard_bytes < 1:
        raise HFCheckpointError(f"max_shard_bytes must be an int >= 1, got {max_shard_bytes!r}")
    hf = config_to_hf(cfg, architecture=architecture, dtype=dtype, extra_config=extra_config)
    tensors = hf_tensors(cfg, params, hf["dtype"])
    folder = Path(path)
    if folder.exists():
        taken = sorted(p.name for p in folder.iterdir() if p.name == CONFIG_FILE
                       or p.suffix == ".safetensors" or p.name == INDEX_FILE
                       or p.suffix in PICKLE_SUFFIXES)
        if taken:
            raise HFCheckpointError(f"{folder} already holds a checkpoint ({', '.join(taken)}); "
                                    "choose a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    safetensors = _import_safetensors()
    shards = _shards(tensors, max_shard_bytes)
    names = ([WEIGHTS_FILE] if len(shards) == 1 else
             [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    for name, shard in zip(names, shards, strict=True):
        safetensors.numpy.save_file(shard, str(folder / name), metadata={"format": "pt"})
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(x.nbytes for x in tensors.values())},
                 "weight_map": {t: name for name, shard in zip(names, shards, strict=True) for t in shard}}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    # config.json last: a folder interrupted mid-write is not mistaken for a checkpoint
    (folder / CONFIG_FILE).write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n")
    return folder
