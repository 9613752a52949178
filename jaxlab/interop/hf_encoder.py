"""Hugging Face ModernBERT checkpoints in and out of :mod:`jaxlab.models.encoder` (safetensors only).

Architectures: ``ModernBertForMaskedLM`` (params with an ``mlm`` head),
``ModernBertForTokenClassification`` and ``ModernBertForSequenceClassification`` (params with a
``classifier`` head). A torch ``nn.Linear`` stores W as [out, in]; a jaxlab kernel is [in, out]:

    Hugging Face tensor                          shape        jaxlab param                    shape
    model.embeddings.tok_embeddings.weight       [V, D]       embed/embedding                 [V, D]
    model.embeddings.norm.{weight,bias}          [D]          embed_norm/{scale,bias}         [D]
    model.layers.{l}.attn_norm.{weight,bias}     [D]          layers/attn_norm/... [l]        [L, D]   (l > 0)
    model.layers.{l}.attn.Wqkv.weight            [3 H Dh, D]  layers/attn/{q,k,v}/kernel [l]  [L, D, H, Dh]
    model.layers.{l}.attn.Wo.weight              [D, H Dh]    layers/attn/o/kernel [l]        [L, H, Dh, D]
    model.layers.{l}.mlp_norm.{weight,bias}      [D]          layers/mlp_norm/... [l]         [L, D]
    model.layers.{l}.mlp.Wi.weight               [2 F, D]     layers/mlp/{gate,up}/kernel [l] [L, D, F] (gate: rows :F)
    model.layers.{l}.mlp.Wo.weight               [D, F]       layers/mlp/down/kernel [l]      [L, F, D]
    model.final_norm.{weight,bias}               [D]          final_norm/{scale,bias}         [D]
    head.dense.{weight,bias}                     [D, D]       {mlm,classifier}/dense/...      [D, D]
    head.norm.{weight,bias}                      [D]          {mlm,classifier}/norm/...       [D]
    decoder.bias  (decoder.weight is tied)       [V]          mlm/bias                        [V]
    classifier.{weight,bias}                     [N, D]       classifier/out/{kernel,bias}    [D, N]

Wqkv's rows are (q, k, v) x heads x head dims; Wi's rows are the activated half then the
linear half (``act(input) * gate`` in transformers' naming). Layer 0 has no ``attn_norm``
(its jaxlab slice is ones and unused). Both sides rotate q, k by "rotate half" RoPE.

config.json fields: ``layer_types`` (full_attention -> global, sliding_attention -> local) or
the older ``global_attn_every_n_layers``; ``local_attention`` (the total window); the RoPE
bases from ``rope_parameters`` or the older ``global_rope_theta`` / ``local_rope_theta``;
``hidden_activation`` gelu -> geglu_exact, gelu_pytorch_tanh -> geglu, silu -> swiglu;
``classifier_activation``, ``classifier_bias``, ``decoder_bias``, ``classifier_pooling``,
``norm_bias``, ``norm_eps``. Refused, by field: ``attention_bias`` or ``mlp_bias`` true,
untied decoder weights, RoPE types other than default, other activations. :func:`save` writes
both the new and the older field spellings. Fields that do not change the computation
(token ids, ``id2label``, ``max_position_embeddings``...) travel through ``extra_config``; token
ids it does not give are written as null.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.interop.hf import (CONFIG_FILE, DTYPES, INDEX_FILE, PICKLE_SUFFIXES, WEIGHTS_FILE, HFCheckpointError,
                               _import_safetensors, _weight_files, read_config)
from jaxlab.models.encoder import EncoderConfig

ARCHITECTURES = ("ModernBertForMaskedLM", "ModernBertForTokenClassification", "ModernBertForSequenceClassification")
_MLP_FROM_HF = {"gelu": "geglu_exact", "gelu_pytorch_tanh": "geglu", "gelu_new": "geglu", "silu": "swiglu"}
_MLP_TO_HF = {"geglu_exact": "gelu", "geglu": "gelu_pytorch_tanh", "swiglu": "silu"}
_HEAD_FROM_HF = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "silu": "silu",
                 "relu": "relu"}
_HEAD_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "silu": "silu", "relu": "relu"}
_LAYER_FROM_HF = {"full_attention": "global", "sliding_attention": "local"}
_LAYER_TO_HF = {v: k for k, v in _LAYER_FROM_HF.items()}
TOKEN_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id")
_SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def _arch(hf: dict) -> str:
    archs = hf.get("architectures") or []
    if hf.get("model_type") != "modernbert" or len(archs) != 1 or archs[0] not in ARCHITECTURES:
        raise HFCheckpointError(f"config.json has model_type={hf.get('model_type')!r}, architectures={archs!r}; "
                                f"expected model_type 'modernbert' and one of {', '.join(ARCHITECTURES)}")
    return archs[0]


def _choice(hf: dict, field: str, table: dict, default):
    value = hf.get(field, default)
    if value not in table:
        raise HFCheckpointError(f"config.json {field}={value!r} is not supported; expected one of {sorted(table)}")
    return table[value]


def config_from_hf(hf: dict, *, dtype: str = "float32") -> EncoderConfig:
    """The :class:`EncoderConfig` of a ModernBERT config.json dict (module docstring)."""
    _arch(hf)
    for field in ("attention_bias", "mlp_bias"):
        if hf.get(field, False):
            raise HFCheckpointError(f"config.json {field}=true: the encoder has no biases in its linear layers")
    if not hf.get("tie_word_embeddings", True):
        raise HFCheckpointError("config.json tie_word_embeddings=false: the encoder's decoder is tied")
    try:
        D, H, L = int(hf["hidden_size"]), int(hf["num_attention_heads"]), int(hf["num_hidden_layers"])
        V, F = int(hf["vocab_size"]), int(hf["intermediate_size"])
    except KeyError as e:
        raise HFCheckpointError(f"config.json lacks {e.args[0]!r}") from None
    if D % H:
        raise HFCheckpointError(f"config.json hidden_size={D} is not a multiple of num_attention_heads={H}")
    if hf.get("layer_types") is not None:
        types = tuple(_choice({"t": t}, "t", _LAYER_FROM_HF, None) for t in hf["layer_types"])
        if len(types) != L:
            raise HFCheckpointError(f"config.json layer_types has {len(types)} entries for {L} layers")
    else:
        every = int(hf.get("global_attn_every_n_layers", 3))
        types = tuple("global" if l % every == 0 else "local" for l in range(L))
    rope = hf.get("rope_parameters") or {}
    bases = {}
    for name, old, default in (("full_attention", "global_rope_theta", 160_000.0),
                               ("sliding_attention", "local_rope_theta", 10_000.0)):
        params = rope.get(name) or {}
        if params.get("rope_type", "default") != "default":
            raise HFCheckpointError(f"config.json rope_parameters.{name}.rope_type={params['rope_type']!r}: only "
                                    "'default' RoPE is supported")
        bases[name] = float(params.get("rope_theta", hf.get(old, default)))
    return EncoderConfig(
        vocab_size=V, d_model=D, n_layers=L, n_heads=H, head_dim=D // H, mlp_dim=F,
        mlp_type=_choice(hf, "hidden_activation", _MLP_FROM_HF, "gelu"),
        norm_eps=float(hf.get("norm_eps", 1e-5)), norm_bias=bool(hf.get("norm_bias", False)),
        layer_types=types, local_window=int(hf.get("local_attention", 128)),
        global_rope_base=bases["full_attention"], local_rope_base=bases["sliding_attention"],
        head_activation=_choice(hf, "classifier_activation", _HEAD_FROM_HF, "gelu"),
        head_bias=bool(hf.get("classifier_bias", False)), decoder_bias=bool(hf.get("decoder_bias", True)),
        pooling=_choice(hf, "classifier_pooling", {"cls": "cls", "mean": "mean"}, "cls"),
        param_dtype=dtype, compute_dtype=dtype)


def config_to_hf(cfg: EncoderConfig, architecture: str, *, dtype: str, num_labels: int | None = None,
                 extra_config: dict | None = None) -> dict:
    """A ModernBERT config.json dict for ``cfg`` (module docstring)."""
    if cfg.n_heads * cfg.head_dim != cfg.d_model:
        raise HFCheckpointError(f"ModernBERT needs n_heads * head_dim == d_model, got {cfg.n_heads} * "
                                f"{cfg.head_dim} != {cfg.d_model}")
    types = cfg.types
    every = [n for n in range(1, cfg.n_layers + 1)
             if types == tuple("global" if l % n == 0 else "local" for l in range(cfg.n_layers))]
    hf = dict(extra_config or {})
    hf.update({
        "architectures": [architecture], "model_type": "modernbert", "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.mlp_dim, "hidden_activation": _MLP_TO_HF[cfg.mlp_type],
        "norm_eps": cfg.norm_eps, "norm_bias": cfg.norm_bias, "layer_types": [_LAYER_TO_HF[t] for t in types],
        "local_attention": cfg.local_window,
        "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": cfg.global_rope_base},
                            "sliding_attention": {"rope_type": "default", "rope_theta": cfg.local_rope_base}},
        "global_rope_theta": cfg.global_rope_base, "local_rope_theta": cfg.local_rope_base,
        "classifier_activation": _HEAD_TO_HF[cfg.head_activation], "classifier_bias": cfg.head_bias,
        "decoder_bias": cfg.decoder_bias, "classifier_pooling": cfg.pooling, "attention_bias": False,
        "mlp_bias": False, "tie_word_embeddings": True, "dtype": dtype,
    })
    if every:
        hf["global_attn_every_n_layers"] = every[0]
    for field in TOKEN_ID_FIELDS:  # transformers' defaults (50281...) lie outside a small vocabulary
        hf.setdefault(field, None)
    if num_labels is not None:
        hf.setdefault("id2label", {str(i): f"LABEL_{i}" for i in range(num_labels)})
        hf["label2id"] = {v: int(k) for k, v in hf["id2label"].items()}
        if len(hf["id2label"]) != num_labels:
            raise HFCheckpointError(f"extra_config id2label has {len(hf['id2label'])} labels; the classifier "
                                    f"has {num_labels}")
    return hf


# --- tensor layout -------------------------------------------------------------------------

def _norm_names(prefix: str, cfg: EncoderConfig) -> dict[str, str]:
    out = {"scale": f"{prefix}.weight"}
    if cfg.norm_bias:
        out["bias"] = f"{prefix}.bias"
    return out


def _head_tensors(head: dict, cfg: EncoderConfig) -> dict[str, np.ndarray]:
    out = {"head.dense.weight": head["dense"]["kernel"].T, "head.norm.weight": head["norm"]["scale"]}
    if cfg.head_bias:
        out["head.dense.bias"] = head["dense"]["bias"]
    if cfg.norm_bias:
        out["head.norm.bias"] = head["norm"]["bias"]
    return out


def to_hf_tensors(cfg: EncoderConfig, params: dict, architecture: str) -> dict[str, np.ndarray]:
    """{Hugging Face tensor name: array} of ``params`` for ``architecture``."""
    p = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), params)
    D, H, Dh = cfg.d_model, cfg.n_heads, cfg.head_dim
    t = {"model.embeddings.tok_embeddings.weight": p["embed"]["embedding"]}
    for key, name in _norm_names("model.embeddings.norm", cfg).items():
        t[name] = p["embed_norm"][key]
    lp = p["layers"]
    for l in range(cfg.n_layers):
        pre = f"model.layers.{l}"
        if l > 0:
            for key, name in _norm_names(f"{pre}.attn_norm", cfg).items():
                t[name] = lp["attn_norm"][key][l]
        qkv = [lp["attn"][n]["kernel"][l].reshape(D, H * Dh).T for n in ("q", "k", "v")]
        t[f"{pre}.attn.Wqkv.weight"] = np.concatenate(qkv, axis=0)
        t[f"{pre}.attn.Wo.weight"] = lp["attn"]["o"]["kernel"][l].reshape(H * Dh, D).T
        for key, name in _norm_names(f"{pre}.mlp_norm", cfg).items():
            t[name] = lp["mlp_norm"][key][l]
        t[f"{pre}.mlp.Wi.weight"] = np.concatenate([lp["mlp"]["gate"]["kernel"][l].T,
                                                   lp["mlp"]["up"]["kernel"][l].T], axis=0)
        t[f"{pre}.mlp.Wo.weight"] = lp["mlp"]["down"]["kernel"][l].T
    for key, name in _norm_names("model.final_norm", cfg).items():
        t[name] = p["final_norm"][key]
    if architecture == "ModernBertForMaskedLM":
        if "mlm" not in params:
            raise HFCheckpointError("params have no 'mlm' head, which ModernBertForMaskedLM needs")
        t.update(_head_tensors(p["mlm"], cfg))
        if cfg.decoder_bias:
            t["decoder.bias"] = p["mlm"]["bias"]
    else:
        if "classifier" not in params:
            raise HFCheckpointError(f"params have no 'classifier' head, which {architecture} needs")
        t.update(_head_tensors(p["classifier"], cfg))
        t["classifier.weight"] = p["classifier"]["out"]["kernel"].T
        t["classifier.bias"] = p["classifier"]["out"]["bias"]
    return t


def from_hf_tensors(cfg: EncoderConfig, get, names: set[str], architecture: str, where: str) -> dict:
    """Params of ``cfg`` from tensors ``get(name)`` (the inverse of :func:`to_hf_tensors`);
    ``names`` are all the tensors present (a missing or unexplained one is a named error)."""
    D, H, Dh, F, L = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.mlp_dim, cfg.n_layers
    dtype = DTYPES[cfg.param_dtype]
    used: set[str] = set()

    def read(name, shape):
        if name not in names:
            raise HFCheckpointError(f"{where} lacks tensor {name}, which its config.json implies")
        x = np.asarray(get(name))
        if tuple(x.shape) != tuple(shape):
            raise HFCheckpointError(f"tensor {name} has shape {tuple(x.shape)}; config.json (hidden_size={D}, "
                                    f"num_attention_heads={H}, intermediate_size={F}, vocab_size={cfg.vocab_size}) "
                                    f"implies {tuple(shape)}")
        used.add(name)
        return x.astype(dtype, copy=False)

    def norm(prefix):
        return {key: read(name, (D,)) for key, name in _norm_names(prefix, cfg).items()}

    def head():
        out = {"dense": {"kernel": read("head.dense.weight", (D, D)).T}, "norm": norm("head.norm")}
        if cfg.head_bias:
            out["dense"]["bias"] = read("head.dense.bias", (D,))
        return out

    layers = []
    for l in range(L):
        pre = f"model.layers.{l}"
        first = {k: (np.ones if k == "scale" else np.zeros)((D,), dtype) for k in _norm_names("", cfg)}
        qkv = read(f"{pre}.attn.Wqkv.weight", (3 * H * Dh, D)).reshape(3, H, Dh, D)
        wi = read(f"{pre}.mlp.Wi.weight", (2 * F, D))
        layers.append({
            "attn_norm": first if l == 0 else norm(f"{pre}.attn_norm"),
            "attn": {n: {"kernel": qkv[i].transpose(2, 0, 1)} for i, n in enumerate("qkv")}
            | {"o": {"kernel": read(f"{pre}.attn.Wo.weight", (D, H * Dh)).T.reshape(H, Dh, D)}},
            "mlp_norm": norm(f"{pre}.mlp_norm"),
            "mlp": {"gate": {"kernel": wi[:F].T}, "up": {"kernel": wi[F:].T},
                    "down": {"kernel": read(f"{pre}.mlp.Wo.weight", (D, F)).T}},
        })
    params = {"embed": {"embedding": read("model.embeddings.tok_embeddings.weight", (cfg.vocab_size, D))},
              "embed_norm": norm("model.embeddings.norm"),
              "layers": jax.tree.map(lambda *xs: np.stack(xs), *layers),
              "final_norm": norm("model.final_norm")}
    if architecture == "ModernBertForMaskedLM":
        params["mlm"] = head()
        if cfg.decoder_bias:
            params["mlm"]["bias"] = read("decoder.bias", (cfg.vocab_size,))
        if "decoder.weight" in names:  # the tied copy some checkpoints store
            if not np.array_equal(get("decoder.weight"), get("model.embeddings.tok_embeddings.weight")):
                raise HFCheckpointError(f"{where} stores a decoder.weight that differs from the tied embeddings")
            used.add("decoder.weight")
    else:
        params["classifier"] = head()
        if "classifier.weight" not in names:
            raise HFCheckpointError(f"{where} lacks tensor classifier.weight, which {architecture} needs")
        n = np.shape(get("classifier.weight"))[0]
        params["classifier"]["out"] = {"kernel": read("classifier.weight", (n, D)).T,
                                       "bias": read("classifier.bias", (n,))}
    unexplained = sorted(names - used)
    if unexplained:
        raise HFCheckpointError(f"{where} holds tensor(s) its config does not explain: {', '.join(unexplained[:8])}")
    return jax.tree.map(jnp.asarray, params)


def load(path: str | Path, *, dtype: str | None = None) -> tuple[EncoderConfig, dict, str]:
    """(config, params, architecture) of a ModernBERT folder; ``dtype`` casts (None keeps the
    checkpoint's). Raises HFCheckpointError naming the file, field or tensor it cannot use."""
    folder = Path(path)
    hf = read_config(folder)
    architecture = _arch(hf)
    files = _weight_files(folder)
    safetensors = _import_safetensors()
    with ExitStack() as stack:
        handles = {f: stack.enter_context(safetensors.safe_open(str(f), framework="numpy"))
                   for f in sorted(set(files.values()))}
        name = "model.embeddings.tok_embeddings.weight"
        if name not in files:
            raise HFCheckpointError(f"{folder} lacks tensor {name}")
        if dtype is None:
            stored = handles[files[name]].get_slice(name).get_dtype()
            if stored not in _SAFETENSORS_DTYPES:
                raise HFCheckpointError(f"tensor {name} is stored as {stored}; pass dtype= one of {sorted(DTYPES)}")
            dtype = _SAFETENSORS_DTYPES[stored]
        if dtype not in DTYPES:
            raise HFCheckpointError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        cfg = config_from_hf(hf, dtype=dtype)
        params = from_hf_tensors(cfg, lambda n: handles[files[n]].get_tensor(n), set(files), architecture,
                                 str(folder))
    return cfg, params, architecture


def save(path: str | Path, cfg: EncoderConfig, params: dict, *, architecture: str | None = None,
         dtype: str | None = None, extra_config: dict | None = None) -> Path:
    """Writes a ModernBERT folder (config.json, model.safetensors) that ``transformers`` loads.

    architecture: one of :data:`ARCHITECTURES`; None: ModernBertForMaskedLM when ``params`` has
      an ``mlm`` head, else ModernBertForTokenClassification.
    dtype: the stored dtype (default ``cfg.param_dtype``). The folder must not hold a checkpoint.
    """
    architecture = architecture or ("ModernBertForMaskedLM" if "mlm" in params else
                                    "ModernBertForTokenClassification")
    if architecture not in ARCHITECTURES:
        raise HFCheckpointError(f"architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    dtype = dtype or cfg.param_dtype
    if dtype not in DTYPES:
        raise HFCheckpointError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    num_labels = None if architecture == "ModernBertForMaskedLM" else int(
        np.shape(params.get("classifier", {}).get("out", {}).get("bias", np.zeros(0)))[0])
    hf = config_to_hf(cfg, architecture, dtype=dtype, num_labels=num_labels, extra_config=extra_config)
    tensors = {k: np.ascontiguousarray(v.astype(DTYPES[dtype], copy=False))
               for k, v in to_hf_tensors(cfg, params, architecture).items()}
    folder = Path(path)
    if folder.exists():
        taken = sorted(p.name for p in folder.iterdir() if p.name in (CONFIG_FILE, INDEX_FILE)
                       or p.suffix == ".safetensors" or p.suffix in PICKLE_SUFFIXES)
        if taken:
            raise HFCheckpointError(f"{folder} already holds a checkpoint ({', '.join(taken)}); choose a new or "
                                    "empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    _import_safetensors().numpy.save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    (folder / CONFIG_FILE).write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n")
    return folder

