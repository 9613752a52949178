"""Hugging Face ``MambaForCausalLM`` folders (config.json + safetensors) in and out of
:mod:`jaxlab.models.mamba`.

Tensor names (``i`` the layer) and layouts; torch Linear weights are [out, in], jaxlab kernels
[in, out]; the depthwise conv weight [E, 1, K] is jaxlab's [K, E]:

    backbone.embeddings.weight                 embed/embedding        [V, D]
    backbone.layers.{i}.norm.weight            layers/norm/scale      [D]
    backbone.layers.{i}.mixer.in_proj.weight   layers/in_proj/kernel  [D, 2E]   (transposed)
    backbone.layers.{i}.mixer.conv1d.weight    layers/conv/kernel     [K, E]
    backbone.layers.{i}.mixer.conv1d.bias      layers/conv/bias       [E]
    backbone.layers.{i}.mixer.x_proj.weight    layers/x_proj/kernel   [E, R + 2N] (transposed)
    backbone.layers.{i}.mixer.dt_proj.weight   layers/dt_proj/kernel  [R, E]    (transposed)
    backbone.layers.{i}.mixer.dt_proj.bias     layers/dt_proj/bias    [E]
    backbone.layers.{i}.mixer.A_log            layers/A_log           [E, N]
    backbone.layers.{i}.mixer.D                layers/D               [E]
    backbone.layers.{i}.mixer.out_proj.weight  layers/out_proj/kernel [E, D]    (transposed)
    backbone.norm_f.weight                     final_norm/scale       [D]
    lm_head.weight                             unembed/kernel         [D, V]    (untied only)

Configs jaxlab cannot express (biases on the projections, another activation) are refused with
the field's name.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxlab.models import mamba

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_LAYER = "backbone.layers.{}.mixer."
# jaxlab path under layers/ -> (HF name after the layer prefix, layout)
_LAYER_TENSORS = {
    "norm/scale": ("backbone.layers.{}.norm.weight", "same"),
    "in_proj/kernel": (_LAYER + "in_proj.weight", "T"),
    "conv/kernel": (_LAYER + "conv1d.weight", "conv"),
    "conv/bias": (_LAYER + "conv1d.bias", "same"),
    "x_proj/kernel": (_LAYER + "x_proj.weight", "T"),
    "dt_proj/kernel": (_LAYER + "dt_proj.weight", "T"),
    "dt_proj/bias": (_LAYER + "dt_proj.bias", "same"),
    "A_log": (_LAYER + "A_log", "same"),
    "D": (_LAYER + "D", "same"),
    "out_proj/kernel": (_LAYER + "out_proj.weight", "T"),
}


class HFMambaError(ValueError):
    """A Mamba folder jaxlab cannot read, with the field or tensor at fault."""


def config_from_hf(hf: dict, *, dtype: str = "float32") -> mamba.Config:
    """The :class:`jaxlab.models.mamba.Config` of a Mamba config.json dict."""
    if hf.get("model_type") != "mamba":
        raise HFMambaError(f"model_type {hf.get('model_type')!r} is not 'mamba'")
    for key, allowed in (("use_bias", False), ("hidden_act", "silu")):
        if hf.get(key, allowed) != allowed:
            raise HFMambaError(f"config.json: {key}={hf[key]!r} cannot be expressed (jaxlab's Mamba has {allowed!r})")
    d = int(hf["hidden_size"])
    expand = int(hf.get("expand", 2))
    if "intermediate_size" in hf and int(hf["intermediate_size"]) != expand * d:
        raise HFMambaError(f"config.json: intermediate_size={hf['intermediate_size']} is not expand * hidden_size")
    rank = hf.get("time_step_rank", "auto")
    rank = math.ceil(d / 16) if rank == "auto" else int(rank)
    return mamba.Config(vocab_size=int(hf["vocab_size"]), d_model=d, n_layers=int(hf["num_hidden_layers"]),
                        d_state=int(hf.get("state_size", 16)), expand=expand, d_conv=int(hf.get("conv_kernel", 4)),
                        dt_rank=rank, norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
                        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
                        conv_bias=bool(hf.get("use_conv_bias", True)), param_dtype=dtype, compute_dtype=dtype)


def config_to_hf(cfg: mamba.Config) -> dict:
    if not cfg.selective:
        raise HFMambaError("selective=False (the time-invariant ablation) has no MambaForCausalLM form")
    return {"architectures": ["MambaForCausalLM"], "model_type": "mamba", "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers, "state_size": cfg.d_state,
            "expand": cfg.expand, "intermediate_size": cfg.d_inner, "conv_kernel": cfg.d_conv,
            "time_step_rank": cfg.rank, "layer_norm_epsilon": cfg.norm_eps,
            "tie_word_embeddings": cfg.tie_embeddings, "use_bias": False, "use_conv_bias": cfg.conv_bias,
            "hidden_act": "silu", "residual_in_fp32": True}


def _from_hf(w: np.ndarray, layout: str) -> np.ndarray:
    if layout == "T":
        return w.T
    if layout == "conv":
        return w[:, 0, :].T
    return w


def _to_hf(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "T":
        return np.ascontiguousarray(x.T)
    if layout == "conv":
        return np.ascontiguousarray(x.T[:, None, :])
    return x


def load(path: str | Path, *, dtype: str = "float32") -> tuple[mamba.Config, dict]:
    """(cfg, params) of a ``MambaForCausalLM`` folder (safetensors only)."""
    import safetensors.numpy

    folder = Path(path)
    if not (folder / CONFIG_FILE).is_file():
        raise HFMambaError(f"{folder} has no {CONFIG_FILE}")
    cfg = config_from_hf(json.loads((folder / CONFIG_FILE).read_text()), dtype=dtype)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise HFMambaError(f"{folder} has no .safetensors weights")
    tensors = {}
    for f in files:
        tensors.update(safetensors.numpy.load_file(str(f)))

    def take(name):
        if name not in tensors:
            raise HFMambaError(f"{folder}: tensor {name!r} is missing")
        return tensors.pop(name)

    layers = {}
    for path_, (name, layout) in _LAYER_TENSORS.items():
        if path_ == "conv/bias" and not cfg.conv_bias:
            continue
        layers[path_] = np.stack([_from_hf(take(name.format(i)), layout) for i in range(cfg.n_layers)])
    params = {"embed": {"embedding": take("backbone.embeddings.weight")},
              "final_norm": {"scale": take("backbone.norm_f.weight")}, "layers": {}}
    for path_, w in layers.items():
        node = params["layers"]
        *parents, leaf = path_.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = w
    if cfg.tie_embeddings:
        tensors.pop("lm_head.weight", None)  # some saves keep the tied copy
    else:
        params["unembed"] = {"kernel": take("lm_head.weight").T}
    if tensors:
        raise HFMambaError(f"{folder}: tensors jaxlab does not read: {sorted(tensors)[:8]}")
    import jax

    shapes = jax.eval_shape(lambda k: mamba.init(cfg, k), jax.random.key(0))
    got = jax.tree.map(lambda x: x.shape, params)
    want = jax.tree.map(lambda s: s.shape, shapes)
    if got != want:
        raise HFMambaError(f"{folder}: tensor shapes do not match config.json")
    return cfg, jax.tree.map(lambda x: jnp.asarray(x, jnp.dtype(dtype)), params)


def save(path: str | Path, cfg: mamba.Config, params: dict) -> Path:
    """Writes a ``MambaForCausalLM`` folder (config.json, model.safetensors, float32)."""
    import safetensors.numpy

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"backbone.embeddings.weight": np.asarray(params["embed"]["embedding"], np.float32),
               "backbone.norm_f.weight": np.asarray(params["final_norm"]["scale"], np.float32)}
    for path_, (name, layout) in _LAYER_TENSORS.items():
        node = params["layers"]
        for p in path_.split("/"):
            node = node.get(p) if isinstance(node, dict) else None
            if node is None:
                break
        if node is None:
            continue
        stacked = np.asarray(node, np.float32)
        for i in range(cfg.n_layers):
            tensors[name.format(i)] = _to_hf(stacked[i], layout)
    if not cfg.tie_embeddings:
        tensors["lm_head.weight"] = np.ascontiguousarray(np.asarray(params["unembed"]["kernel"], np.float32).T)
    (folder / CONFIG_FILE).write_text(json.dumps(config_to_hf(cfg), indent=2) + "\n")
    safetensors.numpy.save_file(tensors, str(folder / WEIGHTS_FILE))
    return folder
