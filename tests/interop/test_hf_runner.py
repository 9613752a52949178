"""``jaxlab run ... --set model.hf_path=FOLDER`` fine-tunes a Hugging Face model from disk: its
architecture and weights are the starting point and its tokenizer.json tokenizes the corpus."""

import json
from pathlib import Path

import jax
import numpy as np
import pydoc_data.topics
import pytest

tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is not installed "
                                 "(pip install tokenizers)")
pytest.importorskip("safetensors", reason="safetensors is not installed")

from jaxlab import cli  # noqa: E402
from jaxlab.interop import hf  # noqa: E402
from jaxlab.models import transformer  # noqa: E402
from jaxlab.train.checkpoint import Checkpointer  # noqa: E402


def _hf_folder(folder, corpus_text):
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([corpus_text[:20_000]], trainer)
    vocab = tok.get_vocab_size()
    cfg = transformer.Config(vocab_size=vocab, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                             head_dim=8, mlp_dim=64, qk_norm=True, tie_embeddings=False)
    params = transformer.init(cfg, jax.random.key(7))
    hf.save(folder, cfg, params)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    return cfg, params


@pytest.mark.slow
def test_runner_starts_from_a_hugging_face_folder(tmp_path):
    topics = pydoc_data.topics.topics
    text = "\n\n".join(topics[k] for k in sorted(topics)[:30])[:80_000]
    (tmp_path / "corpus.txt").write_text(text)
    cfg, params = _hf_folder(tmp_path / "model", text)
    workdir = tmp_path / "run"
    rc = cli.main(["run", str(cli_quickstart()), "--workdir", str(workdir), "--no-progress", "--set",
                   f"model.hf_path={tmp_path / 'model'}", f"data.path={tmp_path / 'corpus.txt'}",
                   f"data.data_dir={tmp_path / 'tfds'}", "train.loop.steps=2", "train.batch_size=8",
                   "train.seq_len=32", "train.eval_batches=1", "optim.lr=0.0", "optim.weight_decay=0.0",
                   "optim.warmup_steps=0", "sample.max_new_tokens=4"])
    assert rc == 0
    resolved = json.loads((workdir / "config.json").read_text())["model"]
    assert (resolved["vocab_size"], resolved["d_model"], resolved["qk_norm"]) == (cfg.vocab_size, 32, True)
    results = json.loads((workdir / "results.json").read_text())
    assert results["val_bpb"] is None  # the targets are BPE ids, not bytes
    assert results["params"] == transformer.count_params(params)
    # With a zero learning rate the trained params are the checkpoint's weights, bit for bit.
    ckpt = Checkpointer(workdir / "checkpoints")
    restored = ckpt._manager.restore(ckpt.steps()[-1])["state"]["params"]
    ckpt.close()
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def cli_quickstart():
    return Path(__file__).resolve().parents[2] / "experiments" / "quickstart.py"
