"""``jaxlab convert merge-adapter``: an adapter run's checkpoint merged into its base and written
as a Hugging Face folder and a GGUF file gives, reloaded by jaxlab, the logits of
merge(base, adapter) applied in jaxlab; another base is refused by its SHA-256."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'gguf>=0.17')")
pytest.importorskip("tokenizers", reason="the tokenizers package is not installed")

from jaxlab.cli import main as cli_main  # noqa: E402
from jaxlab.interop import convert, hf  # noqa: E402
from jaxlab.interop import gguf as jgguf  # noqa: E402
from jaxlab.models import transformer  # noqa: E402
from jaxlab.peft import AdapterSpec, merge  # noqa: E402
from jaxlab.peft.runs import adapter_run  # noqa: E402
from jaxlab.train import state as state_lib  # noqa: E402
from jaxlab.train.checkpoint import Checkpointer  # noqa: E402
from test_gguf import CFG, TOKENIZER  # noqa: E402
from tree_checks import random_params  # noqa: E402

SPEC = AdapterSpec(method="lora", targets="all", rank=2, alpha=4.0)


def _adapter_checkpoint(workdir, base, base_path):
    """An adapter run's checkpoint as ``fit`` writes it (state of the adapter leaves, the meta
    with the base's digest), with a non-zero B so that the merge changes the model."""
    run = adapter_run(SPEC, base, jax.random.key(1), base_path=base_path)
    trainable = jax.tree_util.tree_map_with_path(
        lambda p, x: 0.1 * jax.random.normal(jax.random.key(len(str(p))), x.shape) if "lora_b" in str(p) else x,
        run.init)
    state = state_lib.create(trainable, optax.adamw(1e-3), 0)
    ckpt = Checkpointer(workdir / "checkpoints")
    ckpt.save(3, state, {"cursor": 0}, meta=run.meta())
    ckpt.close()
    return trainable


_apply = jax.jit(transformer.apply, static_argnums=2)


def _logits(params):
    tokens = jnp.asarray(TOKENIZER.encode("hello world, x = 12345")[None], jnp.int32)
    return np.asarray(_apply(params, tokens, CFG))


@pytest.mark.slow
def test_merged_export_to_hf_and_gguf_gives_the_merged_logits(tmp_path, capsys):
    base_dir = hf.save(tmp_path / "base", CFG, random_params(CFG, seed=3))
    convert._write_tokenizer(TOKENIZER, base_dir)
    _, base = hf.load(base_dir, dtype="float32")
    trainable = _adapter_checkpoint(tmp_path / "run", base, str(base_dir))
    expected = _logits(merge(base, trainable, SPEC))
    assert np.abs(expected - _logits(base)).max() > 1e-2  # the adapter changes the model

    common = ["convert", "merge-adapter", "--base", str(base_dir), "--adapter", str(tmp_path / "run")]
    assert cli_main(common + ["--to", "hf", str(tmp_path / "merged")]) == 0
    _, merged_hf = hf.load(tmp_path / "merged", dtype="float32")
    np.testing.assert_array_equal(_logits(merged_hf), expected)
    assert (tmp_path / "merged" / "tokenizer.json").is_file()

    assert cli_main(common + ["--to", "gguf", str(tmp_path / "merged.gguf")]) == 0
    _, merged_gguf, _ = jgguf.load(tmp_path / "merged.gguf")
    # GGUF stores the matrices in float16 (norms in float32): the merged params so rounded.
    rounded = jax.tree_util.tree_map_with_path(
        lambda p, x: x if "norm" in jax.tree_util.keystr(p) else x.astype(jnp.float16).astype(jnp.float32),
        merge(base, trainable, SPEC))
    np.testing.assert_array_equal(_logits(merged_gguf), _logits(rounded))

    # Another base (a GGUF file of other weights) is refused, naming the digest.
    other = jgguf.save(tmp_path / "other.gguf", CFG, random_params(CFG, seed=4), TOKENIZER)
    assert cli_main(["convert", "merge-adapter", "--base", str(other), "--adapter", str(tmp_path / "run"),
                     "--to", "hf", str(tmp_path / "bad")]) == 1
    assert "SHA-256" in capsys.readouterr().err


def test_a_gguf_base_merges_into_a_hf_folder(tmp_path):
    src = jgguf.save(tmp_path / "base.gguf", CFG, random_params(CFG, seed=5), TOKENIZER)
    _, base, _ = jgguf.load(src)
    trainable = _adapter_checkpoint(tmp_path / "run", base, str(src))
    out = convert.merge_adapter(src, tmp_path / "run", tmp_path / "merged", to="hf")
    _, merged = hf.load(out, dtype="float32")
    np.testing.assert_array_equal(_logits(merged), _logits(merge(base, trainable, SPEC)))
    assert hf.read_config(out)["bos_token_id"] == TOKENIZER.bos_id
    with pytest.raises(convert.ConvertError, match="not an empty folder"):
        convert.merge_adapter(src, tmp_path / "run", out, to="hf")
