"""``jaxlab convert``: Hugging Face model folders and GGUF files <-> jaxlab checkpoints.

    jaxlab convert hf-to-jaxlab SRC DST [--dtype D]
    jaxlab convert jaxlab-to-hf SRC DST [--architecture A] [--dtype D] [--max-shard-bytes N]
    jaxlab convert gguf-to-jaxlab SRC.gguf DST [--dtype D]
    jaxlab convert jaxlab-to-gguf SRC DST.gguf [--dtype f16|q8_0]
    jaxlab convert merge-adapter --base BASE --adapter RUN --to hf|gguf DST [--dtype D] [--step N]

A jaxlab checkpoint is a folder:

    jaxlab_model.json   {"format": "jaxlab.transformer", "model": the transformer.Config as a dict,
                         "architecture": the Hugging Face architecture it came from, or null,
                         "hf_config": the config.json fields jaxlab does not model (token ids ...)}
    params/             the params pytree, an orbax StandardCheckpointer directory
    tokenizer.json ...  the source folder's tokenizer and generation files, copied unchanged

so that HF -> jaxlab -> HF gives back the same weights (bitwise), architecture, token ids and
tokenizer. ``load_jaxlab`` restores params into the tree ``transformer.init(cfg)`` builds.

From a GGUF file (:mod:`jaxlab.interop.gguf`) the weights are dequantized (to ``--dtype``,
default float32), the architecture is LlamaForCausalLM, ``hf_config`` keeps the token ids and
``llama.context_length`` (as max_position_embeddings), and the rebuilt tokenizer is written as
tokenizer.json + tokenizer_config.json (special tokens, chat template, add_bos_token) +
generation_config.json (every stop id). jaxlab -> GGUF needs that byte-level BPE tokenizer;
GGUF -> jaxlab -> GGUF (f16) gives back the same file when the source was written by jaxlab.

``merge-adapter`` exports an adapter run (a trainer run with ``peft``: its checkpoint holds the
adapter and the base's SHA-256) merged into its base, W = merge(base, adapter), as a Hugging
Face folder or a GGUF file. BASE is anything ``jaxlab.interop.models.load_model`` reads (a
registry name, a .gguf file, a Hugging Face or jaxlab folder), loaded in ``--base-dtype``
(float32, as the trainers hold it); a base whose digest differs from the run's record is refused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxlab import config as config_lib
from jaxlab.interop import gguf, hf
from jaxlab.interop.tokenizer import TOKENIZER_FILES, TokenizerError
from jaxlab.interop.models import ModelError
from jaxlab.models import transformer
from jaxlab.peft.adapters import AdapterError
from jaxlab.train.checkpoint import CheckpointError

MODEL_FILE = "jaxlab_model.json"
PARAMS_DIR = "params"
FORMAT = "jaxlab.transformer"


class ConvertError(ValueError):
    """A jaxlab checkpoint folder that cannot be read or written (named in the message)."""


def _require_empty(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConvertError(f"{folder} already exists and is not an empty folder; choose a new one")


def _copy_tokenizer_files(src: Path, dst: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
            copied.append(name)
    return copied


def save_jaxlab(path: str | Path, cfg: transformer.Config, params: dict, *,
                architecture: str | None = None, hf_config: dict | None = None) -> Path:
    """Writes a jaxlab checkpoint folder (module docstring); ``path`` must be new or empty.

    ``architecture`` and ``hf_config`` (its :data:`hf.PASSTHROUGH_FIELDS` are kept) record
    where the model came from, for a later conversion back to Hugging Face.
    """
    folder = Path(path).absolute()
    _require_empty(folder)
    if architecture is not None and architecture not in hf.FAMILIES:
        raise ConvertError(f"unsupported architecture {architecture!r}; expected one of "
                           f"{', '.join(hf.SUPPORTED_ARCHITECTURES)}")
    hf.flat_params(cfg, params)  # raises unless params is the tree load_jaxlab restores into
    folder.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(folder / PARAMS_DIR, params)
    info = {"format": FORMAT, "model": config_lib.to_dict(cfg), "architecture": architecture,
            "hf_config": {k: hf_config[k] for k in hf.PASSTHROUGH_FIELDS
                          if hf_config and k in hf_config}}
    (folder / MODEL_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return folder


def read_jaxlab_info(path: str | Path) -> dict:
    """The jaxlab_model.json of a jaxlab checkpoint folder."""
    folder = Path(path)
    file = folder / MODEL_FILE
    if not file.is_file():
        hint = (" (it is a Hugging Face model folder: use jaxlab.interop.hf.load)"
                if (folder / hf.CONFIG_FILE).is_file() else "")
        raise ConvertError(f"{folder} has no {MODEL_FILE}: not a jaxlab checkpoint{hint}")
    try:
        info = json.loads(file.read_text())
    except ValueError as e:
        raise ConvertError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or "model" not in info:
        raise ConvertError(f"{file} is not a {FORMAT} description")
    return info


def load_jaxlab(path: str | Path) -> tuple[transformer.Config, dict]:
    """(config, params) of a jaxlab checkpoint folder written by :func:`save_jaxlab`."""
    folder = Path(path).absolute()
    info = read_jaxlab_info(folder)
    try:
        cfg = config_lib.from_dict(transformer.Config, info["model"])
    except (TypeError, ValueError) as e:
        raise ConvertError(f"{folder / MODEL_FILE} holds an invalid model config: {e}") from None
    if not (folder / PARAMS_DIR).is_dir():
        raise ConvertError(f"{folder} has no {PARAMS_DIR}/ directory of params")
    abstract = jax.eval_shape(lambda key: transformer.init(cfg, key), jax.random.key(0))
    with ocp.StandardCheckpointer() as checkpointer:
        params = checkpointer.restore(folder / PARAMS_DIR, abstract)
    return cfg, params


def hf_to_jaxlab(src: str | Path, dst: str | Path, *, dtype: str | None = None) -> Path:
    """Converts a Hugging Face model folder into a jaxlab checkpoint folder."""
    src, dst = Path(src), Path(dst)
    _require_empty(dst)
    cfg, params = hf.load(src, dtype=dtype)
    hf_config = hf.read_config(src)
    out = save_jaxlab(dst, cfg, params, architecture=hf.family_of(hf_config).architecture,
                      hf_config=hf_config)
    _copy_tokenizer_files(src, out)
    return out


def jaxlab_to_hf(src: str | Path, dst: str | Path, *, architecture: str | None = None,
                 dtype: str | None = None,
                 max_shard_bytes: int = hf.DEFAULT_MAX_SHARD_BYTES) -> Path:
    """Converts a jaxlab checkpoint folder into a Hugging Face model folder.

    ``architecture`` defaults to the one the checkpoint came from, else the one its config
    implies.
    """
    src, dst = Path(src), Path(dst)
    _require_empty(dst)
    info = read_jaxlab_info(src)
    cfg, params = load_jaxlab(src)
    out = hf.save(dst, cfg, params, architecture=architecture or info.get("architecture"),
                  dtype=dtype, max_shard_bytes=max_shard_bytes, extra_config=info.get("hf_config"))
    _copy_tokenizer_files(src, out)
    return out


def _write_tokenizer(tokenizer, folder: Path) -> None:
    """tokenizer.json, tokenizer_config.json and generation_config.json of an HFTokenizer."""
    tokenizer.tokenizer.save(str(folder / "tokenizer.json"))
    token = tokenizer.tokenizer.id_to_token
    config = {f"{kind}_token": token(i) for kind, i in
              (("bos", tokenizer.bos_id), ("eos", tokenizer.eos_id), ("pad", tokenizer.pad_id))
              if i is not None}
    config["add_bos_token"] = bool(tokenizer.add_bos)
    if tokenizer.chat_template_source:
        config["chat_template"] = tokenizer.chat_template_source
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = {k: v for k, v in (("bos_token_id", tokenizer.bos_id),
                                    ("eos_token_id", list(tokenizer.eos_ids)),
                                    ("pad_token_id", tokenizer.pad_id)) if v not in (None, [])}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n")


def gguf_to_jaxlab(src: str | Path, dst: str | Path, *, dtype: str = "float32",
                   progress: bool = False) -> Path:
    """Converts a llama GGUF file into a jaxlab checkpoint folder (module docstring)."""
    src, dst = Path(src), Path(dst)
    _require_empty(dst)
    cfg, params, tokenizer = gguf.load(src, dtype=dtype, progress=progress)
    meta = gguf.read_metadata(src)
    ids = {"bos_token_id": tokenizer.bos_id, "eos_token_id": list(tokenizer.eos_ids),
           "pad_token_id": tokenizer.pad_id,
           "max_position_embeddings": meta.get(f"{gguf.ARCHITECTURE}.context_length")}
    out = save_jaxlab(dst, cfg, params, architecture="LlamaForCausalLM",
                      hf_config={k: v for k, v in ids.items() if v not in (None, [])})
    _write_tokenizer(tokenizer, out)
    return out


def jaxlab_to_gguf(src: str | Path, dst: str | Path, *, dtype: str = "f16") -> Path:
    """Converts a jaxlab checkpoint folder with a byte-level BPE tokenizer.json into a llama
    GGUF file (``dtype`` f16 or q8_0); ``dst`` must not exist."""
    from jaxlab.interop.models import folder_tokenizer

    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise ConvertError(f"{dst} already exists; choose a new file name")
    info = read_jaxlab_info(src)
    cfg, params = load_jaxlab(src)
    tokenizer = folder_tokenizer(src)
    if not isinstance(tokenizer, hf.HFTokenizer):
        raise ConvertError(f"{src} has no tokenizer.json; a GGUF file needs the model's byte-level "
                           "BPE tokenizer")
    context = (info.get("hf_config") or {}).get("max_position_embeddings") or 2048
    return gguf.save(dst, cfg, params, tokenizer, dtype=dtype, context_length=int(context))


def merge_adapter(base: str | Path, adapter: str | Path, dst: str | Path, *, to: str = "hf",
                  dtype: str | None = None, step: int | None = None, base_dtype: str = "float32") -> Path:
    """Writes ``merge(base, adapter)`` of an adapter run's checkpoint (newest step unless
    ``step``) as a Hugging Face folder (``to="hf"``, ``dtype`` as jaxlab-to-hf) or a llama GGUF
    file (``to="gguf"``, ``dtype`` f16 or q8_0); the base must be the one the run trained on."""
    from jaxlab.interop.models import load_model
    from jaxlab.peft.adapters import merge
    from jaxlab.peft.runs import load_adapter_run

    if to not in ("hf", "gguf"):
        raise ConvertError(f"--to must be hf or gguf, got {to!r}")
    dst = Path(dst)
    if to == "hf":
        _require_empty(dst)
    elif dst.exists():
        raise ConvertError(f"{dst} already exists; choose a new file name")
    cfg, params, tokenizer = load_model(base, dtype=base_dtype)
    spec, trainable, _ = load_adapter_run(adapter, base=params, step=step)
    merged = jax.device_get(merge(params, trainable, spec))
    base_dir = Path(base) if Path(base).is_dir() else None
    if to == "gguf":
        if not isinstance(tokenizer, hf.HFTokenizer):
            raise ConvertError(f"{base} has no byte-level BPE tokenizer; a GGUF file needs one")
        return gguf.save(dst, cfg, merged, tokenizer, dtype=dtype or "f16")
    architecture, extra = None, {}
    if base_dir is not None and (base_dir / MODEL_FILE).is_file():
        info = read_jaxlab_info(base_dir)
        architecture, extra = info.get("architecture"), info.get("hf_config") or {}
    elif base_dir is not None and (base_dir / hf.CONFIG_FILE).is_file():
        extra = hf.read_config(base_dir)
        architecture = hf.family_of(extra).architecture
    elif isinstance(tokenizer, hf.HFTokenizer):
        extra = {k: v for k, v in (("bos_token_id", tokenizer.bos_id), ("eos_token_id", list(tokenizer.eos_ids)),
                                   ("pad_token_id", tokenizer.pad_id)) if v not in (None, [])}
    out = hf.save(dst, cfg, merged, architecture=architecture, dtype=dtype, extra_config=extra)
    if base_dir is None or not _copy_tokenizer_files(base_dir, out):
        if isinstance(tokenizer, hf.HFTokenizer):
            _write_tokenizer(tokenizer, out)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxlab convert",
        description="Convert checkpoints between Hugging Face model folders (safetensors), llama "
                    "GGUF files and jaxlab checkpoints (orbax). Pickled weights (.bin, .pt) are "
                    "refused.")
    sub = parser.add_subparsers(dest="direction", required=True)
    a = sub.add_parser("hf-to-jaxlab", help="Hugging Face folder -> jaxlab checkpoint")
    a.add_argument("src", help="Hugging Face model folder (config.json + model.safetensors)")
    a.add_argument("dst", help="new folder for the jaxlab checkpoint")
    a.add_argument("--dtype", choices=sorted(hf.DTYPES), default=None,
                   help="cast the weights (default: keep the checkpoint's dtype)")
    b = sub.add_parser("jaxlab-to-hf", help="jaxlab checkpoint -> Hugging Face folder")
    b.add_argument("src", help="jaxlab checkpoint folder (jaxlab_model.json + params/)")
    b.add_argument("dst", help="new folder for the Hugging Face model")
    b.add_argument("--architecture", choices=hf.SUPPORTED_ARCHITECTURES, default=None,
                   help="default: the architecture the checkpoint came from, else the one its "
                        "config implies")
    b.add_argument("--dtype", choices=sorted(hf.DTYPES), default=None,
                   help="stored dtype (default: the config's param_dtype)")
    b.add_argument("--max-shard-bytes", type=int, default=hf.DEFAULT_MAX_SHARD_BYTES,
                   help="split the weights into shards of at most this many bytes "
                        f"(default {hf.DEFAULT_MAX_SHARD_BYTES})")
    c = sub.add_parser("gguf-to-jaxlab", help="llama GGUF file -> jaxlab checkpoint")
    c.add_argument("src", help="a .gguf file (general.architecture llama)")
    c.add_argument("dst", help="new folder for the jaxlab checkpoint")
    c.add_argument("--dtype", choices=sorted(hf.DTYPES), default="float32",
                   help="dtype of the dequantized weights (default float32)")
    d = sub.add_parser("jaxlab-to-gguf", help="jaxlab checkpoint -> llama GGUF file")
    d.add_argument("src", help="jaxlab checkpoint folder with a byte-level BPE tokenizer.json")
    d.add_argument("dst", help="new .gguf file")
    d.add_argument("--dtype", choices=gguf.SAVE_DTYPES, default="f16",
                   help="f16, or q8_0 (8-bit blocks of 32; matrices whose rows are not a multiple "
                        "of 32 stay f16); norms are always f32 (default f16)")
    e = sub.add_parser("merge-adapter", help="adapter run + its base -> merged Hugging Face folder or GGUF")
    e.add_argument("--base", required=True, help="the base the run trained on: a registry name, .gguf "
                                                 "file, Hugging Face or jaxlab folder")
    e.add_argument("--adapter", required=True, help="the adapter run's workdir (or its checkpoints/)")
    e.add_argument("--to", choices=("hf", "gguf"), required=True)
    e.add_argument("dst", help="new folder (hf) or .gguf file (gguf)")
    e.add_argument("--dtype", default=None, help="stored dtype: hf as jaxlab-to-hf, gguf f16 (default) or q8_0")
    e.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    e.add_argument("--base-dtype", choices=sorted(hf.DTYPES), default="float32",
                   help="dtype the base is read in, as the run held it (default float32)")
    return parser


def convert_main(argv: list[str]) -> int:
    """Entry point of ``jaxlab convert``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.direction == "hf-to-jaxlab":
            out = hf_to_jaxlab(args.src, args.dst, dtype=args.dtype)
        elif args.direction == "jaxlab-to-hf":
            out = jaxlab_to_hf(args.src, args.dst, architecture=args.architecture, dtype=args.dtype,
                               max_shard_bytes=args.max_shard_bytes)
        elif args.direction == "gguf-to-jaxlab":
            out = gguf_to_jaxlab(args.src, args.dst, dtype=args.dtype, progress=True)
        elif args.direction == "merge-adapter":
            out = merge_adapter(args.base, args.adapter, args.dst, to=args.to, dtype=args.dtype,
                                step=args.step, base_dtype=args.base_dtype)
        else:
            out = jaxlab_to_gguf(args.src, args.dst, dtype=args.dtype)
    except (hf.HFCheckpointError, ConvertError, TokenizerError, gguf.GGUFError, AdapterError,
            CheckpointError, ModelError) as e:
        print(f"jaxlab convert: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0
